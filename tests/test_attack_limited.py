"""Attacks on ``symbptt/limited.py``, the forked runner with a time and memory limit that
handcheck and verify's proof use: a function that prints, forks, returns a value that cannot
be sent or read back, exits or is killed, sleeps past the limit, or is interrupted in the
parent. Every run gives an outcome that says what happened, promptly, and leaves no process.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import time

import pytest

from symbptt.limited import run_limited

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork: runs in-process")


def gone(pid: int, within: float = 3.0) -> bool:
    """True once ``pid`` has ended (or is only a zombie awaiting its new parent, init)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().split(") ")[-1].startswith(("Z", "X")):
                    return True
        except FileNotFoundError:
            return True
        except OSError:
            os.kill(pid, 0)  # no /proc: raises ProcessLookupError once it is gone
        time.sleep(0.05)
    return False


def spawn_sleeper(path) -> int:
    """Fork a process that sleeps 30 s holding every inherited descriptor; write its pid."""
    pid = os.fork()
    if pid == 0:
        try:
            time.sleep(30)
        finally:
            os._exit(0)
    path.write_text(str(pid))
    return pid


def test_a_function_that_prints_returns_its_value(capfd):
    def noisy():
        print("hello from the child")
        sys.stderr.write("and its stderr\n")
        return {"value": 42}

    assert run_limited(noisy, 10).value == {"value": 42}


def test_a_process_the_function_started_neither_delays_the_value_nor_outlives_it(tmp_path):
    """The started process held the pipe open: the parent waited for the deadline ("too
    slow") although the value had arrived, and the process lived on."""
    path = tmp_path / "pid"
    start = time.monotonic()
    outcome = run_limited(lambda: (spawn_sleeper(path), "done")[1], 4)
    assert (outcome.status, outcome.value) == ("ok", "done")
    assert time.monotonic() - start < 3
    assert gone(int(path.read_text()))


def test_past_the_limit_the_child_and_what_it_started_are_ended(tmp_path):
    path = tmp_path / "pid"

    def slow():
        spawn_sleeper(path)
        time.sleep(30)

    start = time.monotonic()
    outcome = run_limited(slow, 0.5)
    assert outcome.status == "too slow"
    assert time.monotonic() - start < 3
    assert gone(int(path.read_text()))


class Unloadable:
    """Pickles, but cannot be loaded back."""

    def __reduce__(self):
        return (_refuse, ())


def _refuse():
    raise ValueError("no")


def test_a_value_that_cannot_be_sent_or_read_back_is_a_failure_that_says_so():
    outcome = run_limited(lambda: (lambda: None), 10)  # a lambda does not pickle
    assert outcome.status == "failed" and "cannot send the result back" in outcome.message
    pickle.dumps(Unloadable())
    outcome = run_limited(Unloadable, 10)
    assert outcome.status == "failed" and "cannot read the result back" in outcome.message, outcome


def test_a_child_that_exits_or_is_killed_is_told_apart():
    """os._exit in the function sent nothing: that read as "out of memory"."""
    outcome = run_limited(lambda: os._exit(3), 10)
    assert outcome.status == "failed" and "without a result" in outcome.message, outcome
    outcome = run_limited(lambda: os.kill(os.getpid(), signal.SIGKILL), 10)
    assert outcome.status == "too large"  # what the kernel's out-of-memory killer does
    outcome = run_limited(lambda: sys.exit(2), 10)
    assert outcome.status == "failed" and "SystemExit" in outcome.message


class Interrupted(Exception):
    pass


def test_an_interrupt_in_the_parent_ends_the_child_at_once(tmp_path):
    """Ctrl-C while waiting: the parent waited for the child to finish its work (waitpid)."""
    path = tmp_path / "pid"

    def slow():
        path.write_text(str(os.getpid()))
        time.sleep(30)

    def interrupt(signum, frame):
        raise Interrupted

    previous = signal.signal(signal.SIGALRM, interrupt)
    start = time.monotonic()
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.5)
        with pytest.raises(Interrupted):
            run_limited(slow, 60)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert time.monotonic() - start < 3
    assert gone(int(path.read_text()))
