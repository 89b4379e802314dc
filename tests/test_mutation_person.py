"""A student's module and their functions called by the checker (symbptt/grading/person.py),
in the test's own process (``check`` runs it in a child process, where a mutation run sees
nothing): source files a student hands in (too large, binary, Latin-1, broken), errors and hangs
at import and in a call with the line they happened at, what a call changed in its inputs, its
final locals, and the repairs of names the code uses but never defines.

These tests came from ``tools/mutation.py symbptt/grading/person.py --sample 40``.
"""

from __future__ import annotations

import sys
import threading
import types

import numpy as np
import pytest

from symbptt.check import check_module
from symbptt.grading import person as P
from symbptt.grading.person import Person


def _person(tmp_path, source: str, timeout: float = 2.0, helpers=None, name: str = "student") -> Person:
    path = tmp_path / f"{name}.py"
    path.write_text(source, encoding="utf-8")
    return Person(path, timeout, helpers)


def test_the_status_of_an_exception():
    assert P.status_of("MemoryError") == "out of memory"
    assert P.status_of("ValueError") == "raised" and P.status_of("SystemExit") == "raised"


def test_a_call_returns_its_value_and_its_final_locals_and_swallows_prints(capsys):
    def f(a, b):
        total = a + b
        print("noise")
        inner = [k for k in range(2)]
        return total * 2, inner

    before = sys.gettrace()
    outcome = P.call_with_timeout(f, (1, 2), 5.0)
    assert outcome.value == (6, [0, 1]) and outcome.error is None and not outcome.hung
    assert outcome.local_values == {"a": 1, "b": 2, "total": 3, "inner": [0, 1]}
    assert capsys.readouterr().out == ""
    assert sys.gettrace() is before

    def tracer(frame, event, arg):  # a tracer already there (a debugger, coverage) is put back
        return None

    sys.settrace(tracer)
    try:
        P.call_with_timeout(f, (1, 2), 5.0)
        assert sys.gettrace() is tracer
    finally:
        sys.settrace(before)


def test_prints_go_through_where_the_child_captures_them(capsys, monkeypatch):
    monkeypatch.setattr(P, "CAPTURE_HERE", False)
    P.call_with_timeout(lambda: print("from the student"), (), 5.0)
    assert capsys.readouterr().out == "from the student\n"


def test_a_call_that_raises_or_ends_the_program_is_an_outcome():
    def exits():
        raise SystemExit(2)

    outcome = P.call_with_timeout(exits, (), 5.0)
    assert isinstance(outcome.error, SystemExit) and not outcome.hung and outcome.value is None
    outcome = P.call_with_timeout(lambda: 1 / 0, (), 5.0)
    assert isinstance(outcome.error, ZeroDivisionError)


def test_numpy_overflow_is_a_value_not_an_error():
    outcome = P.call_with_timeout(lambda: np.array([1.0, 0.0]) / np.array([0.0, 0.0]), (), 5.0)
    assert outcome.error is None and np.isinf(outcome.value[0]) and np.isnan(outcome.value[1])


def test_a_call_that_hangs_is_stopped_on_the_main_thread():
    def spin():
        while True:
            pass

    outcome = P.call_with_timeout(spin, (), 0.2)
    assert outcome.hung and isinstance(outcome.error, P._Timeout)
    fast = P.call_with_timeout(lambda: 5, (), 0.2)  # the timer is cleared after a call
    assert fast.value == 5 and not fast.hung
    import time
    time.sleep(0.3)  # no alarm left over to fire into the test


def test_a_call_that_hangs_off_the_main_thread_is_abandoned():
    results = {}
    stop = threading.Event()

    def spin():
        stop.wait(5)
        return 1

    worker = threading.Thread(target=lambda: results.update(out=P.call_with_timeout(spin, (), 0.2)))
    worker.start()
    worker.join(3)
    stop.set()
    assert results["out"].hung and results["out"].value is None
    quick = {}
    worker = threading.Thread(target=lambda: quick.update(out=P.call_with_timeout(lambda x: x + 1, (4,), 2.0)))
    worker.start()
    worker.join(3)
    assert quick["out"].value == 5 and not quick["out"].hung


def test_sources_that_cannot_be_a_submission_are_named():
    tree, why = P.parse_source(b"x = 1\n", "a.py")
    assert tree is not None and why == ""
    big = b"#" * (P.MAX_SOURCE + 1)
    too_large = f"the file is too large to be a submission ({P.MAX_SOURCE + 1} bytes; at most {P.MAX_SOURCE})"
    assert P.parse_source(big, "a.py") == (None, too_large)
    assert P.parse_source(b"#" * P.MAX_SOURCE, "a.py")[0] is not None
    assert P.parse_source(b"x = 1\0", "a.py") == (
        None, "not a Python source file: it contains NUL bytes (a binary file?)")
    assert P.parse_source(b"x = (\n", "a.py") == (None, "SyntaxError: '(' was never closed (line 1)")
    latin = 'x = "año"\n'.encode("latin-1")
    assert P.parse_source(latin, "a.py") == (
        None, ("SyntaxError: the file is not UTF-8 and declares no encoding (line 1); save it as UTF-8 or add "
               "a first line such as # -*- coding: latin-1 -*-"))
    declared = b"# -*- coding: latin-1 -*-\n" + latin
    assert P.parse_source(declared, "a.py")[1] == ""
    deep = ("x = " + "(" * 1000 + "1" + ")" * 1000 + "\n").encode()
    tree, why = P.parse_source(deep, "a.py")
    assert tree is None and why.startswith("SyntaxError: ")
    assert P.parse_source(b"x = " + b"-" * 100000 + b"1", "a.py") == (
        None, "SyntaxError: the file cannot be parsed (MemoryError: )")


def test_a_module_that_fails_at_import_is_a_verdict_with_its_line(tmp_path):
    person = _person(tmp_path, "import numpy as np\n\nvalue = np.zeros(2)[5]\n")
    assert person.verdicts == [("(module)", "import", "raised",
                                ("IndexError: index 5 is out of bounds for axis 0 with size 2 "
                                 "(line 3: value = np.zeros(2)[5])"))]
    memory = _person(tmp_path, "raise MemoryError('too big')\n", name="memory")
    assert memory.verdicts == [("(module)", "import", "out of memory",
                                "MemoryError: too big (line 1: raise MemoryError('too big'))")]
    broken = _person(tmp_path, "def f(:\n", name="broken")
    assert broken.verdicts[0][:3] == ("(module)", "import", "raised")
    assert broken.verdicts[0][3].startswith("SyntaxError: ") and "(line 1)" in broken.verdicts[0][3]
    assert broken.tree is None
    misplaced = _person(tmp_path, "return 1\n", name="misplaced")  # parses, does not compile
    assert misplaced.verdicts == [("(module)", "import", "raised",
                                   "SyntaxError: 'return' outside function (misplaced.py, line 1)")]


def test_a_module_that_hangs_at_import_is_stopped_and_the_line_named(tmp_path):
    person = _person(tmp_path, "x = 0\nwhile True:\n    x = (x +\n         1)\n", timeout=0.2)
    status = person.verdicts[0]
    assert status[:3] == ("(module)", "import", "hung")
    assert status[3] in ("stopped after the 0.2 s timeout (line 2: while True:)",
                         "stopped after the 0.2 s timeout (line 3: x = (x + …)",
                         "stopped after the 0.2 s timeout (line 4: 1))")


def test_the_namespace_of_a_file_and_of_a_module_object(tmp_path):
    person = _person(tmp_path, "import numpy as np\nWIDTH = 3\ndef f(x):\n    return x\n")
    assert person.namespace["__name__"] == "symbptt_checked_student"
    assert person.namespace["__file__"] == str((tmp_path / "student.py").resolve()) == person.path
    assert person.function("f")(4) == 4 and person.function("WIDTH") is None and person.function("nope") is None
    assert person.verdicts == [] and person.tree is not None
    module = types.ModuleType("handmade")
    module.g = lambda: 1
    loose = Person(module)
    assert loose.path == "handmade" and loose.function("g")() == 1 and loose.tree is None
    with pytest.raises(FileNotFoundError, match="no such file: .*missing.py"):
        Person(tmp_path / "missing.py")


def test_where_and_describe_name_the_students_innermost_line(tmp_path):
    person = _person(tmp_path, "def inner(x):\n    return x[3]\n\ndef outer(x):\n    return inner(x)\n\n"
                               "def leave():\n    raise SystemExit(1)\n\ndef polite():\n    raise KeyboardInterrupt\n")
    outcome = person.call("outer", ([1],), ("x",), 2.0)
    assert person.where(outcome.error) == ("inner", 2)
    assert person.describe(outcome.error) == "IndexError: list index out of range (line 2: return x[3])"
    leave = person.call("leave", (), (), 2.0).error
    assert person.describe(leave) == ("SystemExit: 1; the code tried to end the checker (sys.exit / SystemExit); "
                                      "a function must return (line 8: raise SystemExit(1))")
    polite = person.call("polite", (), (), 2.0).error
    assert person.describe(polite).startswith("KeyboardInterrupt: ; the code raised KeyboardInterrupt; a function "
                                              "must return (line 11")
    assert person.where(ValueError("not raised")) == (None, None)
    assert person.describe(ValueError("x" * 400)) == "ValueError: " + "x" * 300

    class Hostile(Exception):
        def __str__(self):
            raise RuntimeError

    assert person.describe(Hostile()) == "Hostile: (its message cannot be read)"


def test_line_text_marks_a_statement_that_goes_on(tmp_path):
    person = _person(tmp_path, "a = (1 +\n     2)\nb = [1,\n     2]\nc = 3\n\n")
    assert person.line_text(1) == "line 1: a = (1 + …"
    assert person.line_text(3) == "line 3: b = [1, …"
    assert person.line_text(5) == "line 5: c = 3"
    assert person.line_text(6) == "line 6"


def test_what_a_call_changed_in_its_inputs_is_named(tmp_path):
    person = _person(tmp_path, "def f(parameters, cache, x):\n    parameters['Wz'] += 1\n"
                               "    parameters['new'] = 0\n    del parameters['bz']\n    cache[1][0] = 5\n"
                               "    x[0, 0] = 9\n    return 1\n\ndef g(parameters, x):\n    return x.sum()\n")
    params = {"Wz": np.zeros((2, 2)), "bz": np.zeros((2, 1)), "Wr": np.ones(1)}
    cache = (np.zeros(1), [7, 8])
    x = np.zeros((2, 2))
    outcome = person.call("f", (params, cache, x), ("parameters", "cache", "x"), 2.0)
    assert outcome.changed == ["parameters['Wz']", "parameters['new'] (added)", "parameters['bz'] (removed)",
                               "cache[1][0]", "x"]
    assert np.array_equal(params["Wz"], np.zeros((2, 2))) and "bz" in params  # the call had copies
    assert person.call("g", (params, x), ("parameters", "x"), 2.0).changed == []
    nan = np.array([np.nan, 1.0])
    assert person.call("g", ({}, nan), ("parameters", "x"), 2.0).changed == []  # NaN is NaN


def test_changes_of_kind_length_shape_or_value():
    assert P._changes([1, 2], [1, 2, 3], "a") == ["a"]
    assert P._changes((1, 2), [1, 3], "a") == ["a[1]"]
    assert P._changes({"k": 1}, [1], "a") == ["a"]
    assert P._changes(np.zeros(2), np.zeros(3), "a") == ["a"]
    assert P._changes(np.zeros(2), [0.0, 0.0], "a") == ["a"]
    assert P._changes(np.array([np.nan]), np.array([np.nan]), "a") == []
    assert P._changes(np.array([1, 2]), np.array([1, 2]), "a") == []
    assert P._changes({"a": 1, "b": 2}, {"b": 2, "a": 1}, "p") == []
    assert P._changes(3, 4, "n") == ["n"] and P._changes("s", "s", "n") == []

    class Weird:
        def __eq__(self, other):
            raise ValueError

    assert P._changes(Weird(), Weird(), "w") == []  # cannot tell: not a change


def test_an_argument_that_cannot_be_copied_is_passed_as_it_is():
    class Stubborn:
        def __deepcopy__(self, memo):
            raise TypeError("no")

    value = Stubborn()
    assert P._copy(value) is value
    data = {"a": [1]}
    copied = P._copy(data)
    assert copied == data and copied["a"] is not data["a"]


def test_the_undefined_name_of_a_name_error():
    assert P._undefined_name(NameError("name 'x' is not defined", name="x")) == "x"
    assert P._undefined_name(NameError("name 'hidden_1' is not defined")) == "hidden_1"
    assert P._undefined_name(NameError("no quotes here")) is None
    assert P._undefined_name(NameError("no quotes here", name="y")) == "y"  # the attribute first


def test_similar_names_with_the_notebooks_synonym():
    assert P._similarity("gru_cell_forward", "gru_one_step_forward") == 1.0
    assert P._similarity("abc", "abc") == 1.0 and P._similarity("abc", "xyz") == 0.0
    assert P._best("sigmod", ["sigmoid", "softmax"], 0.6) == "sigmoid"
    assert P._best("zzz", ["sigmoid"], 0.6) is None and P._best("a", [], 0.1) is None
    assert P._best("ab", ["ac", "ad"], 0.5) == "ac"  # a tie goes to the first name in order
    assert P._best("ab", ["ad", "ac"], 0.5) == "ac"
    assert P._best("abcd", ["abce"], 0.75) == "abce" and P._best("abcd", ["abce"], 0.76) is None


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def test_a_standard_helper_never_defined_is_supplied(tmp_path):
    person = _person(tmp_path, "import numpy as np\ndef f(x):\n    return sigmoid(x)\n",
                     helpers={"sigmoid": (_sigmoid, "logistic sigmoid σ")})
    outcome = person.call("f", (np.zeros(2),), ("x",), 2.0)
    assert np.array_equal(outcome.value, [0.5, 0.5]) and outcome.error is None
    assert person.verdicts == [("f", "(call)", "raised",
                                ("NameError: name 'sigmoid' is not defined (line 3: return sigmoid(x)); sigmoid is never "
                                 "defined: the standard logistic sigmoid σ was supplied and the checks went on"))]


def test_a_function_called_by_a_wrong_name_calls_the_nearest_one_with_that_arity(tmp_path):
    person = _person(tmp_path, "def gru_one_step_forward(x, h):\n    return x + h\n\n"
                               "def gru_cell_backwards(a):\n    return a\n\n"
                               "def gru_forward(x):\n    return gru_cell_forward(x, 1)\n")
    outcome = person.call("gru_forward", (2,), ("x",), 2.0)
    assert outcome.value == 3
    assert person.verdicts[0][:3] == ("gru_forward", "(call)", "raised")
    assert person.verdicts[0][3].endswith("gru_cell_forward is not a function of the module: it evidently means "
                                          "gru_one_step_forward, which was called instead")
    assert person.namespace["gru_cell_forward"].__name__ == "gru_cell_forward"
    keywords = _person(tmp_path, "def step(x, h=0):\n    return x + h\n\ndef run(x):\n    return stpe(x, h=5)\n",
                       name="keywords")
    assert keywords.call("run", (1,), ("x",), 2.0).value == 6


def test_a_wrong_name_with_no_close_function_is_not_repaired(tmp_path):
    person = _person(tmp_path, "def helper(a, b, c):\n    return a\n\ndef f(x):\n    return helpr(x)\n")
    outcome = person.call("f", (1,), ("x",), 2.0)  # helper takes three arguments, not one
    assert isinstance(outcome.error, NameError) and person.verdicts == []
    again = person.call("f", (1,), ("x",), 2.0)  # tried once per function and name
    assert isinstance(again.error, NameError) and person.verdicts == []
    repeat = _person(tmp_path, "def helper(a, b=2):\n    return a + b\n\ndef f(x):\n    return helpr(x)\n",
                     name="defaults")
    assert repeat.call("f", (1,), ("x",), 2.0).value == 3  # one required, two at most


def test_a_weight_never_read_from_the_parameters_is_read_from_them(tmp_path):
    person = _person(tmp_path, "def f(x, parameters):\n    return Wz * x\n\ndef g(x):\n    return Wz * x\n")
    person.parameter_names = ("Wz", "bz")
    outcome = person.call("f", (2, {"Wz": 5}), ("x", "parameters"), 2.0)
    assert outcome.value == 10
    assert person.verdicts[0][3].endswith("Wz is never read from the parameters: it evidently means "
                                          "parameters['Wz'], used instead")
    assert isinstance(person.call("g", (2,), ("x",), 2.0).error, NameError)  # no parameters to read it from


def test_a_misspelt_variable_is_renamed_to_the_one_assigned_and_never_read(tmp_path):
    person = _person(tmp_path, "def f(x):\n    hidden = x * 2\n    other = 1\n    return hiden + other\n")
    outcome = person.call("f", (4,), ("x",), 2.0)
    assert outcome.value == 9
    assert person.verdicts[0][3].endswith("it evidently means hidden (assigned at line 2): f was checked as if "
                                          "it said hidden")
    argument = _person(tmp_path, "def f(hidden):\n    return hiden + 1\n", name="argument")
    assert argument.call("f", (4,), ("hidden",), 2.0).value == 5
    assert argument.verdicts[0][3].endswith("; it evidently means hidden: f was checked as if it said hidden")
    unrepairable = _person(tmp_path, "def f(x):\n    return qqqq\n", name="nothing")
    assert isinstance(unrepairable.call("f", (1,), ("x",), 2.0).error, NameError)
    assert unrepairable.verdicts == []


def test_repairs_are_only_for_name_errors_in_the_students_functions(tmp_path):
    person = _person(tmp_path, "def f(x):\n    return x.missing\n")
    assert person.repair(AttributeError("x")) is False
    assert person.repair(NameError("name 'q' is not defined", name="q")) is False  # raised outside the file
    outcome = person.call("f", (1,), ("x",), 2.0)
    assert isinstance(outcome.error, AttributeError) and person.verdicts == []


def test_a_call_that_hangs_is_recorded_with_where_it_was(tmp_path):
    person = _person(tmp_path, "def f(x):\n    while True:\n        x += 1\n")
    outcome = person.call("f", (1,), ("x",), 0.2)
    assert outcome.hung and outcome.error is None and person.hung == {"f"}
    assert outcome.detail in ("stopped after the 0.2 s timeout (line 2: while True:)",
                              "stopped after the 0.2 s timeout (line 3: x += 1)")


def test_renamed_keys_are_read_under_their_meaning(tmp_path):
    person = _person(tmp_path, "def f():\n    return {'dWx': 1, 'dWh': 2}\n\ndef g():\n    return [1]\n")
    person.rename_keys("f", {"dWx": "dWz"})
    person.rename_keys("g", {"a": "b"})
    assert person.call("f", (), (), 2.0).value == {"dWz": 1, "dWh": 2}
    assert person.call("g", (), (), 2.0).value == [1]
    assert person.renamed_keys == {"f": {"dWx": "dWz"}, "g": {"a": "b"}}
    assert person.namespace["f"].__name__ == "f"


def test_check_in_process_repairs_and_reports_like_the_child(tmp_path):
    from pathlib import Path

    reference = (Path(__file__).parent / "reference" / "gru_handwritten.py").read_text(encoding="utf-8")
    assert "def sigmoid" in reference
    path = tmp_path / "student.py"
    path.write_text(reference.replace("def sigmoid", "def _unused_sigmoid"), encoding="utf-8")
    report = check_module(path, "gru", timeout=2.0, isolated=False)
    repaired = [v for v in report.verdicts if "sigmoid is never defined" in v.detail]
    assert repaired and all(v.item == "(call)" for v in repaired)
    assert all(v.ok for v in report.verdicts if not v.item.startswith("("))
