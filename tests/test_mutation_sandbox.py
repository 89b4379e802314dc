"""The checker's side of a student's code in a child process (symbptt/grading/sandbox.py), in
the test's own process: reading the child's replies against a deadline, what a hostile or broken
child sends (forged verdicts, errors, locals; a closed or garbled channel), a child that exits,
kills itself, hangs or breaks its server loop, the restarts after that and the caches lost with
them, and what the code printed.

The child itself (symbptt/grading/child.py) runs in another process here; its own tests are in
tests/test_mutation_child.py.

These tests came from ``tools/mutation.py symbptt/grading/sandbox.py --sample 40``.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import threading
import time

import numpy as np
import pytest

from symbptt.grading import sandbox, wire
from symbptt.grading.limits import Limits
from symbptt.grading.person import Outcome
from symbptt.grading.sandbox import RemoteError, RemotePerson


def test_signal_names():
    assert sandbox._signal_name(9) == "SIGKILL" and sandbox._signal_name(24) == "SIGXCPU"
    assert sandbox._signal_name(999) == "signal 999"


def _in_time(fn, seconds=3.0):
    """fn()'s value, from a thread that must finish within ``seconds`` (a read that ignores
    its deadline fails the test instead of hanging it)."""
    result = {}
    worker = threading.Thread(target=lambda: result.update(value=fn()), daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), "the read did not keep to its deadline"
    return result["value"]


def test_reading_with_a_deadline():
    read, write = os.pipe()
    try:
        os.write(write, b"abcdef")
        assert sandbox._read(read, 4, time.monotonic() + 1) == b"abcd"
        started = time.monotonic()
        assert _in_time(lambda: sandbox._read(read, 3, time.monotonic() + 0.1)) is None  # two bytes, then nothing
        assert time.monotonic() - started < 2.0
        assert _in_time(lambda: sandbox._read(read, 1, time.monotonic() - 1)) is None  # past the deadline
        os.close(write)
        write = -1
        with pytest.raises(wire.WireError, match="the channel closed"):
            sandbox._read(read, 1, time.monotonic() + 1)
    finally:
        os.close(read)
        if write >= 0:
            os.close(write)


def test_a_message_that_comes_in_pieces_before_the_deadline():
    read, write = os.pipe()
    data = json.dumps({"ok": [1, 2]}).encode()

    def slowly():
        message = struct.pack(">Q", len(data)) + data
        for k in range(0, len(message), 5):
            os.write(write, message[k:k + 5])
            time.sleep(0.01)

    writer = threading.Thread(target=slowly)
    writer.start()
    try:
        assert sandbox._receive(read, time.monotonic() + 5) == {"ok": [1, 2]}
    finally:
        writer.join()
        os.close(read)
        os.close(write)


@pytest.mark.parametrize(("data", "error"), [
    (struct.pack(">Q", wire.MAX_MESSAGE + 1), f"a message of {wire.MAX_MESSAGE + 1} bytes"),
    (struct.pack(">Q", 3) + b"{x}", "not JSON"),
    (struct.pack(">Q", 2) + b"[]", "not a JSON object"),
])
def test_what_a_child_must_not_send(data, error):
    read, write = os.pipe()
    try:
        os.write(write, data)
        with pytest.raises(wire.WireError, match=f"^{error}$"):
            sandbox._receive(read, time.monotonic() + 1)
    finally:
        os.close(read)
        os.close(write)


def test_no_reply_in_time_is_none():
    read, write = os.pipe()
    try:
        assert sandbox._receive(read, time.monotonic() + 0.05) is None
        os.write(write, struct.pack(">Q", 10) + b"{")
        assert sandbox._receive(read, time.monotonic() + 0.05) is None  # the body never completes
    finally:
        os.close(read)
        os.close(write)


def test_the_standard_helpers_the_child_may_supply():
    helpers = sandbox.helper_sources()
    values = {}
    for name, (source, summary) in helpers.items():
        assert isinstance(summary, str) and summary
        namespace = {"np": np}
        exec(source, namespace)  # noqa: S102
        values[name] = namespace[name]
    assert {"sigmoid", "tanh", "relu", "softmax", "exp", "log"} <= set(helpers)
    assert helpers["tanh"][0] == "tanh = np.tanh"
    assert values["sigmoid"](np.array([0.0]))[0] == 0.5
    assert np.array_equal(values["relu"](np.array([-1.0, 2.0])), [0.0, 2.0])
    assert np.allclose(values["softmax"](np.zeros((2, 1))), 0.5)


def test_a_handle_is_stale_once_its_child_is_gone():
    old, new = wire.Remote(1, 3), wire.Remote(2, 3)
    assert sandbox._stale(old, 2) and not sandbox._stale(new, 2)
    assert sandbox._stale({"a": [1, (2, old)]}, 2) and not sandbox._stale({"a": [1, (2, new)]}, 2)
    assert not sandbox._stale(np.zeros(2), 2) and not sandbox._stale("x", 1)


GOOD = '''import numpy as np
import os
import sys

print("hello from the student")
print("to stderr", file=sys.stderr)

def forward(x):
    return x * 2, {"x": x}

def backward(cache, dy):
    return {"dx": 2 * dy}

def raises(x):
    local_array = x + 1
    return x[99]

def hangs(x):
    while True:
        pass

def exits(x):
    os._exit(3)

def dies(x):
    os.kill(os.getpid(), 9)

def sneaky_keys():
    return {"dWx": 1}
'''


def _remote(tmp_path, source=GOOD, timeout=2.0, name="student") -> RemotePerson:
    path = tmp_path / f"{name}.py"
    path.write_text(source, encoding="utf-8")
    return RemotePerson(path, timeout, ("Wz",))


def test_a_child_runs_the_code_and_answers_in_plain_data(tmp_path):
    person = _remote(tmp_path)
    try:
        assert {"forward", "backward", "raises", "hangs"} <= person.functions and "np" not in person.functions
        assert person.function("forward") is not None and person.function("nope") is None
        assert person.verdicts == [] and person.generation == 1 and person.restarts == 0
        assert person.limits == Limits(call_seconds=2.0) and person.parameter_names == ("Wz",)
        out = person.call("forward", (np.ones((2, 1)),), ("x",), 2.0)
        assert np.array_equal(out.value[0], 2 * np.ones((2, 1))) and out.value[1] == wire.Remote(1, 1)
        grads = person.call("backward", (out.value[1], np.ones((2, 1))), ("cache", "dy"), 2.0)
        assert np.array_equal(grads.value["dx"], 2 * np.ones((2, 1)))
        raised = person.call("raises", (np.zeros(2),), ("x",), 2.0)
        assert isinstance(raised.error, RemoteError)
        assert (raised.error.type_name, raised.error.owner, raised.error.line) == ("IndexError", "raises", 16)
        assert raised.error.text == ("IndexError: index 99 is out of bounds for axis 0 with size 2 "
                                     "(line 16: return x[99])")
        assert person.where(raised.error) == ("raises", 16) and person.describe(raised.error) == raised.error.text
        assert person.where(ValueError("x")) == (None, None) and person.describe(ValueError("x")) == "ValueError: x"
        assert set(raised.local_values) == {"x", "local_array"}
        assert np.array_equal(raised.local_values["local_array"], np.ones(2))
        person.rename_keys("sneaky_keys", {"dWx": "dWz"})
        assert person.call("sneaky_keys", (), (), 2.0).value == {"dWz": 1}
        assert person.renamed_keys == {"sneaky_keys": {"dWx": "dWz"}}
        assert set(person._defs()) >= {"forward", "hangs"}
    finally:
        printed = person.close()
    assert printed == "hello from the student\n\nto stderr\n"
    assert person.child is None


def test_a_child_that_exits_or_is_killed_is_crashed_and_started_again(tmp_path):
    person = _remote(tmp_path)
    try:
        out = person.call("forward", (np.ones(1),), ("x",), 2.0)
        cache = out.value[1]
        exited = person.call("exits", (1,), ("x",), 2.0)
        assert exited.crashed == ("the process exited with status 3 (os._exit or similar) instead of returning")
        stale = person.call("backward", (cache, np.ones(1)), ("cache", "dy"), 2.0)
        assert stale.not_checked.startswith("its input (a forward's cache) was lost when the checked code's process "
                                            "was restarted")
        assert person.generation == 2 and person.restarts == 1
        killed = person.call("dies", (1,), ("x",), 2.0)
        assert killed.crashed.startswith("the process was killed by SIGKILL (9)")
        assert person.call("forward", (np.ones(1),), ("x",), 2.0).value[1] == wire.Remote(3, 1)
        for _ in range(sandbox.MAX_RESTARTS - 2):
            assert person.call("exits", (1,), ("x",), 2.0).crashed
        assert person.restarts == sandbox.MAX_RESTARTS - 1
        assert person.call("exits", (1,), ("x",), 2.0).crashed
        assert person.restarts == sandbox.MAX_RESTARTS
        gone = person.call("forward", (np.ones(1),), ("x",), 2.0)
        assert gone.not_checked == "the checked code's process crashed or hung too often"
    finally:
        printed = person.close()
    assert printed.count("hello from the student") == sandbox.MAX_RESTARTS + 1
    assert "Fatal Python error" not in printed


def test_a_child_that_hangs_past_its_alarm_is_stopped_and_its_line_named(tmp_path):
    source = GOOD + "\ndef stuck(x):\n    import signal\n    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGALRM])\n" \
                    "    while True:\n        pass\n"
    person = _remote(tmp_path, source, timeout=0.3)
    try:
        hung = person.call("hangs", (1,), ("x",), 0.3)  # the child's own alarm stops it
        assert hung.hung and hung.detail.startswith("stopped after the 0.3 s timeout") and "hangs" in person.hung
        stuck = person.call("stuck", (1,), ("x",), 0.3)
        assert stuck.hung and "stuck" in person.hung
        assert stuck.detail.startswith(f"stopped after the {0.3 + sandbox.GRACE:g} s time limit")
        assert person.restarts == 0
        assert person.call("forward", (np.ones(1),), ("x",), 2.0).value[1] == wire.Remote(2, 1)
        assert person.restarts == 1
    finally:
        printed = person.close()
    assert "Current thread" not in printed and "most recent call first" not in printed


def test_an_import_that_hangs_or_fails_is_the_modules_verdict(tmp_path):
    person = _remote(tmp_path, "import numpy\nraise RuntimeError('no')\n", name="fails")
    try:
        assert person.verdicts == [("(module)", "import", "raised",
                                    "RuntimeError: no (line 2: raise RuntimeError('no'))")]
    finally:
        person.close()


def test_the_checker_reads_only_plain_data_from_the_childs_reply(tmp_path):
    person = _remote(tmp_path, "x = 1\n", name="plain")
    try:
        reply = {"value": {"v": 1}, "hung": True, "detail": "d" * 600, "changed": ["c" * 300] * 60,
                 "error": {"type": "T" * 100, "text": "t" * 3000, "owner": "o" * 100, "line": "12"},
                 "locals": [["a" * 100, {"nd": ["<f8", [1], "AAAAAAAAAAA="]}], ["n", {"v": 3}],
                            [5, {"nd": ["<f8", [1], "AAAAAAAAAAA="]}]]}
        outcome = person._outcome(reply, "f")
        assert outcome.value == 1 and outcome.hung and outcome.detail == "d" * 500 and "f" in person.hung
        assert outcome.changed == ["c" * 200] * 50
        assert isinstance(outcome.error, RemoteError)
        assert (outcome.error.type_name, outcome.error.text, outcome.error.owner, outcome.error.line) == (
            "T" * 80, "t" * 2000, "o" * 80, None)
        assert list(outcome.local_values) == ["a" * 80]
        quiet = person._outcome({"value": {"v": None}, "hung": True}, "h")
        assert quiet.hung and quiet.detail == ""
        bare = person._outcome({"value": {"v": None}, "error": {"line": 4}}, "g")
        assert bare.error.type_name == "Exception" and bare.error.owner is None and bare.error.line == 4
        assert not bare.hung and bare.changed == [] and "g" not in person.hung
        with pytest.raises(wire.WireError):
            person._outcome({"value": {"pickle": "x"}}, "f")
    finally:
        person.close()


def test_forged_verdicts_are_kept_only_when_well_formed(tmp_path):
    person = _remote(tmp_path, "x = 1\n", name="forged")
    try:
        person._take({"verdicts": [["f", "h", "ok", "x" * 3000], ["f", "h", "ok"], ["f", 1, "ok", ""],
                                   "row", ["g", "c", "ok", ""], ["g", "c", "ok", ""]]})
        assert person.verdicts == [("f", "h", "ok", "x" * 2000), ("g", "c", "ok", "")]
        person._take({"verdicts": "not a list"})
        person._take({"verdicts": [["h", "i", "ok", ""]]}, keep=False)
        assert len(person.verdicts) == 2
    finally:
        person.close()


def test_a_child_whose_loop_breaks_is_crashed_with_what_broke_it(tmp_path):
    person = _remote(tmp_path, "x = 1\n", name="breaks")
    try:
        reply, status, detail = person._ask({"op": "call", "fname": "nope", "args": {"tuple": []},
                                             "argnames": [], "timeout": 1.0}, 5.0)
        assert reply is None and status == "crashed"
        assert detail == "the checked code broke the checker's child (KeyError: 'nope')"
        assert person.child.process.poll() is not None  # killed
    finally:
        person.close()


def test_a_call_whose_reply_is_not_plain_data_is_crashed(tmp_path, monkeypatch):
    person = _remote(tmp_path, "def f():\n    return 1\n", name="garbled")
    try:
        monkeypatch.setattr(person, "_ask", lambda request, seconds: ({"value": {"nd": ["|O", [1], ""]}}, "", ""))
        outcome = person.call("f", (), (), 1.0)
        assert outcome.crashed == "the child sent back something that is not plain data (dtype '|O' is not allowed)"
        monkeypatch.setattr(person, "_ask", lambda request, seconds: ({"no value": 1}, "", ""))
        assert person.call("f", (), (), 1.0).crashed.startswith("the child sent back something that is not plain data")
    finally:
        monkeypatch.undo()
        person.close()


def test_the_line_text_of_the_students_file(tmp_path):
    person = _remote(tmp_path, "a = 1\n\n" + "b = '" + "x" * 200 + "'\n", name="lines")
    try:
        assert person.line_text(1) == "line 1: a = 1"
        assert person.line_text(2) == "line 2"
        assert person.line_text(3) == "line 3: " + ("b = '" + "x" * 200)[:120]
        assert person.line_text(40) == "line 40"
    finally:
        person.close()


def test_stack_dumps_are_not_what_the_student_printed(tmp_path):
    person = _remote(tmp_path, "x = 1\n", name="dumps")
    try:
        err = "my output\nFatal Python error: Aborted\n\nCurrent thread 0x1 (most recent call first):\n  File ..."
        assert person._user_stderr(err) == "my output"
        assert person._user_stderr("Thread 0x7f (most recent call first):") == ""
        assert person._user_stderr("plain") == "plain"
        # the dump the checker asks a stuck child for (SIGUSR1, one thread): not the student's
        assert person._user_stderr('mine\nStack (most recent call first):\n  File "x", line 1') == "mine"
    finally:
        person.close()


def test_a_death_is_described_by_its_status(tmp_path):
    person = _remote(tmp_path, "x = 1\n", name="death")
    try:
        class Process:
            returncode = -signal.SIGXCPU

        class Child:
            process = Process()

            @staticmethod
            def streams():
                return "", ""

        assert person._death(Child()) == f"the process was killed by SIGXCPU ({int(signal.SIGXCPU)}); CPU limit 120 s"
        Process.returncode = -signal.SIGSEGV
        assert person._death(Child()) == f"the process was killed by SIGSEGV ({int(signal.SIGSEGV)})"
        Process.returncode = None
        assert person._death(Child()) == "the checked code closed or wrote into the checker's channel"
        Process.returncode = 0
        assert person._death(Child()).startswith("the process exited with status 0")
    finally:
        person.close()


def test_where_a_stuck_child_was_is_read_from_its_stack_dump(tmp_path):
    person = _remote(tmp_path, "x = 1\ny = 2\n", name="where")
    try:
        class Child:
            text = ""

            def streams(self):
                return "", self.text

        child = Child()
        assert person._where(child) == ""
        child.text = f'Thread (most recent call first):\n  File "{person.path}", line 2 in f\n'
        assert person._where(child) == "line 2: y = 2"
        child.text = 'old (most recent call first):\n  File "x", line 1\nnew (most recent call first):\n  File "y"\n'
        assert person._where(child) == ""
        child.text = (f'(most recent call first):\n  File "{person.path}", line 1\n'
                      f'(most recent call first):\n  File "{person.path}", line 2\n')
        assert person._where(child) == "line 2: y = 2"  # the last dump
    finally:
        person.close()


def test_an_outcome_is_an_outcome():
    assert isinstance(Outcome(), Outcome)


def test_a_remote_error_reads_as_its_text():
    error = RemoteError("IndexError", "IndexError: out of range (line 3: x[9])", "f", 3)
    assert str(error) == "IndexError: out of range (line 3: x[9])" and error.args == (error.text,)


ENVIRONMENT = '''import os

def environment():
    return dict(os.environ)
'''


def test_the_child_gets_a_clean_environment_and_quits_when_asked(tmp_path, monkeypatch):
    monkeypatch.setenv("SECRET_TOKEN", "do-not-leak")
    monkeypatch.delenv("PATH")
    person = _remote(tmp_path, ENVIRONMENT, name="env")
    child = person.child
    try:
        seen = person.call("environment", (), (), 2.0).value
        assert seen == {"PATH": "/usr/bin:/bin", "HOME": child.directory, "OPENBLAS_NUM_THREADS": "1",
                        "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1",
                        "PYTHONUNBUFFERED": "1", "PYTHONHASHSEED": "0", "LANG": "C.UTF-8"}
    finally:
        person.close()
    assert child.process.returncode == 0  # it quit on request, not killed
    assert os.path.basename(child.directory).startswith("symbptt-child-")
    assert not os.path.exists(child.directory)


def test_renamed_keys_survive_a_restart_of_the_child(tmp_path):
    person = _remote(tmp_path)
    try:
        person.rename_keys("sneaky_keys", {"dWx": "dWz"})
        assert person.call("exits", (1,), ("x",), 2.0).crashed
        assert person.call("sneaky_keys", (), (), 2.0).value == {"dWz": 1}
        assert person.restarts == 1
    finally:
        person.close()


def test_line_text_of_a_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "latin.py"
    path.write_bytes("# -*- coding: latin-1 -*-\nname = 'año'\n".encode("latin-1"))
    person = RemotePerson(path, 2.0)
    try:
        assert person.verdicts == []
        assert person.line_text(2) == "line 2: name = 'a\ufffdo'"
    finally:
        person.close()
