"""The forked runner (symbptt/limited.py) piece by piece, in the test's own process: the child's
side (_child: its limits, its outcome, its length-prefixed message) runs here with the process
calls it makes recorded rather than made, and the parent's messages are read word for word.

A mutation run sees nothing of what a forked child runs, hence _child called here; these tests
came from ``tools/mutation.py symbptt/limited.py --sample 40``.
"""

from __future__ import annotations

import os
import pickle
import resource
import signal
import time

import pytest

from symbptt import limited
from symbptt.limited import Outcome, _child, _receive, run_limited


class Exited(Exception):
    pass


@pytest.fixture
def child_calls(monkeypatch):
    """Run _child here: record setpgid, setrlimit and _exit instead of making them."""
    calls = []
    monkeypatch.setattr(os, "setpgid", lambda *a: calls.append(("setpgid", a)))
    monkeypatch.setattr(resource, "setrlimit", lambda *a: calls.append(("setrlimit", a)))

    def exit_(code):
        calls.append(("_exit", (code,)))
        raise Exited

    monkeypatch.setattr(os, "_exit", exit_)
    return calls


def run_child(function, memory_bytes=None) -> Outcome:
    read, write = os.pipe()
    try:
        with pytest.raises(Exited):
            _child(function, memory_bytes, write)
    finally:
        os.close(write)
    with os.fdopen(read, "rb") as pipe:
        data = pipe.read()
    size = int.from_bytes(data[:8], "little")
    assert size == len(data) - 8
    return pickle.loads(data[8:])


def test_the_child_limits_itself_then_sends_its_value_length_first(child_calls):
    outcome = run_child(lambda: {"value": 42}, memory_bytes=123456789)
    assert outcome == Outcome("ok", {"value": 42})
    assert child_calls == [("setpgid", (0, 0)),
                           ("setrlimit", (resource.RLIMIT_AS, (123456789, 123456789))),
                           ("setrlimit", (resource.RLIMIT_CORE, (0, 0))),
                           ("_exit", (0,))]


def test_without_a_memory_limit_only_core_files_are_limited(child_calls):
    run_child(lambda: 1, memory_bytes=None)
    assert [c for c in child_calls if c[0] == "setrlimit"] == [("setrlimit", (resource.RLIMIT_CORE, (0, 0)))]


def test_a_child_whose_group_or_limits_cannot_be_set_still_runs(monkeypatch, child_calls):
    def refuse(*args):
        raise OSError("not permitted")

    monkeypatch.setattr(os, "setpgid", refuse)
    monkeypatch.setattr(resource, "setrlimit", refuse)
    assert run_child(lambda: "ran") == Outcome("ok", "ran")


def raises(error):
    def function():
        raise error
    return function


def test_the_childs_outcome_names_what_went_wrong(child_calls):
    assert run_child(raises(MemoryError())) == Outcome(
        "too large", message="it needs more memory than a line may use")
    assert run_child(raises(RecursionError())) == Outcome(
        "too deep", message="it is nested too deeply to be evaluated")
    assert run_child(raises(ValueError("bad line"))) == Outcome("failed", message="ValueError: bad line")
    assert run_child(raises(KeyError("x" * 400))).message == "KeyError: '" + "x" * 299
    assert run_child(raises(KeyboardInterrupt())) == Outcome("failed", message="KeyboardInterrupt: ")


def test_a_value_that_does_not_pickle_is_reported_with_the_reason(child_calls):
    outcome = run_child(lambda: (lambda: None))
    assert outcome.status == "failed" and outcome.value is None
    assert outcome.message.startswith("cannot send the result back: ") and "pickle" in outcome.message


def test_receive_reads_exactly_the_announced_length():
    read, write = os.pipe()
    try:
        os.write(write, (5).to_bytes(8, "little") + b"helloEXTRA")
        assert _receive(read, time.monotonic() + 5) == b"hello"
    finally:
        os.close(read)
        os.close(write)


def test_receive_tells_nothing_sent_from_too_late():
    read, write = os.pipe()
    os.close(write)
    try:
        assert _receive(read, time.monotonic() + 5) == b""
    finally:
        os.close(read)
    read, write = os.pipe()
    try:
        os.write(write, (10).to_bytes(8, "little") + b"half")  # the rest never comes
        start = time.monotonic()
        assert _receive(read, time.monotonic() + 0.3) is None
        assert time.monotonic() - start < 2
        assert _receive(read, time.monotonic() - 1) is None  # past the deadline: no wait at all
    finally:
        os.close(read)
        os.close(write)


needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork: runs in-process")


@needs_fork
def test_the_parents_messages():
    assert run_limited(lambda: time.sleep(30), 0.25) == Outcome(
        "too slow", message="not decided within the 0.25 s a line may take")
    assert run_limited(lambda: os.kill(os.getpid(), signal.SIGKILL), 10) == Outcome(
        "too large", message="its process died (out of memory)")
    outcome = run_limited(lambda: os._exit(3), 10)
    assert outcome == Outcome("failed", message="its process ended without a result (wait status 768)")
    outcome = run_limited(lambda: os.kill(os.getpid(), signal.SIGTERM), 10)  # a signal, but not the OOM killer's
    assert outcome == Outcome("failed", message=f"its process ended without a result (wait status {signal.SIGTERM})")


class Unloadable:
    def __reduce__(self):
        return (_refuse, ())


def _refuse():
    raise ValueError("no " * 100)


@needs_fork
def test_a_value_that_cannot_be_read_back_names_the_error():
    outcome = run_limited(Unloadable, 10)
    assert outcome.status == "failed" and outcome.value is None
    assert outcome.message == "cannot read the result back: ValueError: " + ("no " * 100)[:200]


@needs_fork
def test_the_memory_limit_applies_in_the_child_only():
    before = resource.getrlimit(resource.RLIMIT_AS)
    outcome = run_limited(lambda: resource.getrlimit(resource.RLIMIT_AS), 10, memory_bytes=3 * 2**30)
    assert outcome == Outcome("ok", (3 * 2**30, 3 * 2**30))
    assert resource.getrlimit(resource.RLIMIT_AS) == before
    default = run_limited(lambda: resource.getrlimit(resource.RLIMIT_AS), 10).value
    assert default == (2 * 2**30, 2 * 2**30)


@needs_fork
def test_the_child_runs_in_a_process_group_of_its_own():
    outcome = run_limited(lambda: (os.getpid(), os.getpgid(0)), 10)
    pid, group = outcome.value
    assert pid == group and pid != os.getpid()


def test_without_fork_the_function_runs_here(monkeypatch):
    monkeypatch.delattr(limited.os, "fork")
    assert run_limited(os.getpid, 1) == Outcome("ok", os.getpid())
