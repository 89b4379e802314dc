"""Run one function of ours in a forked process with a time and memory limit.

For work whose cost an input decides: a hand derivation's line (``z^2`` squared sixteen times
is 47 bytes and takes minutes and gigabytes to expand), or the exact symbolic proof of a large
cell in ``verify``. The work is our own code on
parsed input, never the person's code, so a fork (which shares the parent's loaded modules and
cache) is safe and cheap; its result comes back pickled. Where ``fork`` is missing the function
runs in this process, without limits.
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Outcome:
    """What a limited run gave: ``status`` is ok, too slow, too large, too deep or failed."""

    status: str
    value: Any = None
    message: str = ""


def _child(function: Callable[[], Any], memory_bytes: int | None, write: int) -> None:
    """In the forked child: limit memory, run, send the outcome, exit without cleanup."""
    try:
        os.setpgid(0, 0)  # a group of its own: whatever it starts is ended with it
    except OSError:
        pass
    try:
        import resource

        if memory_bytes is not None:
            resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ImportError, ValueError, OSError):
        pass
    try:
        outcome = Outcome("ok", function())
    except MemoryError:
        outcome = Outcome("too large", message="it needs more memory than a line may use")
    except RecursionError:
        outcome = Outcome("too deep", message="it is nested too deeply to be evaluated")
    except BaseException as error:  # noqa: BLE001 - anything else is this line's verdict
        outcome = Outcome("failed", message=f"{type(error).__name__}: {str(error)[:300]}")
    try:
        data = pickle.dumps(outcome)
    except Exception as error:  # noqa: BLE001
        data = pickle.dumps(Outcome("failed", message=f"cannot send the result back: {error}"))
    data = len(data).to_bytes(8, "little") + data  # its length first: the parent stops there
    try:
        while data:
            data = data[os.write(write, data):]
    finally:
        os._exit(0)


def _receive(read: int, deadline: float) -> bytes | None:
    """The child's length-prefixed message (b"" if it sent nothing), or None when the deadline
    passed first. The length, not the end of the pipe, ends it: a process the function
    started may hold the pipe open."""
    data, size = b"", None
    while size is None or len(data) < size + 8:
        wait = deadline - time.monotonic()
        if wait <= 0 or not select.select([read], [], [], wait)[0]:
            return None
        chunk = os.read(read, 1 << 16)
        if not chunk:
            return b""
        data += chunk
        if size is None and len(data) >= 8:
            size = int.from_bytes(data[:8], "little")
    return data[8:size + 8]


def _end(pid: int) -> int:
    """End the child and every process of its group; reap it. Its wait status."""
    for kill in (os.killpg, os.kill):
        try:
            kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return os.waitpid(pid, 0)[1]


def run_limited(function: Callable[[], Any], seconds: float,
                memory_bytes: int | None = 2 * 2**30) -> Outcome:
    """``function()`` in a forked child: its value, or why there is none (it took longer than
    ``seconds``, needed more than ``memory_bytes`` (None: no memory limit), recursed too
    deeply or raised). The child and any process it started are ended before this returns
    (or raises, on an interrupt)."""
    if not hasattr(os, "fork"):
        return Outcome("ok", function())
    read, write = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        _child(function, memory_bytes, write)
    os.close(write)
    try:
        os.setpgid(pid, pid)  # as the child does itself, whichever runs first
    except OSError:
        pass
    data, status = None, 0
    try:
        data = _receive(read, time.monotonic() + seconds)
    finally:
        os.close(read)
        status = _end(pid)
    if data is None:
        return Outcome("too slow", message=f"not decided within the {seconds:g} s a line may take")
    if not data:
        if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
            return Outcome("too large", message="its process died (out of memory)")
        return Outcome("failed", message=f"its process ended without a result (wait status {status})")
    try:
        return pickle.loads(data)  # written by our own forked child
    except Exception as error:  # noqa: BLE001 - a value that pickles but cannot be loaded back
        return Outcome("failed", message=f"cannot read the result back: {type(error).__name__}: "
                                         f"{str(error)[:200]}")
