"""The checker's side of a person's code in a child process: :class:`RemotePerson`.

It offers what the checker asks of a person's module (which functions exist, call one, where
an error was raised, rename keys) while the code runs in a fresh interpreter started from
:mod:`symbptt.grading.child`, under :class:`~symbptt.grading.limits.Limits`, with its standard
streams captured to files. Each request has a wall-time limit: a child that does not answer
in time is asked for its stack (SIGUSR1, so the verdict can name the line), then killed with
its process group; a child that dies is a "crashed" verdict naming the signal or exit status.
A new child is started for the calls that remain (its forward caches are lost with the old
one, and the calls that need them say so). What the child answers is validated as plain data
(:mod:`symbptt.grading.wire`); the verdict and exit status are decided by the checker alone.
"""

from __future__ import annotations

import ast
import os
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from . import wire
from .limits import Limits, forbidden_paths
from .person import Outcome, Row, parse_source

PACKAGE = Path(__file__).resolve().parent.parent
CHILD = Path(__file__).resolve().parent / "child.py"
#: Seconds a child gets beyond a call's own timeout (its own alarm comes first when it can).
GRACE = 1.0
#: Seconds a fresh child gets to start (interpreter and NumPy), beyond the import's timeout.
STARTUP = 20.0
#: New children started after one died or was killed, per submission.
MAX_RESTARTS = 4
#: Captured output kept per child, characters.
MAX_OUTPUT = 20_000


class RemoteError(Exception):
    """An exception raised by the person's code in the child, as text and line."""

    def __init__(self, type_name: str, text: str, owner: str | None, line: int | None):
        super().__init__(text)
        self.type_name, self.text, self.owner, self.line = type_name, text, owner, line


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _read(fd: int, count: int, deadline: float) -> bytes | None:
    """``count`` bytes before ``deadline``; None on timeout; WireError if the channel closed."""
    chunks, left = [], count
    while left:
        wait = deadline - time.monotonic()
        if wait <= 0 or not select.select([fd], [], [], wait)[0]:
            return None
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise wire.WireError("the channel closed")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _receive(fd: int, deadline: float) -> dict | None:
    header = _read(fd, 8, deadline)
    if header is None:
        return None
    (length,) = struct.unpack(">Q", header)
    if length > wire.MAX_MESSAGE:
        raise wire.WireError(f"a message of {length} bytes")
    body = _read(fd, length, deadline)
    if body is None:
        return None
    import json

    try:
        message = json.loads(body)
    except (ValueError, RecursionError):
        raise wire.WireError("not JSON") from None
    if not isinstance(message, dict):
        raise wire.WireError("not a JSON object")
    return message


def helper_sources() -> dict[str, list[str]]:
    """The standard helpers the child may supply, as source text: one per operation of ops.py."""
    from .. import ops

    out = {}
    for name, op in cast("dict[str, type[ops.Node]]", ops.FUNCTIONS).items():  # operation classes
        if op.numpy_helper:
            source = op.numpy_helper
        elif op.numpy_name.startswith("np."):
            source = f"{name} = {op.numpy_name}"
        else:
            continue
        out[name] = [source, op.summary or name]
    return out


class _Child:
    """One child process: its pipes, captured streams and working directory."""

    def __init__(self, limits: Limits):
        self.directory = tempfile.mkdtemp(prefix="symbptt-child-")
        self.stdout = open(os.path.join(self.directory, ".stdout"), "w+b")  # noqa: SIM115
        self.stderr = open(os.path.join(self.directory, ".stderr"), "w+b")  # noqa: SIM115
        to_child, self.to_child = os.pipe()
        self.from_child, from_child_w = os.pipe()
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": self.directory,
               "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1", "PYTHONHASHSEED": "0", "LANG": "C.UTF-8"}
        self.process = subprocess.Popen(
            [sys.executable, "-X", "utf8", str(CHILD), str(to_child), str(from_child_w)],
            pass_fds=(to_child, from_child_w), stdin=subprocess.DEVNULL, stdout=self.stdout,
            stderr=self.stderr, cwd=self.directory, env=env, start_new_session=True)
        os.close(to_child)
        os.close(from_child_w)

    def ask(self, request: dict, seconds: float) -> dict | None:
        """Send a request and wait for the reply; None when it did not come in time."""
        try:
            wire.send(self.to_child, request)
        except OSError:
            raise wire.WireError("the channel closed") from None
        return _receive(self.from_child, time.monotonic() + seconds)

    def stack_dump(self) -> None:
        """Ask a stuck child for its Python stack (faulthandler writes it to stderr)."""
        try:
            os.kill(self.process.pid, signal.SIGUSR1)
            time.sleep(0.2)
        except OSError:
            pass

    def kill(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            pass

    def streams(self) -> tuple[str, str]:
        out = []
        for handle in (self.stdout, self.stderr):
            handle.flush()
            handle.seek(0)
            out.append(handle.read(MAX_OUTPUT).decode("utf-8", "replace"))
        return out[0], out[1]

    def close(self) -> tuple[str, str]:
        """End the child (asking first), and return what it printed (stdout, stderr)."""
        if self.process.poll() is None:
            try:
                wire.send(self.to_child, {"op": "quit"})
                self.process.wait(1)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.kill()
        streams = self.streams()
        for fd in (self.to_child, self.from_child):
            try:
                os.close(fd)
            except OSError:
                pass
        self.stdout.close()
        self.stderr.close()
        shutil.rmtree(self.directory, ignore_errors=True)
        return streams


class RemotePerson:
    """The person's module, run in a limited child process; the checker's view of it."""

    def __init__(self, path: str | Path, timeout: float, parameter_names: tuple[str, ...] = (),
                 limits: Limits | None = None):
        self.path = str(Path(path).resolve())
        self.timeout = timeout
        self.parameter_names = tuple(parameter_names)
        self.limits = limits or Limits(call_seconds=timeout)
        self.tree, _ = parse_source(Path(self.path).read_bytes(), self.path)
        self.verdicts: list[Row] = []
        self.hung: set[str] = set()
        self.functions: set[str] = set()
        self.renames: dict[str, dict[str, str]] = {}
        self.renamed_keys = self.renames
        self.generation, self.restarts = 0, 0
        self.printed: list[str] = []
        self.child: _Child | None = None
        self._seen: set[Row] = set()
        self._start(first=True)

    # -- the child's life ----------------------------------------------------------------

    def _start(self, first: bool) -> None:
        self.child = _Child(self.limits)
        self.generation += 1
        request = {"op": "load", "path": self.path, "timeout": self.timeout, "helpers": helper_sources(),
                   "parameter_names": list(self.parameter_names), "limits": self.limits.as_dict(),
                   "forbidden": forbidden_paths(PACKAGE)}
        reply, status, detail = self._ask(request, STARTUP + self.timeout)
        if reply is None:
            if first:
                self._verdict(("(module)", "import", status, detail))
            return
        names = reply.get("functions")
        if first and isinstance(names, list):
            self.functions = {n for n in names if isinstance(n, str) and n.isidentifier()}
        self._take(reply, keep=first)
        for fname, renames in self.renames.items():
            self._ask({"op": "rename", "fname": fname, "renames": renames}, STARTUP)

    def _alive(self) -> bool:
        if self.child is not None and self.child.process.poll() is None:
            return True
        if self.restarts >= MAX_RESTARTS:
            return False
        self._finish_child()
        self.restarts += 1
        self._start(first=False)
        return self.child is not None and self.child.process.poll() is None

    def _finish_child(self) -> None:
        if self.child is not None:
            out, err = self.child.close()
            self.printed += [text for text in (out, self._user_stderr(err)) if text.strip()]
            self.child = None

    def _user_stderr(self, err: str) -> str:
        """Standard error without the stack dumps the checker asked for (a dump of one thread,
        as the child registers it, starts with ``Stack (most recent call first):``)."""
        return re.split(r"\n?(?:Fatal Python error|Current thread|Thread 0x|Stack \(most recent call first\))",
                        err, maxsplit=1)[0]

    def close(self) -> str:
        """End the child; return everything the person's code printed (capped)."""
        self._finish_child()
        return "\n".join(self.printed)[:MAX_OUTPUT]

    def _ask(self, request: dict, seconds: float) -> tuple[dict | None, str, str]:
        """(reply, status, detail): the reply, or why none came ("hung" or "crashed")."""
        child = self.child
        if child is None:  # pragma: no cover - every caller has started the child
            raise RuntimeError("the checked code's process was never started")
        try:
            reply = child.ask(request, seconds)
        except wire.WireError as error:
            reply, broken = None, str(error)
        else:
            broken = ""
        if reply is not None and "failure" not in reply:
            return reply, "", ""
        if reply is not None:  # the child's own loop failed: what the person's code did to it
            child.kill()
            return None, "crashed", f"the checked code broke the checker's child ({str(reply['failure'])[:200]})"
        if child.process.poll() is None and not broken:
            child.stack_dump()
            child.kill()
            where = self._where(child)
            return None, "hung", f"stopped after the {seconds:g} s time limit" + (f" ({where})" if where else "")
        child.kill()
        return None, "crashed", self._death(child)

    def _death(self, child: _Child) -> str:
        code = child.process.returncode
        if code is None:
            how = "the checked code closed or wrote into the checker's channel"
        elif code < 0:
            how = f"the process was killed by {_signal_name(-code)} ({-code})"
            if -code in (signal.SIGXCPU, signal.SIGKILL):
                how += f"; CPU limit {self.limits.cpu_seconds} s" if -code == signal.SIGXCPU else ""
        else:
            how = f"the process exited with status {code} (os._exit or similar) instead of returning"
        where = self._where(child)
        return how + (f" ({where})" if where else "")

    def _where(self, child: _Child) -> str:
        """``line 12: code`` of the person's innermost frame in the child's stack dump."""
        _, err = child.streams()
        dumps = err.split("most recent call first")
        if len(dumps) < 2:
            return ""
        match = re.search(r'File "' + re.escape(self.path) + r'", line (\d+)', dumps[-1])
        if not match:
            return ""
        line = int(match.group(1))
        return self.line_text(line)

    def line_text(self, line: int) -> str:
        try:
            text = Path(self.path).read_bytes().decode("utf-8", "replace").splitlines()[line - 1].strip()
        except (IndexError, OSError):
            text = ""
        return f"line {line}: {text[:120]}" if text else f"line {line}"

    def _verdict(self, row: Row) -> None:
        if row not in self._seen:
            self._seen.add(row)
            self.verdicts.append(row)

    def _take(self, reply: dict, keep: bool = True) -> None:
        rows = reply.get("verdicts")
        for row in rows if isinstance(rows, list) and keep else ():
            if isinstance(row, list) and len(row) == 4 and all(isinstance(c, str) for c in row):
                self._verdict(tuple(c[:2000] for c in row))

    # -- what the checker asks -----------------------------------------------------------

    def function(self, name: str) -> Callable | None:
        return (lambda *a: None) if name in self.functions else None

    def where(self, error: BaseException) -> tuple[str | None, int | None]:
        return (error.owner, error.line) if isinstance(error, RemoteError) else (None, None)

    def describe(self, error: BaseException) -> str:
        return error.text if isinstance(error, RemoteError) else f"{type(error).__name__}: {error}"

    def _defs(self) -> dict[str, ast.FunctionDef]:
        return {n.name: n for n in (self.tree.body if self.tree else []) if isinstance(n, ast.FunctionDef)}

    def rename_keys(self, fname: str, renames: dict[str, str]) -> None:
        self.renames[fname] = dict(renames)
        if self._alive():
            self._ask({"op": "rename", "fname": fname, "renames": renames}, STARTUP)

    def call(self, fname: str, args: tuple, argnames: tuple[str, ...], timeout: float) -> Outcome:
        """Call ``fname`` in the child; a hang, a crash or a lost cache is an outcome."""
        if not self._alive():  # first: a restart makes the old handles stale
            return Outcome(not_checked="the checked code's process crashed or hung too often")
        if _stale(args, self.generation):
            return Outcome(not_checked="its input (a forward's cache) was lost when the checked code's process "
                                       "was restarted after a crash or hang")
        request = {"op": "call", "fname": fname, "args": wire.encode_args(args), "argnames": list(argnames),
                   "timeout": timeout}
        reply, status, detail = self._ask(request, timeout + GRACE)
        if reply is None:
            if status == "hung":
                self.hung.add(fname)
                return Outcome(hung=True, detail=detail)
            return Outcome(crashed=detail)
        self._take(reply)
        try:
            return self._outcome(reply, fname)
        except (wire.WireError, TypeError, ValueError, KeyError, AttributeError) as error:
            return Outcome(crashed=f"the child sent back something that is not plain data ({error})")

    def _outcome(self, reply: dict, fname: str) -> Outcome:
        outcome = Outcome(value=wire.decode(reply["value"], self.generation))
        if reply.get("hung"):
            self.hung.add(fname)
            outcome.hung, outcome.detail = True, str(reply.get("detail", ""))[:500]
        outcome.changed = [str(c)[:200] for c in reply.get("changed") or []][:50]
        error = reply.get("error")
        if isinstance(error, dict):
            line = error.get("line")
            outcome.error = RemoteError(str(error.get("type", "Exception"))[:80], str(error.get("text", ""))[:2000],
                                        str(error["owner"])[:80] if error.get("owner") else None,
                                        line if isinstance(line, int) else None)
        for pair in reply.get("locals") or []:
            value = wire.decode(pair[1])
            if isinstance(pair[0], str) and hasattr(value, "dtype"):
                outcome.local_values[pair[0][:80]] = value
        return outcome


def _stale(value: Any, generation: int) -> bool:
    """Whether ``value`` holds a handle into a child that no longer exists."""
    if isinstance(value, wire.Remote):
        return value.generation != generation
    if isinstance(value, dict):
        return any(_stale(v, generation) for v in value.values())
    if isinstance(value, (tuple, list)):
        return any(_stale(v, generation) for v in value)
    return False
