"""The child process that runs a person's code: ``python child.py FD_IN FD_OUT``.

Started by :mod:`symbptt.grading.sandbox` as a script in a fresh interpreter (never forked
from the checker, never importing the symbptt package), so nothing in its memory knows the
reference: the person's code can read only the inputs it is given. It loads the module, then
answers the parent's requests one at a time:

* ``load``: limits, helpers, the file → the callable names it defines and the import verdicts;
* ``call``: one function on the given arguments → its value (plain data, the cache kept here
  as a handle), the exception as text and line, whether it hung or changed its inputs, the
  array-valued locals, and the repairs made;
* ``rename``: a function's misspelt keys read under their meaning by its callers;
* ``quit``.

Whatever it answers is data the parent validates; the verdict is the parent's alone.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(HERE))
import ctypes  # noqa: F401 - imported before the guard refuses dlopen (ctypes opens itself)
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # the same three files, as the type checker finds them (never run)
    from symbptt.grading import limits, wire
    from symbptt.grading import person as person_module
else:
    import limits
    import person as person_module
    import wire

sys.path.remove(str(HERE))
for _name in ("limits", "person", "wire"):
    sys.modules.pop(_name, None)  # the person's code reaches none of these by importing them


class _Refuse:
    """A meta-path finder refusing symbptt to the checked code, with a clear message."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name == "symbptt" or name.startswith("symbptt."):
            raise ImportError(f"the checked code may not import {name}: it is checked against symbptt, "
                              "so its own code must compute the results")


def _helpers(sources: dict[str, list[str]]) -> dict:
    """The standard helpers (one per operation of symbptt.ops), from the source text sent."""
    out = {}
    for name, (source, summary) in sources.items():
        namespace = {"np": np}
        exec(source, namespace)  # noqa: S102 - symbptt's own helper text, sent by the parent
        if callable(namespace.get(name)):
            out[name] = (namespace[name], summary)
    return out


class Server:
    """The person's module and the values kept for the parent (caches, by handle)."""

    def __init__(self, fd_in: int, fd_out: int):
        self.fd_in, self.fd_out = fd_in, fd_out
        self.person: person_module.Person | None = None  # the module, after the first request (load)
        self.kept: dict[int, object] = {}

    @property
    def loaded(self) -> person_module.Person:
        """The person's module; the parent's first request loads it."""
        if self.person is None:
            raise RuntimeError("no module loaded (the first request is load)")
        return self.person

    def keep(self, value: object) -> int:
        handle = len(self.kept) + 1
        self.kept[handle] = value
        return handle

    def load(self, request: dict) -> dict:
        person_module.CAPTURE_HERE = False  # stdout is a file the parent reads
        limits.guard(request["forbidden"])
        sys.meta_path.insert(0, _Refuse)
        for name in [n for n in sys.modules if n == "symbptt" or n.startswith("symbptt.")]:
            sys.modules.pop(name, None)
        limits.apply(limits.Limits(**request["limits"]))
        path = request["path"]
        sys.path.insert(0, str(Path(path).parent))
        self.person = person_module.Person(path, request["timeout"], _helpers(request["helpers"]))
        self.person.parameter_names = tuple(request["parameter_names"])
        names = [n for n, v in list(self.person.namespace.items()) if callable(v) and isinstance(n, str)]
        return {"functions": names[:500], "verdicts": self.take_verdicts()}

    def take_verdicts(self) -> list:
        rows = [list(map(str, row)) for row in self.loaded.verdicts]
        self.loaded.verdicts.clear()
        return rows

    def call(self, request: dict) -> dict:
        args = wire.decode_args(request["args"], self.kept)
        outcome = self.loaded.call(request["fname"], tuple(args), tuple(request["argnames"]), request["timeout"])
        reply = {"hung": outcome.hung, "detail": outcome.detail, "changed": [str(c) for c in outcome.changed],
                 "verdicts": self.take_verdicts(), "error": None,
                 "value": wire.encode(outcome.value, keep_last=self.keep)}
        if outcome.error is not None:
            error = outcome.error
            owner, line = self.loaded.where(error)
            reply["error"] = {"type": type(error).__name__, "owner": owner, "line": line,
                              "text": self.loaded.describe(error)}
        reply["locals"] = [[k, wire.encode(v)] for k, v in list(outcome.local_values.items())[:200]
                           if isinstance(k, str) and isinstance(v, np.ndarray)]
        return reply

    def serve(self) -> None:
        while True:
            request = wire.receive(self.fd_in)
            op = request.get("op")
            if op == "quit":
                os._exit(0)
            try:
                if op == "load":
                    reply = self.load(request)
                elif op == "call":
                    reply = self.call(request)
                else:
                    self.loaded.rename_keys(request["fname"], dict(request["renames"]))
                    reply = {}
            except BaseException as error:  # noqa: BLE001 - anything the person's code throws at us
                reply = {"failure": f"{type(error).__name__}: {str(error)[:300]}"}
            wire.send(self.fd_out, reply)


def main() -> None:
    fd_in, fd_out = int(sys.argv[1]), int(sys.argv[2])
    faulthandler.enable(file=sys.stderr, all_threads=False)  # a crash names the person's line
    faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=False)  # so does a hang
    Server(fd_in, fd_out).serve()


if __name__ == "__main__":
    main()
