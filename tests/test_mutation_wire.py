"""What crosses between a student's code in its child process and the checker
(symbptt/grading/wire.py): the child's encoding of whatever the code returns, and the parent's
validation of whatever arrives, met with what a hostile child could send (forged dtypes, shapes
that do not match their bytes, deep nesting, huge lengths, broken JSON), and the framing over a
real pipe.

These tests came from ``tools/mutation.py symbptt/grading/wire.py --sample 40``.
"""

from __future__ import annotations

import base64
import json
import os
import re
import struct
import threading

import numpy as np
import pytest

from symbptt.grading import wire
from symbptt.grading.wire import Opaque, Remote, WireError, decode, encode


def _round_trip(value, **kwargs):
    return decode(json.loads(json.dumps(encode(value, **kwargs))))


# -- the child's side -----------------------------------------------------------------------


def test_plain_numbers_strings_and_none_are_sent_as_they_are():
    assert encode(None) == {"v": None}
    assert encode(True) == {"v": True} and encode(False) == {"v": False}
    assert encode(3) == {"v": 3} and encode(-2.5) == {"v": -2.5}
    assert encode(2**53 - 1) == {"v": 2**53 - 1}
    big = encode(2**53)
    assert big == {"v": float(2**53)} and isinstance(big["v"], float)  # beyond a double's integers
    assert isinstance(encode(-(2**60))["v"], float)
    assert encode("gru") == {"s": "gru"}
    assert encode("x" * 5000) == {"s": "x" * wire.MAX_TEXT}


def test_subclasses_of_plain_types_are_opaque_not_trusted():
    class Sneaky(str):
        def __eq__(self, other):
            return True

    class Count(int):
        pass

    class Ratio(float):
        pass

    assert encode(Sneaky("ok")) == {"opaque": ["Sneaky", ""]}
    assert encode(Count(3)) == {"opaque": ["Count", ""]}
    assert encode(Ratio(0.5)) == {"opaque": ["Ratio", ""]}
    assert encode(object()) == {"opaque": ["object", ""]}
    assert str(decode(encode(Count(3)))) == "Count"


def test_arrays_are_sent_as_dtype_shape_and_bytes_and_come_back_equal():
    for dtype in ("f2", "f4", "f8", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "c8", "c16", "?"):
        value = (np.arange(12).reshape(3, 4) % 3).astype(dtype)
        tree = encode(value)
        assert tree == {"nd": [np.dtype(dtype).str, [3, 4], base64.b64encode(value.tobytes()).decode("ascii")]}
        back = _round_trip(value)
        assert type(back) is np.ndarray and back.dtype == value.dtype and np.array_equal(back, value)
        assert back.flags.writeable
    transposed = np.arange(6.0).reshape(2, 3).T  # not contiguous: sent in its logical order
    assert np.array_equal(_round_trip(transposed), transposed)
    scalar = _round_trip(np.float32(1.5))
    assert isinstance(scalar, np.ndarray) and scalar.shape == () and scalar.dtype == np.float32


def test_arrays_that_are_not_numbers_or_too_large_are_opaque():
    assert encode(np.array(["a", "b"])) == {"opaque": ["array of <U1", "not a numeric array"]}
    assert encode(np.array([object()])) == {"opaque": ["array of object", "not a numeric array"]}
    assert encode(np.zeros(3, dtype="datetime64[s]"))["opaque"][1] == "not a numeric array"
    at_limit = np.zeros(wire.MAX_ELEMENTS, dtype=bool)
    assert "nd" in encode(at_limit)
    over = np.zeros(wire.MAX_ELEMENTS + 1, dtype=bool)
    assert encode(over) == {"opaque": [f"array of shape ({wire.MAX_ELEMENTS + 1},)", "too large to compare"]}


def test_an_array_subclass_comes_back_as_a_plain_array_copy():
    class Tracked(np.ndarray):
        pass

    base = np.arange(4.0)
    value = base.view(Tracked)
    back = _round_trip(value)
    assert type(back) is np.ndarray and np.array_equal(back, base)
    base[0] = 99.0
    assert back[0] == 0.0


def test_objects_with_an_array_interface_are_read_as_arrays():
    class Like:
        def __array__(self, dtype=None, copy=None):
            return np.array([[1.0, 2.0]])

    assert np.array_equal(_round_trip(Like()), [[1.0, 2.0]])


def test_an_object_that_raises_when_read_is_opaque_with_the_reason():
    class Hostile:
        def __array__(self, dtype=None, copy=None):
            raise SystemExit(3)

    class Broken:
        def __array__(self, dtype=None, copy=None):
            raise ZeroDivisionError

    assert encode(Hostile()) == {"opaque": ["Hostile", "reading it raised SystemExit"]}
    assert encode(Broken()) == {"opaque": ["Broken", "reading it raised ZeroDivisionError"]}
    opaque = decode(encode(Broken()))
    assert opaque == Opaque("Broken", "reading it raised ZeroDivisionError")
    assert str(opaque) == "Broken (reading it raised ZeroDivisionError)"


def test_a_type_whose_name_cannot_be_read_is_called_object():
    class Meta(type):
        @property
        def __name__(cls):
            raise RuntimeError("no name")

    class Nameless(metaclass=Meta):
        def __array__(self, dtype=None, copy=None):
            raise ValueError

    tree = encode(Nameless())
    assert tree == {"opaque": ["object", "reading it raised ValueError"]}


def test_containers_nest_with_their_kinds_kept():
    value = {"h": np.ones((2, 1)), "n": 3, "list": [1, "a", None], "pair": (2.5, False), 7: "seven"}
    back = _round_trip(value)
    assert set(back) == {"h", "n", "list", "pair", "7"}
    assert np.array_equal(back["h"], np.ones((2, 1))) and back["n"] == 3
    assert back["list"] == [1, "a", None] and isinstance(back["list"], list)
    assert back["pair"] == (2.5, False) and isinstance(back["pair"], tuple)
    assert back["7"] == "seven"
    assert encode({("a", 1): 1}) == {"dict": [["('a', 1)", {"v": 1}]]}
    assert encode({"k" * 100: 1})["dict"][0][0] == "k" * 100  # a string key is sent whole
    assert encode({b"x" * 100: 1})["dict"][0][0] == repr(b"x" * 100)[:80]


def test_long_containers_are_cut_at_ten_thousand_items():
    assert len(encode(list(range(10_005)))["list"]) == 10_000
    assert len(encode(tuple(range(10_000)))["tuple"]) == 10_000
    assert len(encode(dict.fromkeys(range(10_002), 0))["dict"]) == 10_000


def test_the_last_item_of_a_returned_tuple_is_kept_in_the_child_as_a_handle():
    kept = []

    def keep(value):
        kept.append(value)
        return len(kept)

    cache = {"big": object()}
    tree = encode((np.ones(2), 5, cache), keep_last=keep)
    assert tree["tuple"][2] == {"ref": 1} and kept == [cache]
    back = decode(tree, generation=4)
    assert back[1] == 5 and back[2] == Remote(4, 1)
    assert encode([1, 2], keep_last=keep) == {"list": [{"v": 1}, {"ref": 2}]}
    assert encode((), keep_last=keep) == {"tuple": []}
    assert encode(((1, 2), 3), keep_last=keep)["tuple"][0] == {"tuple": [{"v": 1}, {"v": 2}]}  # only the top
    assert encode((1, 2)) == {"tuple": [{"v": 1}, {"v": 2}]}


def _nested(depth: int):
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


def test_nesting_deeper_than_allowed_is_opaque():
    tree = encode(_nested(wire.MAX_DEPTH + 1))
    inner = tree
    for _ in range(wire.MAX_DEPTH):
        inner = inner["list"][0]
    assert inner == {"list": [{"opaque": ["int", "nested too deeply"]}]}
    assert _round_trip(_nested(wire.MAX_DEPTH)) == _nested(wire.MAX_DEPTH)
    deep_dict: object = 1
    for _ in range(wire.MAX_DEPTH + 1):
        deep_dict = {"k": deep_dict}
    inner = encode(deep_dict)
    for _ in range(wire.MAX_DEPTH):
        inner = inner["dict"][0][1]
    assert inner == {"dict": [["k", {"opaque": ["int", "nested too deeply"]}]]}


def test_the_items_before_a_kept_last_one_are_one_level_down_like_any_tuples():
    nested = _nested(wire.MAX_DEPTH)
    kept = encode((nested, "cache"), keep_last=lambda value: 1)
    assert kept["tuple"][0] == encode((nested,))["tuple"][0]
    inner = kept["tuple"][0]
    for _ in range(wire.MAX_DEPTH - 1):
        inner = inner["list"][0]
    assert inner == {"list": [{"opaque": ["int", "nested too deeply"]}]}


# -- the parent's side: what a hostile child might send ----------------------------------------


def _array_tree(dtype="<f8", shape=(2,), data=None):
    if data is None:
        data = base64.b64encode(np.zeros(shape, dtype=dtype).tobytes()).decode("ascii")
    return {"nd": [dtype, list(shape), data]}


def test_an_array_whose_dtype_is_not_on_the_allow_list_is_refused():
    for dtype in ("|O", "<M8[s]", "<U1", "|V8", "f8", "float64"):
        with pytest.raises(WireError, match=re.escape(f"dtype {dtype!r} is not allowed")):
            decode({"nd": [dtype, [1], "AAAAAAAAAAA="]})
    assert decode(_array_tree("|b1", (2,))).dtype == bool


def test_an_array_with_a_malformed_spec_or_shape_is_refused():
    for spec in ([], ["<f8", [1]], ["<f8", [1], "AA==", 1], "<f8", None):
        with pytest.raises(WireError, match=r"\[dtype, shape, bytes\]"):
            decode({"nd": spec})
    for shape in ([-1], [1.0], [True], "2", (2,), [1] * 9, [None]):
        with pytest.raises(WireError, match="bad shape"):
            decode({"nd": ["<f8", shape, ""]})
    assert decode(_array_tree("|u1", (1,) * 8)).shape == (1,) * 8
    assert decode(_array_tree("<f8", (0, 3))).shape == (0, 3)
    assert decode(_array_tree("<f8", ())).shape == ()


def test_an_array_too_large_or_without_data_is_refused():
    with pytest.raises(WireError, match="too large or without data"):
        decode({"nd": ["|u1", [wire.MAX_ELEMENTS + 1], ""]})
    with pytest.raises(WireError, match="too large or without data"):
        decode({"nd": ["|u1", [2**40, 2**40], ""]})  # 2**80: would wrap around to 0 in int64
    with pytest.raises(WireError, match="too large or without data"):
        decode({"nd": ["<f8", [3, 6148914691236517206], "A" * 24]})  # 2**64 + 2: would wrap to 2
    with pytest.raises(WireError, match="too large or without data"):
        decode({"nd": ["<f8", [1], None]})
    at_limit = decode(_array_tree("|u1", (wire.MAX_ELEMENTS,)))
    assert at_limit.size == wire.MAX_ELEMENTS


def test_bytes_that_do_not_make_the_declared_array_are_refused():
    eight = base64.b64encode(bytes(8)).decode("ascii")
    with pytest.raises(WireError, match=r"8 bytes do not make an array of shape \(2,\) and dtype <f8"):
        decode({"nd": ["<f8", [2], eight]})
    with pytest.raises(WireError, match="bytes do not make"):
        decode({"nd": ["<f4", [1], eight]})
    for text in ("!!!!notbase64!!", "AAAAAAAAAAA", "é" * 12):
        with pytest.raises(WireError, match="^an array's bytes are not base64$"):
            decode({"nd": ["<f8", [1], text]})
    value = decode({"nd": ["<f8", [1], eight]})
    assert value.shape == (1,) and value[0] == 0.0 and value.flags.writeable


def test_numbers_strings_handles_and_opaque_values_are_validated():
    assert decode({"v": None}) is None and decode({"v": 1.5}) == 1.5 and decode({"v": True}) is True
    for body in ("1", [1], {"a": 1}):
        with pytest.raises(WireError, match="malformed number"):
            decode({"v": body})
    assert decode({"s": "x" * 5000}) == "x" * wire.MAX_TEXT
    assert decode({"s": 12}) == "12"
    assert decode({"ref": 7}, generation=3) == Remote(3, 7)
    for body in (True, "7", 1.0, None):
        with pytest.raises(WireError, match="malformed handle"):
            decode({"ref": body})
    assert decode({"opaque": ["T" * 100, "n" * 300]}) == Opaque("T" * 80, "n" * 200)
    assert decode({"opaque": [1, None]}) == Opaque("1", "None")
    for body in ("x", ["only one"], ["a", "b", "c"]):
        with pytest.raises(WireError, match="^malformed opaque value$"):
            decode({"opaque": body})
    assert str(Opaque("Foo")) == "Foo"


def test_containers_from_the_child_are_validated():
    for tag in ("tuple", "list"):
        with pytest.raises(WireError, match=f"malformed {tag}"):
            decode({tag: {"v": 1}})
    with pytest.raises(WireError, match="malformed dict$"):
        decode({"dict": {"a": {"v": 1}}})
    for item in (["a"], ["a", {"v": 1}, 3], [1, {"v": 1}], "ab"):
        with pytest.raises(WireError, match="malformed dict item"):
            decode({"dict": [item]})
    assert decode({"dict": [["k" * 300, {"v": 1}]]}) == {"k" * 200: 1}
    assert decode({"tuple": [{"v": 1}, {"list": []}]}, 5) == (1, [])


def test_malformed_values_and_unknown_tags_are_refused():
    for tree in ({}, {"v": 1, "s": "a"}, [{"v": 1}], "v", None):
        with pytest.raises(WireError, match="malformed value"):
            decode(tree)
    with pytest.raises(WireError, match="unknown tag 'pickle'"):
        decode({"pickle": "gASVAAAA"})
    with pytest.raises(WireError, match="unknown tag 'xxxxxxxxxxxxxxxxxxxx'$"):
        decode({"x" * 50: 1})


def test_a_value_nested_too_deeply_is_refused_not_a_recursion_error():
    tree: dict = {"v": 1}
    for _ in range(wire.MAX_DEPTH + 2):
        tree = {"list": [tree]}
    assert decode(tree) is not None  # the child's own limit, with its opaque leaf, fits
    with pytest.raises(WireError, match="malformed value"):
        decode({"list": [tree]})
    for wrap in (lambda inner: {"dict": [["k", inner]]}, lambda inner: {"list": [inner]},
                 lambda inner: {"tuple": [{"v": 1}, inner]}):
        deep: dict = {"v": 1}
        for _ in range(5000):
            deep = wrap(deep)
        with pytest.raises(WireError, match="^malformed value$"):  # not a RecursionError
            decode(deep)


# -- the parent's arguments -----------------------------------------------------------------


def test_arguments_go_to_the_child_with_handles_replaced_by_what_they_stand_for():
    cache = object()
    args = ({"Wz": np.eye(2)}, np.ones((2, 1, 3)), Remote(1, 4), [2, (3, Remote(1, 5))])
    tree = json.loads(json.dumps(wire.encode_args(args)))
    assert tree["tuple"][2] == {"ref": 4}
    back = wire.decode_args(tree, {4: cache, 5: "other"})
    assert isinstance(back, tuple) and back[2] is cache
    assert np.array_equal(back[0]["Wz"], np.eye(2)) and np.array_equal(back[1], np.ones((2, 1, 3)))
    assert back[3] == [2, (3, "other")] and isinstance(back[3], list) and isinstance(back[3][1], tuple)
    assert wire.encode_args({"a": [1]}) == {"dict": [["a", {"list": [{"v": 1}]}]]}
    assert wire.decode_args({"v": 2.5}, {}) == 2.5
    with pytest.raises(KeyError):
        wire.decode_args({"ref": 9}, {})
    inside = wire.decode_args(wire.encode_args({"cache": Remote(1, 4), "x": [Remote(1, 5)]}), {4: cache, 5: 1})
    assert inside == {"cache": cache, "x": [1]} and inside["cache"] is cache


# -- framing --------------------------------------------------------------------------------


def test_a_message_goes_through_a_pipe_with_its_length_first():
    read, write = os.pipe()
    try:
        wire.send(write, {"op": "call", "x": [1, 2]})
        header = os.read(read, 8)
        (length,) = struct.unpack(">Q", header)
        body = os.read(read, length)
        assert json.loads(body) == {"op": "call", "x": [1, 2]} and len(body) == length
        wire.send(write, {"nan": float("nan")})
        message = wire.receive(read)
        assert list(message) == ["nan"] and message["nan"] != message["nan"]
    finally:
        os.close(read)
        os.close(write)


def test_a_message_written_a_few_bytes_at_a_time_is_sent_whole(monkeypatch):
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, data[:5]))  # short writes
    read, write = os.pipe()
    try:
        wire.send(write, {"op": "quit", "why": "x" * 40})
        monkeypatch.undo()
        assert wire.receive(read) == {"op": "quit", "why": "x" * 40}
    finally:
        os.close(read)
        os.close(write)


def test_a_message_larger_than_a_pipe_arrives_whole():
    read, write = os.pipe()
    message = {"data": "x" * (3 * 2**20 + 17)}
    writer = threading.Thread(target=wire.send, args=(write, message))
    writer.start()
    try:
        assert wire.receive(read) == message
    finally:
        writer.join()
        os.close(read)
        os.close(write)


def _raw(read: int, write: int, data: bytes) -> None:
    os.write(write, data)
    os.close(write)


def test_what_a_hostile_child_writes_into_the_channel_is_refused():
    cases = [(struct.pack(">Q", wire.MAX_MESSAGE + 1), "larger than allowed"),
             (struct.pack(">Q", 5) + b"nope!", "not a JSON message: JSONDecodeError"),
             (struct.pack(">Q", 9) + b"[1, 2, 3]", "must be a JSON object"),
             (struct.pack(">Q", 20) + b"{}", "the channel closed"),
             (b"\x00\x00", "the channel closed"),
             (struct.pack(">Q", 4) + b"\xff\xfe{}", "not a JSON message")]
    for data, message in cases:
        read, write = os.pipe()
        _raw(read, write, data)
        try:
            with pytest.raises(WireError, match=message):
                wire.receive(read)
        finally:
            os.close(read)
    read, write = os.pipe()
    deep = b"[" * 100_000 + b"]" * 100_000
    writer = threading.Thread(target=_raw, args=(read, write, struct.pack(">Q", len(deep)) + deep))
    writer.start()
    try:
        with pytest.raises(WireError, match="not a JSON message: RecursionError"):
            wire.receive(read)
    finally:
        writer.join()
        os.close(read)
    read, write = os.pipe()
    _raw(read, write, struct.pack(">Q", wire.MAX_MESSAGE) + b"{}")
    try:  # the largest length allowed is read (and the channel then found closed)
        with pytest.raises(WireError, match="the channel closed"):
            wire.receive(read)
    finally:
        os.close(read)


def test_read_exactly_collects_a_message_written_in_pieces():
    read, write = os.pipe()

    def pieces():
        for chunk in (b"ab", b"c", b"defg"):
            os.write(write, chunk)
        os.close(write)

    writer = threading.Thread(target=pieces)
    writer.start()
    try:
        assert wire.read_exactly(read, 7) == b"abcdefg"
        assert wire.read_exactly(read, 0) == b""
    finally:
        writer.join()
        os.close(read)
