"""The child process that runs a student's code (symbptt/grading/child.py), its server driven in
the test's own process over real pipes (the checker starts it as a script in a fresh interpreter,
where a mutation run sees nothing): loading a module under limits and the import guard (the
guard and the kernel limits recorded here, not installed), calls with handles for caches, errors
with their line, renamed keys, requests the student's code breaks, and ``quit``.

The child as a process, started by the checker, is exercised by tests/test_check.py; what runs
there only (the real ``os._exit`` of ``quit``, the installed audit hook) cannot be reached here.

These tests came from ``tools/mutation.py symbptt/grading/child.py --sample 40``.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from symbptt.grading import child, wire


class _Quit(Exception):
    pass


@pytest.fixture
def isolated(monkeypatch):
    """What Server.load changes in its process, put back after the test."""
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(child.person_module, "CAPTURE_HERE", True)
    calls = {}
    monkeypatch.setattr(child.limits, "guard", lambda forbidden: calls.setdefault("guard", forbidden))
    monkeypatch.setattr(child.limits, "apply", lambda limits: calls.setdefault("apply", limits))
    saved = {k: v for k, v in sys.modules.items() if k == "symbptt" or k.startswith("symbptt.")}
    yield calls
    sys.modules.update(saved)


STUDENT = """import numpy as np

def forward(x, parameters):
    hidden = np.tanh(parameters["W"] @ x)
    return hidden, {"x": x, "hidden": hidden}

def backward(cache, dh):
    return {"dx": (1 - cache["hidden"] ** 2) * dh}

def broken(x):
    return x[10]

def squash(x):
    return sigmoid(x)

def keys():
    return {"dWx": 1}

def mutates(x):
    x[0] = 7.0
    return 1

def spins(x):
    while True:
        pass

SIZE = 3
"""


def _request(path, **extra):
    return {"op": "load", "path": str(path), "timeout": 2.0, "forbidden": ["/nowhere"],
            "helpers": {"sigmoid": ["def sigmoid(z):\n    return 1 / (1 + np.exp(-z))", "the logistic sigmoid"]},
            "parameter_names": ["W"], "limits": {"cpu_seconds": 30, "open_files": 32}, **extra}


def _loaded(tmp_path, isolated) -> child.Server:
    path = tmp_path / "student.py"
    path.write_text(STUDENT, encoding="utf-8")
    server = child.Server(-1, -1)
    reply = server.load(_request(path))
    assert reply["verdicts"] == []
    assert set(reply["functions"]) == {"forward", "backward", "broken", "squash", "keys", "mutates", "spins"}
    return server


def test_the_checked_code_may_not_import_symbptt():
    for name in ("symbptt", "symbptt.kernels.gru", "symbptt.check"):
        with pytest.raises(ImportError, match=f"the checked code may not import {name}: it is checked against "
                                              "symbptt, so its own code must compute the results"):
            child._Refuse.find_spec(name)
    assert child._Refuse.find_spec("symbptt_homework") is None and child._Refuse.find_spec("numpy") is None


def test_the_standard_helpers_are_built_from_their_source_text():
    helpers = child._helpers({"sigmoid": ["def sigmoid(z):\n    return 1 / (1 + np.exp(-z))", "σ"],
                              "tanh": ["tanh = np.tanh", "tanh"], "three": ["three = 3", "not a function"],
                              "other": ["def something_else(z):\n    return z", "named otherwise"]})
    assert set(helpers) == {"sigmoid", "tanh"}
    function, summary = helpers["sigmoid"]
    assert summary == "σ" and function(np.array([0.0]))[0] == 0.5
    assert helpers["tanh"] == (np.tanh, "tanh")


def test_a_server_has_no_module_before_load_and_keeps_values_by_handle():
    server = child.Server(3, 4)
    assert (server.fd_in, server.fd_out) == (3, 4)
    with pytest.raises(RuntimeError, match=r"no module loaded \(the first request is load\)"):
        server.loaded  # noqa: B018
    first, second = object(), object()
    assert server.keep(first) == 1 and server.keep(second) == 2
    assert server.kept == {1: first, 2: second}


def test_load_guards_limits_and_loads_the_module(tmp_path, isolated):
    before = [n for n in sys.modules if n.startswith("symbptt.")]
    assert before
    path = tmp_path / "student.py"
    path.write_text(STUDENT + "\nprint('loaded')\nraise ValueError('at import')\n", encoding="utf-8")
    server = child.Server(-1, -1)
    reply = server.load(_request(path))
    assert isolated["guard"] == ["/nowhere"]
    assert isolated["apply"] == child.limits.Limits(cpu_seconds=30, open_files=32)
    assert sys.meta_path[0] is child._Refuse
    assert not [n for n in sys.modules if n == "symbptt" or n.startswith("symbptt.")]
    assert sys.path[0] == str(tmp_path)
    assert child.person_module.CAPTURE_HERE is False
    assert server.loaded.parameter_names == ("W",)
    text = "ValueError: at import (line 30: raise ValueError('at import'))"
    assert reply["verdicts"] == [["(module)", "import", "raised", text]]
    assert "forward" in reply["functions"] and "SIZE" not in reply["functions"] and "np" not in reply["functions"]
    assert server.take_verdicts() == []


def test_a_call_returns_plain_data_and_keeps_the_cache_as_a_handle(tmp_path, isolated):
    server = _loaded(tmp_path, isolated)
    x, weights = np.ones((2, 1)), np.eye(2)
    args = wire.encode_args((x, {"W": weights}))
    reply = server.call({"fname": "forward", "args": args, "argnames": ["x", "parameters"], "timeout": 2.0})
    assert reply["error"] is None and reply["hung"] is False and reply["changed"] == [] and reply["verdicts"] == []
    value = wire.decode(reply["value"], generation=1)
    assert np.allclose(value[0], np.tanh(1.0)) and value[1] == wire.Remote(1, 1)
    assert set(server.kept[1]) == {"x", "hidden"}
    assert sorted(k for k, _ in reply["locals"]) == ["hidden", "x"]
    assert np.allclose(wire.decode(dict(reply["locals"])["hidden"]), np.tanh(1.0))
    back = server.call({"fname": "backward", "args": wire.encode_args((value[1], np.ones((2, 1)))),
                        "argnames": ["cache", "dh"], "timeout": 2.0})
    assert np.allclose(wire.decode(back["value"])["dx"], 1 - np.tanh(1.0) ** 2)


def test_a_call_that_raises_sends_the_error_with_its_line_and_the_repairs(tmp_path, isolated):
    server = _loaded(tmp_path, isolated)
    reply = server.call({"fname": "broken", "args": wire.encode_args((np.zeros(2),)), "argnames": ["x"],
                         "timeout": 2.0})
    text = "IndexError: index 10 is out of bounds for axis 0 with size 2 (line 11: return x[10])"
    assert reply["error"] == {"type": "IndexError", "owner": "broken", "line": 11, "text": text}
    assert wire.decode(reply["value"]) is None
    repaired = server.call({"fname": "squash", "args": wire.encode_args((np.zeros(1),)), "argnames": ["x"],
                            "timeout": 2.0})
    assert repaired["error"] is None and wire.decode(repaired["value"])[0] == 0.5
    assert [row[:3] for row in repaired["verdicts"]] == [["squash", "(call)", "raised"]]
    assert all(isinstance(c, str) for row in repaired["verdicts"] for c in row)


def test_a_call_reports_a_changed_input_and_a_hang_with_where_it_was(tmp_path, isolated):
    server = _loaded(tmp_path, isolated)
    changed = server.call({"fname": "mutates", "args": wire.encode_args((np.zeros(2),)), "argnames": ["x"],
                           "timeout": 2.0})
    assert changed["changed"] == ["x"] and wire.decode(changed["value"]) == 1
    hung = server.call({"fname": "spins", "args": wire.encode_args((1,)), "argnames": ["x"], "timeout": 0.2})
    assert hung["hung"] is True and hung["error"] is None
    assert hung["detail"] in ("stopped after the 0.2 s timeout (line 24: while True:)",
                              "stopped after the 0.2 s timeout (line 25: pass)")


def _serve(server, requests, monkeypatch):
    """Run the server's loop over real pipes until ``quit``; the replies it wrote."""
    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe()
    server.fd_in, server.fd_out = to_child_r, from_child_w
    for request in requests + [{"op": "quit"}]:
        wire.send(to_child_w, request)
    os.close(to_child_w)  # a loop that misses the quit meets a closed channel, not a hang

    def quit_(code):
        raise _Quit(code)

    monkeypatch.setattr(os, "_exit", quit_)
    with pytest.raises(_Quit) as stopped:
        server.serve()
    assert stopped.value.args == (0,)
    os.close(from_child_w)
    replies = []
    while True:
        try:
            replies.append(wire.receive(from_child_r))
        except wire.WireError:
            break
    for fd in (to_child_r, from_child_r):
        os.close(fd)
    return replies


def test_the_server_answers_each_request_in_turn_until_quit(tmp_path, isolated, monkeypatch):
    server = _loaded(tmp_path, isolated)
    call = {"op": "call", "fname": "keys", "args": wire.encode_args(()), "argnames": [], "timeout": 2.0}
    replies = _serve(server, [call, {"op": "rename", "fname": "keys", "renames": {"dWx": "dWz"}}, call,
                              {"op": "call", "fname": "missing", "args": {"tuple": []}, "argnames": [],
                               "timeout": 1.0},
                              {"op": "rename", "fname": "missing", "renames": {}}], monkeypatch)
    assert len(replies) == 5
    assert wire.decode(replies[0]["value"]) == {"dWx": 1}
    assert replies[1] == {}
    assert wire.decode(replies[2]["value"]) == {"dWz": 1}
    assert replies[3] == {"failure": "KeyError: 'missing'"}
    assert replies[4] == {"failure": "KeyError: 'missing'"}
    long = _serve(server, [{"op": "rename", "fname": "f" * 400, "renames": {}}], monkeypatch)
    assert long == [{"failure": "KeyError: '" + "f" * 299}]  # the text cut at 300 characters


def test_the_server_answers_a_load_request(tmp_path, isolated, monkeypatch):
    path = tmp_path / "student.py"
    path.write_text(STUDENT, encoding="utf-8")
    server = child.Server(-1, -1)
    replies = _serve(server, [_request(path)], monkeypatch)
    assert replies[0]["verdicts"] == [] and "forward" in replies[0]["functions"]
    assert server.loaded.path == str(path.resolve())


def test_a_request_before_load_fails_without_ending_the_loop(monkeypatch):
    server = child.Server(-1, -1)
    replies = _serve(server, [{"op": "call", "fname": "f", "args": {"tuple": []}, "argnames": [], "timeout": 1.0}],
                     monkeypatch)
    assert replies == [{"failure": "RuntimeError: no module loaded (the first request is load)"}]


def test_main_serves_the_descriptors_it_is_given(monkeypatch):
    seen = {}

    class Recorder:
        @staticmethod
        def enable(file, all_threads):
            seen["enable"] = (file, all_threads)

        @staticmethod
        def register(signum, file, all_threads):
            seen["register"] = (signum, file, all_threads)

    monkeypatch.setattr(child, "faulthandler", Recorder)
    monkeypatch.setattr(sys, "argv", ["child.py", "7", "9"])
    monkeypatch.setattr(child.Server, "serve", lambda self: seen.setdefault("served", (self.fd_in, self.fd_out)))
    child.main()
    assert seen == {"enable": (sys.stderr, False), "register": (child.signal.SIGUSR1, sys.stderr, False),
                    "served": (7, 9)}


def test_the_child_imports_its_three_files_as_its_own_modules():
    assert child.wire.__name__ == "wire" and child.limits.__name__ == "limits"
    assert child.person_module.__name__ == "person"
    assert child.wire is not wire
    assert "wire" not in sys.modules and "person" not in sys.modules and "limits" not in sys.modules
    assert child.HERE == child.Path(child.__file__).resolve().parent
    assert str(child.HERE) not in sys.path


def test_at_most_five_hundred_function_names_are_sent(tmp_path, isolated):
    path = tmp_path / "many.py"
    path.write_text("".join(f"def f{k}():\n    return {k}\n" for k in range(600)), encoding="utf-8")
    reply = child.Server(-1, -1).load(_request(path))
    assert reply["functions"] == [f"f{k}" for k in range(500)]
