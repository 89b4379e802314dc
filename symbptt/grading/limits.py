"""The limits a person's code runs under, and applying them in the child.

CPU seconds, address space, processes, open files and the size of files it writes are kernel
limits (``setrlimit``), so code that ignores Python's signals (a loop in C, a caught timeout)
is still stopped; wall time is the parent's to enforce (it kills the child). Process creation,
signals to other processes and reading symbptt's own files (the reference) are refused by an
audit hook, which the person's Python code cannot remove.

Imports only the standard library (the child loads it without the package).
"""

from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Limits:
    """Limits of one child process (one submission being checked)."""

    call_seconds: float = 10.0  # wall time of one call of a person's function (or the import)
    cpu_seconds: int = 120  # CPU time of the whole child
    memory_bytes: int = 2 * 2**30  # address space of the child
    open_files: int = 64
    file_bytes: int = 8 * 2**20  # largest file it may write (its captured output included)

    def as_dict(self) -> dict:
        return asdict(self)


def apply(limits: Limits) -> None:
    """Set the kernel limits on this process (the child), once its own imports are done."""
    import resource

    def cap(which: int, value: int) -> None:
        _soft, hard = resource.getrlimit(which)
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        try:
            resource.setrlimit(which, (value, value if which != resource.RLIMIT_CPU else value + 1))
        except (ValueError, OSError):
            resource.setrlimit(which, (min(value, hard) if hard != resource.RLIM_INFINITY else value, hard))

    cap(resource.RLIMIT_CPU, limits.cpu_seconds)
    cap(resource.RLIMIT_AS, limits.memory_bytes)
    cap(resource.RLIMIT_NOFILE, limits.open_files)
    cap(resource.RLIMIT_FSIZE, limits.file_bytes)
    cap(resource.RLIMIT_CORE, 0)
    # Processes: RLIMIT_NPROC counts every process of the user (and is not enforced for root),
    # so starting one is refused by the audit hook of guard() instead.


#: Audit events that start a process or signal another one.
_REFUSED = ("os.system", "os.fork", "os.forkpty", "os.exec", "os.posix_spawn", "os.spawn",
            "subprocess.Popen", "pty.spawn", "os.startfile", "ctypes.dlopen", "ctypes.dlsym",
            "socket.connect", "socket.bind", "os.kill", "os.killpg", "signal.pthread_kill")


def guard(forbidden: list[str]) -> None:
    """Refuse process creation, signals and the opening of files under ``forbidden`` (symbptt's
    package, derivations and generated kernels) from here on, for every code in this process."""
    roots = tuple(os.path.realpath(p) + os.sep for p in forbidden)
    me = os.getpid()

    def hook(event: str, args: tuple) -> None:
        if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
            path = os.path.realpath(os.fsdecode(args[0]))
            if path.startswith(roots) or path + os.sep in roots:
                raise PermissionError(f"the checked code may not read {path} (symbptt's own files)")
        elif event in ("os.kill", "os.killpg") and args and args[0] in (me, 0) and event == "os.kill":
            return
        elif event in _REFUSED:
            raise PermissionError(f"the checked code may not do {event}")

    sys.addaudithook(hook)


def forbidden_paths(package: Path) -> list[str]:
    """symbptt's package directory, and the repository's derivations/ and generated/ beside it."""
    root = package.parent
    return [str(package)] + [str(root / d) for d in ("derivations", "generated") if (root / d).is_dir()]
