"""The limits a student's code runs under (symbptt/grading/limits.py), checked in the test's own
process: the kernel limits ``apply`` sets (``resource`` replaced by a recorder that refuses, as the
kernel does, to raise a hard limit), the audit hook ``guard`` installs (captured, not installed:
it would refuse processes to the rest of the test session) met with what a hostile submission
does, and the paths it guards.

These tests came from ``tools/mutation.py symbptt/grading/limits.py --sample 40``.
"""

from __future__ import annotations

import os
import resource
import sys

import pytest

from symbptt.grading import limits
from symbptt.grading.limits import Limits

INF = resource.RLIM_INFINITY


def test_the_default_limits_are_the_documented_ones():
    assert Limits().as_dict() == {"call_seconds": 10.0, "cpu_seconds": 120, "memory_bytes": 2 * 2**30,
                                  "open_files": 64, "file_bytes": 8 * 2**20}
    assert Limits(open_files=5).as_dict()["open_files"] == 5


class _Kernel:
    """getrlimit/setrlimit as the kernel answers an unprivileged process: a hard limit may
    be lowered, never raised, and the soft one never above the hard one."""

    def __init__(self, hard: dict[int, int]):
        self.limits = {which: (value, value) for which, value in hard.items()}
        self.calls: list[tuple[int, tuple[int, int]]] = []

    def getrlimit(self, which: int) -> tuple[int, int]:
        return self.limits[which]

    def setrlimit(self, which: int, pair: tuple[int, int]) -> None:
        self.calls.append((which, pair))
        soft, hard = pair
        old_hard = self.limits[which][1]
        if (old_hard != INF and (hard == INF or hard > old_hard)) or (hard != INF and soft > hard):
            raise ValueError("not allowed to raise maximum limit")
        self.limits[which] = pair


def _kernel(monkeypatch, hard: dict[int, int]) -> _Kernel:
    kernel = _Kernel(hard)
    monkeypatch.setattr(resource, "getrlimit", kernel.getrlimit)
    monkeypatch.setattr(resource, "setrlimit", kernel.setrlimit)
    return kernel


RESOURCES = (resource.RLIMIT_CPU, resource.RLIMIT_AS, resource.RLIMIT_NOFILE, resource.RLIMIT_FSIZE,
             resource.RLIMIT_CORE)


def test_apply_sets_every_limit_soft_and_hard_with_a_second_of_cpu_grace(monkeypatch):
    kernel = _kernel(monkeypatch, dict.fromkeys(RESOURCES, INF))
    limits.apply(Limits(cpu_seconds=7, memory_bytes=3 * 2**30, open_files=9, file_bytes=5000))
    assert kernel.limits == {resource.RLIMIT_CPU: (7, 8), resource.RLIMIT_AS: (3 * 2**30, 3 * 2**30),
                             resource.RLIMIT_NOFILE: (9, 9), resource.RLIMIT_FSIZE: (5000, 5000),
                             resource.RLIMIT_CORE: (0, 0)}
    assert len(kernel.calls) == 5  # each set once, none refused


def test_apply_never_asks_for_more_than_the_hard_limits_already_there(monkeypatch):
    hard = {resource.RLIMIT_CPU: 50, resource.RLIMIT_AS: 2**30, resource.RLIMIT_NOFILE: 1024,
            resource.RLIMIT_FSIZE: 100, resource.RLIMIT_CORE: INF}
    kernel = _kernel(monkeypatch, hard)
    limits.apply(Limits(cpu_seconds=120, memory_bytes=2 * 2**30, open_files=64, file_bytes=8 * 2**20))
    # CPU: 50 s soft; its hard limit cannot become 51, so it stays 50 (the fallback)
    assert kernel.limits == {resource.RLIMIT_CPU: (50, 50), resource.RLIMIT_AS: (2**30, 2**30),
                             resource.RLIMIT_NOFILE: (64, 64), resource.RLIMIT_FSIZE: (100, 100),
                             resource.RLIMIT_CORE: (0, 0)}
    assert kernel.calls[:2] == [(resource.RLIMIT_CPU, (50, 51)), (resource.RLIMIT_CPU, (50, 50))]


def test_apply_keeps_an_infinite_hard_limit_when_the_kernel_refuses_the_pair(monkeypatch):
    kernel = _kernel(monkeypatch, dict.fromkeys(RESOURCES, INF))
    refused = []

    def picky(which, pair):  # refuses any finite hard limit on the address space
        if which == resource.RLIMIT_AS and pair[1] != INF:
            refused.append(pair)
            raise OSError("refused")
        kernel.setrlimit(which, pair)

    monkeypatch.setattr(resource, "setrlimit", picky)
    limits.apply(Limits(memory_bytes=12345))
    assert refused == [(12345, 12345)]
    assert kernel.limits[resource.RLIMIT_AS] == (12345, INF)


def _hook(monkeypatch, forbidden: list[str]):
    hooks = []
    monkeypatch.setattr(sys, "addaudithook", hooks.append)
    limits.guard(forbidden)
    assert len(hooks) == 1
    return hooks[0]


def test_the_guard_refuses_reading_symbptts_files_whichever_way_they_are_named(monkeypatch, tmp_path):
    package = tmp_path / "symbptt"
    (package / "kernels").mkdir(parents=True)
    secret = package / "kernels" / "gru.py"
    secret.write_text("REFERENCE = 1\n")
    (tmp_path / "link.py").symlink_to(secret)
    hook = _hook(monkeypatch, [str(package)])
    for name in (str(secret), os.fsencode(secret), secret, str(tmp_path / "link.py"), str(package),
                 str(tmp_path / "symbptt" / "." / "kernels" / ".." / "kernels" / "gru.py")):
        with pytest.raises(PermissionError, match="may not read .*symbptt's own files") as caught:
            hook("open", (name, "r", 0))
        assert str(secret.resolve()) in str(caught.value) or str(package.resolve()) in str(caught.value)


def test_the_guard_lets_the_code_read_its_own_files_and_look_alike_names(monkeypatch, tmp_path):
    package = tmp_path / "symbptt"
    package.mkdir()
    hook = _hook(monkeypatch, [str(package)])
    for name in (str(tmp_path / "symbptt_homework" / "a.py"), str(tmp_path / "symbptt.py"),
                 str(tmp_path / "student.py"), os.fsencode(tmp_path / "data.npy")):
        assert hook("open", (name, "r", 0)) is None
    assert hook("open", (3, "r", 0)) is None  # a file descriptor: nothing to resolve
    assert hook("open", ()) is None


@pytest.mark.parametrize("event", ["os.system", "os.fork", "os.forkpty", "os.exec", "os.posix_spawn", "os.spawn",
                                   "subprocess.Popen", "pty.spawn", "os.startfile", "ctypes.dlopen",
                                   "ctypes.dlsym", "socket.connect", "socket.bind", "os.killpg",
                                   "signal.pthread_kill"])
def test_the_guard_refuses_processes_signals_libraries_and_sockets(monkeypatch, event):
    hook = _hook(monkeypatch, [])
    with pytest.raises(PermissionError, match=f"^the checked code may not do {event}$"):
        hook(event, (os.getpid(), 9))


def test_the_guard_lets_the_code_signal_itself_and_nothing_else(monkeypatch):
    hook = _hook(monkeypatch, [])
    assert hook("os.kill", (os.getpid(), 15)) is None
    assert hook("os.kill", (0, 15)) is None
    with pytest.raises(PermissionError, match="may not do os.kill$"):
        hook("os.kill", (os.getpid() + 1, 15))
    with pytest.raises(PermissionError, match="may not do os.kill$"):
        hook("os.kill", (1, 9))
    with pytest.raises(PermissionError, match="may not do os.killpg$"):
        hook("os.killpg", (0, 9))  # its own group is the checker's too
    for harmless in ("import", "compile", "exec", "os.listdir", "time.sleep"):
        assert hook(harmless, ("x",)) is None


def test_the_forbidden_paths_are_the_package_and_the_repositorys_derivations_and_kernels(tmp_path):
    package = tmp_path / "symbptt"
    package.mkdir()
    assert limits.forbidden_paths(package) == [str(package)]
    (tmp_path / "generated").mkdir()
    assert limits.forbidden_paths(package) == [str(package), str(tmp_path / "generated")]
    (tmp_path / "derivations").mkdir()
    (tmp_path / "other").mkdir()
    assert limits.forbidden_paths(package) == [str(package), str(tmp_path / "derivations"),
                                               str(tmp_path / "generated")]
    (tmp_path / "generated").rmdir()
    (tmp_path / "generated").write_text("a file, not the kernels' folder")
    assert limits.forbidden_paths(package) == [str(package), str(tmp_path / "derivations")]


def test_a_guarded_child_process_really_cannot_read_the_package_or_start_a_process(tmp_path):
    """The hook installed for real, in a forked copy of this process (it cannot be removed)."""
    package = tmp_path / "symbptt"
    package.mkdir()
    (package / "secret.py").write_text("x = 1\n")
    pid = os.fork()
    if pid == 0:  # the child: exit status = which checks failed
        status = 0
        try:
            limits.guard([str(package)])
            try:
                open(package / "secret.py").close()
                status |= 1
            except PermissionError:
                pass
            try:
                os.system("true")
                status |= 2
            except PermissionError:
                pass
            (tmp_path / "mine.txt").write_text("allowed")
        except BaseException:  # noqa: BLE001
            status |= 4
        os._exit(status)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert (tmp_path / "mine.txt").read_text() == "allowed"
