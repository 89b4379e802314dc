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
    try:
        while data:
            data = data[os.write(write, data):]
    finally:
        os._exit(0)


def run_limited(function: Callable[[], Any], seconds: float,
                memory_bytes: int | None = 2 * 2**30) -> Outcome:
    """``function()`` in a forked child: its value, or why there is none (it took longer than
    ``seconds``, needed more than ``memory_bytes`` (None: no memory limit), recursed too
    deeply or raised)."""
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
    chunks, deadline = [], time.monotonic() + seconds
    try:
        while True:
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([read], [], [], wait)[0]:
                os.kill(pid, signal.SIGKILL)
                return Outcome("too slow", message=f"not decided within the {seconds:g} s a line may take")
            chunk = os.read(read, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    try:
        return pickle.loads(b"".join(chunks))  # written by our own forked child
    except Exception:  # noqa: BLE001 - a child killed by the kernel sends nothing
        return Outcome("too large", message="its process died (out of memory)")
