"""Hardening: bad, corrupt, hostile and oversized data files, and drawings no model expects.

Every bad input must end in one of the library's documented errors (DataFileError,
DrawingError, SketchError) with a readable message, or be skipped and counted where the
format allows it (ndjson lines); nothing in a file may run, and size limits are checked before
a file is read into memory. the README lists what the user sees for each case.
"""

from __future__ import annotations

import copyreg
import io
import json
import math
import os
import pickle
import pickletools
import shutil
import signal
import subprocess
import time
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from numpy.lib import format as npy_format

from sketch_model import datasets, render
from sketch_model.canvas import canvas_to_stroke3
from sketch_model.errors import DataFileError, DrawingError, SketchError, TrainingError
from sketch_model.quickdraw import drawing_to_stroke3, preprocess_raw_drawing, simplify_ndjson
from sketch_model.strokes import as_stroke3, fit_to_model, stroke3_to_stroke5

SHEEP = Path(__file__).resolve().parents[1] / "assets" / "data" / "aaron_sheep.npz"


# --- helpers ------------------------------------------------------------------------------

def sketch(n: int = 6, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    result = np.zeros((n, 3), dtype=np.int16)
    result[:, 0:2] = rng.integers(-20, 20, size=(n, 2))
    result[2::3, 2] = 1
    result[-1, 2] = 1
    return result


def object_array(items: list) -> np.ndarray:
    array = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        array[i] = item
    return array


GOOD = object_array([sketch(6, 1), sketch(9, 2)])


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def npy_with_pickle(payload: bytes, shape: tuple = (1,)) -> bytes:
    """A .npy member whose header promises an object array and whose body is `payload`."""
    buffer = io.BytesIO()
    npy_format.write_array_header_1_0(buffer, {"descr": "|O", "fortran_order": False,
                                               "shape": shape})
    return buffer.getvalue() + payload


def write_npz(path: Path, **members: np.ndarray | bytes) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, value in members.items():
            archive.writestr(f"{name}.npy", value if isinstance(value, bytes) else npy_bytes(value))
    return path


def splits(**bad: np.ndarray | bytes) -> dict:
    return {"train": GOOD, "valid": GOOD, "test": GOOD} | bad


def refused(error: type, call, *args, match: str | None = None, **kwargs) -> str:
    """The message of the documented error `call` raises; fails on anything else."""
    with pytest.raises(error, match=match) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert message.strip() and message.isprintable()
    return message


# --- .npz: truncated, corrupt, empty ------------------------------------------------------

@pytest.fixture(scope="module")
def sheep_bytes() -> bytes:
    return SHEEP.read_bytes()


@pytest.fixture(scope="module")
def sheep_data() -> dict:
    return datasets.read_npz(SHEEP)


@pytest.mark.parametrize("keep", [0, 1, 21, 100, 4096, 0.25, 0.5, 0.9, -22, -1])
def test_truncated_npz_is_refused(tmp_path, sheep_bytes, keep):
    cut = int(len(sheep_bytes) * keep) if isinstance(keep, float) else keep
    path = tmp_path / "sheep.npz"
    path.write_bytes(sheep_bytes[:cut])
    message = refused(DataFileError, datasets.read_npz, path)
    assert str(path) in message


@pytest.mark.parametrize("seed", range(12))
def test_corrupt_npz_is_refused_or_read_unchanged(tmp_path, sheep_bytes, sheep_data, seed):
    """A few bytes flipped anywhere: a clear error, or (where the bytes did not matter, e.g. a
    timestamp) exactly the original sketches, never different data."""
    rng = np.random.default_rng(seed)
    data = bytearray(sheep_bytes)
    for offset in rng.integers(0, len(data), size=3):
        data[offset] ^= int(rng.integers(1, 256))
    path = tmp_path / "corrupt.npz"
    path.write_bytes(bytes(data))
    try:
        result = datasets.read_npz(path)
    except DataFileError as err:
        assert str(err).strip()
        return
    for split in datasets.SPLITS:
        assert len(result[split]) == len(sheep_data[split])
        for got, want in zip(result[split], sheep_data[split]):
            np.testing.assert_array_equal(got, want)


def test_empty_files_are_refused(tmp_path):
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    refused(DataFileError, datasets.read_npz, empty, match="not a readable .npz")
    no_members = tmp_path / "nothing.npz"
    zipfile.ZipFile(no_members, "w").close()
    refused(DataFileError, datasets.read_npz, no_members, match="holds nothing")
    ndjson = tmp_path / "empty.ndjson"
    ndjson.write_bytes(b"")
    refused(DataFileError, datasets.read_ndjson, ndjson, match="no usable")
    blank = tmp_path / "blank.ndjson"
    blank.write_bytes(b"\n \n\r\n\t\n")
    refused(DataFileError, datasets.read_ndjson, blank, match="no usable")
    refused(DataFileError, datasets.load_dataset, [ndjson], 250)
    # Splits present but empty: readable, and training refuses with a clear message.
    hollow = write_npz(tmp_path / "hollow.npz", **splits(train=object_array([])))
    assert datasets.read_npz(hollow)["train"] == []
    refused(TrainingError, datasets.Batcher, [], 8, 250, 0, 0.15, 0.1, match="fewer than")


def test_paths_that_are_not_data_files_are_refused(tmp_path):
    refused(DataFileError, datasets.read_npz, tmp_path / "missing.npz", match="cannot read")
    refused(DataFileError, datasets.read_npz, tmp_path, match="not a file")
    refused(DataFileError, datasets.load_dataset, [tmp_path / "missing.npz"], 250,
            match="does not exist")
    refused(DataFileError, datasets.load_dataset, [tmp_path], 250, match="holds no")
    (tmp_path / "notes.txt").write_text("hello")
    refused(DataFileError, datasets.load_dataset, [tmp_path / "notes.txt"], 250,
            match="neither")
    image = tmp_path / "picture.npz"  # a PNG renamed
    image.write_bytes(render.to_png(sketch().astype(np.float32), size=32))
    refused(DataFileError, datasets.read_npz, image, match="not a readable .npz")
    # Not regular files: a FIFO would block the reader, /dev/zero never ends.
    os.mkfifo(tmp_path / "pipe.ndjson")
    os.mkfifo(tmp_path / "pipe.npz")
    (tmp_path / "zeros.ndjson").symlink_to("/dev/zero")
    (tmp_path / "zeros.npz").symlink_to("/dev/zero")
    signal.alarm(20)  # a hang fails the test instead of stopping the run
    try:
        for name in ("pipe.ndjson", "pipe.npz", "zeros.ndjson", "zeros.npz"):
            refused(DataFileError, datasets.load_dataset, [tmp_path / name], 250,
                    match="not a file")
        refused(DataFileError, simplify_ndjson, tmp_path / "zeros.ndjson", tmp_path / "o.ndjson",
                match="not a file")
    finally:
        signal.alarm(0)
    encrypted = tmp_path / "encrypted.npz"
    shutil.copy(write_npz(tmp_path / "plain.npz", **splits()), encrypted)
    raw = bytearray(encrypted.read_bytes())
    for header in (b"PK\x03\x04", b"PK\x01\x02"):  # set the "encrypted" flag bit everywhere
        start = 0
        while (start := raw.find(header, start)) >= 0:
            flag = start + (6 if header == b"PK\x03\x04" else 8)
            raw[flag] |= 1
            start += 4
    encrypted.write_bytes(bytes(raw))
    refused(DataFileError, datasets.read_npz, encrypted)


# --- .npz: missing splits, wrong shapes and dtypes, NaN, pens -----------------------------

@pytest.mark.parametrize("present", [("train",), ("train", "valid"), ("valid", "test"),
                                     ("train", "valid", "tests"), ("arr_0",)])
def test_missing_splits_are_named(tmp_path, present):
    path = write_npz(tmp_path / "partial.npz", **{name: GOOD for name in present})
    message = refused(DataFileError, datasets.read_npz, path, match="lacks the split")
    for split in set(datasets.SPLITS) - set(present):
        assert split in message


WRONG_ARRAYS = {
    "2-D numeric": np.zeros((5, 3), np.float32),
    "(k, n, 2)": np.zeros((2, 5, 2), np.float32),
    "(k, n, 4)": np.zeros((2, 5, 4), np.int16),
    "1-D numeric": np.zeros(7),
    "0-D": np.float32(3.0),
    "complex": np.zeros((2, 5, 3), np.complex64),
    "bool": np.zeros((2, 5, 3), bool),
    "strings": np.array([["a", "b", "c"]] * 2),
    "bytes": np.zeros((2, 5, 3), "S1"),
    "structured": np.zeros(3, dtype=[("x", "f4"), ("y", "O")]),
    "2-D object": np.empty((2, 2), dtype=object),
    "sketch (n, 2)": object_array([sketch(), np.zeros((4, 2))]),
    "sketch (n, 4)": object_array([np.zeros((4, 4))]),
    "sketch 1-D": object_array([np.zeros(3)]),
    "sketch 3-D": object_array([np.zeros((2, 2, 3))]),
    "sketch of strings": object_array([np.array([["1", "2", "x"]])]),
    "sketch of objects": object_array([object_array([1, 2, 3])]),
    "sketch None": object_array([None]),
    "sketch dict": object_array([{"a": 1}]),
    "sketch ragged list": object_array([[[1, 2, 0], [1, 2]]]),
    "sketch huge int": object_array([[[10**400, 0, 0]]]),
    "sketch complex": object_array([np.zeros((3, 3), complex)]),
    "NaN in sketch": object_array([sketch(), np.array([[1, math.nan, 0], [1, 1, 1]])]),
    "inf in sketch": object_array([np.array([[math.inf, 0, 1]])]),
    "-inf numeric": np.full((2, 3, 3), -np.inf, np.float32),
    "NaN numeric": np.full((2, 3, 3), np.nan),
    "beyond float32": object_array([np.array([[1e300, 0.0, 1.0]])]),
    "pen 2": object_array([np.array([[1, 1, 0], [1, 1, 2]])]),
    "pen -1": object_array([np.array([[1, 1, -1]])]),
    "pen 0.5": object_array([np.array([[1.0, 1.0, 0.5]])]),
    "pen NaN": object_array([np.array([[1.0, 1.0, math.nan]])]),
    "uint64 max": np.full((1, 2, 3), 2**64 - 1, np.uint64),
}


@pytest.mark.parametrize("name", sorted(WRONG_ARRAYS))
@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_wrong_shapes_dtypes_values_and_pens_are_refused(tmp_path, name):
    path = write_npz(tmp_path / "bad.npz", **splits(valid=WRONG_ARRAYS[name]))
    message = refused(DataFileError, datasets.read_npz, path)
    assert "valid" in message and str(path) in message, "the message names the file and split"


def test_bad_npy_headers_are_refused(tmp_path):
    header = io.BytesIO()
    npy_format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                               "shape": (10**9, 10**9, 3)})
    members = {
        "garbage": b"not an npy file at all",
        "empty": b"",
        "promises more than it holds": header.getvalue() + b"\0" * 64,
        "npy version 3.0": b"\x93NUMPY\x03\x00" + b"\0" * 64,
        "pickle that is not an array": npy_with_pickle(pickle.dumps([1, 2, 3])),
        "pickle of the wrong shape": npy_with_pickle(pickle.dumps(GOOD), shape=(5,)),
        "truncated pickle": npy_bytes(GOOD)[:-40],
    }
    for name, member in members.items():
        path = write_npz(tmp_path / "bad.npz", **splits(test=member))
        message = refused(DataFileError, datasets.read_npz, path)
        assert "test" in message, name


# --- hostile pickles ----------------------------------------------------------------------

class _Hostile:
    """Pickles to a call of `function(*args)`: what a malicious .npz would carry."""

    def __init__(self, function, *args) -> None:
        self.function, self.args = function, args

    def __reduce__(self):
        return (self.function, self.args)


def _hostile_payloads(marker: Path) -> dict[str, bytes]:
    command = f"touch {marker}"
    code = f"open({str(marker)!r}, 'w').close()"
    payloads = {}
    for protocol in (0, 2, 4, 5):
        payloads[f"os.system, protocol {protocol}"] = pickle.dumps(
            _Hostile(os.system, command), protocol=protocol)
    payloads["builtins.exec"] = pickle.dumps(_Hostile(exec, code), protocol=2)
    payloads["builtins.eval"] = pickle.dumps(_Hostile(eval, code), protocol=4)
    payloads["subprocess.Popen"] = pickle.dumps(_Hostile(subprocess.Popen, ["touch", str(marker)]),
                                                protocol=4)
    # Inside an otherwise genuine object array, after real sketches.
    payloads["hidden in an object array"] = pickle.dumps(
        object_array([sketch(), _Hostile(os.system, command)]), protocol=2)
    # Numpy's own allowed names used to smuggle a call: _reconstruct with a hostile
    # "subtype", and a dtype built from a hostile object.
    reconstruct = np.zeros(0).__reduce__()[0]
    payloads["_reconstruct of a hostile type"] = pickle.dumps(
        _Hostile(reconstruct, _Hostile(os.system, command), (0,), b"b"), protocol=2)
    payloads["numpy.dtype of a hostile object"] = pickle.dumps(
        _Hostile(np.dtype, _Hostile(os.system, command)), protocol=4)
    # The copyreg extension registry names globals by number (EXT1 opcode, code 240 is
    # registered to os.system by the test below).
    payloads["extension code"] = b"\x80\x02\x82\xf0X" + len(command).to_bytes(4, "little") \
        + command.encode() + b"\x85R."
    payloads["persistent id"] = b"\x80\x02X\x03\x00\x00\x00pid" + b"Q."
    return payloads


@pytest.fixture
def os_system_extension():
    copyreg.add_extension("posix", "system", 240)
    yield
    copyreg.remove_extension("posix", "system", 240)


def test_hostile_pickles_are_refused_and_nothing_runs(tmp_path, os_system_extension):
    marker = tmp_path / "pwned"
    payloads = _hostile_payloads(marker)
    assert len(payloads) == 12
    for name, payload in payloads.items():
        list(pickletools.genops(payload))  # each is a well-formed pickle
        path = write_npz(tmp_path / "hostile.npz", **splits(train=npy_with_pickle(payload)))
        message = refused(DataFileError, datasets.read_npz, path)
        assert "train" in message, name
        assert not marker.exists(), f"{name}: the pickle ran code"
        # The same file through the loader that training uses.
        refused(DataFileError, datasets.load_dataset, [path], 250)
        assert not marker.exists(), f"{name}: the pickle ran code"


def test_crafted_array_state_cannot_crash_the_reader(tmp_path):
    """numpy's own ndarray.__setstate__ reads past the end of an object array's item list when
    the list is shorter than the shape: a crafted .npz crashed the process (segfault)."""
    reconstruct = np.zeros(0).__reduce__()[0]

    class ShortState:
        def __reduce__(self):
            return (reconstruct, (np.ndarray, (0,), b"b"),
                    (1, (1000, 3), np.dtype(object), False, [0, 1, 2]))

    class WrongBytes:
        def __reduce__(self):
            return (reconstruct, (np.ndarray, (0,), b"b"),
                    (1, (10**9,), np.dtype("f4"), False, b"\0" * 4))

    class NegativeShape:
        def __reduce__(self):
            return (reconstruct, (np.ndarray, (0,), b"b"),
                    (1, (-1,), np.dtype("f4"), False, b""))

    for payload in (ShortState(), WrongBytes(), NegativeShape(), object_array([ShortState()])):
        member = npy_with_pickle(pickle.dumps(payload, protocol=4))
        path = write_npz(tmp_path / "crafted.npz", **splits(valid=member))
        refused(DataFileError, datasets.read_npz, path, match="valid")


def test_pickle_memo_bomb_is_refused_before_it_allocates(tmp_path):
    """Nine bytes that store to memo entry N make CPython's unpickler allocate and zero a
    table of N entries: 2**31 is 16 GiB (found by test_fuzz.py, which the OOM killer ended).
    2**24 here, which costs 256 MiB should the check ever be lost."""
    for index in (2**24, 2**16):
        payload = b"\x80\x02N" + b"r" + index.to_bytes(4, "little") + b"."
        path = write_npz(tmp_path / "bomb.npz", **splits(train=npy_with_pickle(payload)))
        tracemalloc.start()
        try:
            refused(DataFileError, datasets.read_npz, path, match="memo entry")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 4 * 1024**2, f"{peak} bytes allocated for a {len(payload)}-byte pickle"


def test_genuine_pickles_still_load(tmp_path, sheep_data):
    """The published Python 2 pickles (protocol 2, latin1 strings) and numpy 2's own."""
    trusted = np.load(SHEEP, allow_pickle=True, encoding="latin1")
    for split in datasets.SPLITS:
        assert len(sheep_data[split]) == len(trusted[split])
        for got, want in zip(sheep_data[split][:50], trusted[split][:50]):
            np.testing.assert_array_equal(got, want)
    mixed = object_array([sketch(5).astype(">i4"), np.asfortranarray(sketch(7).astype("f8")),
                          sketch(3).astype(np.uint8) % 2])
    path = write_npz(tmp_path / "mine.npz", **splits(test=mixed))
    for got, want in zip(datasets.read_npz(path)["test"], mixed):
        np.testing.assert_array_equal(got, want.astype(np.float32))


# --- files far too large ------------------------------------------------------------------

def test_oversized_npz_is_refused_before_it_is_read(tmp_path, monkeypatch):
    sparse = tmp_path / "huge.npz"  # 3 GiB on paper, no blocks on disk
    with open(sparse, "wb") as f:
        f.truncate(3 * 1024**3)
    opened = []
    monkeypatch.setattr(datasets.zipfile, "ZipFile",
                        lambda *a, **k: opened.append(a) or pytest.fail("the file was opened"))
    started = time.perf_counter()
    message = refused(DataFileError, datasets.read_npz, sparse, match="over the limit")
    assert "3221225472 bytes" in message and time.perf_counter() - started < 1
    refused(DataFileError, datasets.load_dataset, [sparse], 250, match="over the limit")
    assert not opened


def test_size_limits_apply_to_the_file_and_to_each_unpacked_member(tmp_path):
    small = write_npz(tmp_path / "small.npz", **splits())
    size = small.stat().st_size
    refused(DataFileError, datasets.read_npz, small, max_bytes=size - 1, match="over the limit")
    assert datasets.read_npz(small, max_bytes=size)  # the limit is inclusive
    # A zip bomb: a few kilobytes that unpack to 8 MB.
    bomb = write_npz(tmp_path / "bomb.npz",
                     **splits(train=np.zeros((8, 1024 * 1024 // 12, 3), np.float32)))
    assert bomb.stat().st_size < 100_000
    refused(DataFileError, datasets.read_npz, bomb, max_bytes=1024**2, match="unpacks to")
    # The same bomb with a member whose declared size lies: read stops at the limit.
    raw = bytearray(bomb.read_bytes())
    for header, field in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        start = 0
        while (start := raw.find(header, start)) >= 0:
            raw[start + field:start + field + 4] = (100).to_bytes(4, "little")
            start += 4
    liar = tmp_path / "liar.npz"
    liar.write_bytes(bytes(raw))
    refused(DataFileError, datasets.read_npz, liar, max_bytes=1024**2)


def test_overlong_ndjson_line_is_skipped_without_reading_it_whole(tmp_path):
    good = json.dumps({"word": "cat", "key_id": "1", "drawing": [[[0, 10, 20], [0, 5, 0]]]})
    path = tmp_path / "long.ndjson"
    with open(path, "w") as f:
        f.write(good + "\n")
        f.write('{"word": "cat", "key_id": "2", "drawing": [[[' + "1, " * 2_000_000 + "1]]]}\n")
        f.write(good.replace('"1"', '"3"') + "\n")
    tracemalloc.start()
    try:
        drawings = datasets.read_ndjson(path, max_line_bytes=64 * 1024)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(drawings.sketches) == 2 and drawings.skipped == 1
    assert peak < 1024**2, f"{peak} bytes held for a 6 MB line"
    counts = simplify_ndjson(path, tmp_path / "out.ndjson", max_line_bytes=64 * 1024)
    assert counts == {"read": 3, "written": 0, "skipped": 3}  # simplified lines are not raw


# --- ndjson with malformed lines ----------------------------------------------------------

MALFORMED_LINES = [
    b"not json",
    b"{",
    b"[1, 2, 3]",
    b'"a string"',
    b"null",
    b"\xff\xfe\x00 invalid utf-8",
    b'{"word": "cat", "key_id": "9"}',
    b'{"word": "cat", "key_id": "9", "drawing": []}',
    b'{"word": "cat", "key_id": "9", "drawing": [[]]}',
    b'{"word": "cat", "key_id": "9", "drawing": [[[1, 2], [3]]]}',
    b'{"word": "cat", "key_id": "9", "drawing": [[[1, 2], [3, 4], [5, 6], [7, 8]]]}',
    b'{"word": "cat", "key_id": "9", "drawing": [[[NaN, 2], [3, 4]]]}',
    b'{"word": "cat", "key_id": "9", "drawing": [[[Infinity, 2], [3, 4]]]}',
    b'{"word": "cat", "key_id": "9", "drawing": [[[1e999, 2], [3, 4]]]}',
    b'{"word": "cat", "key_id": "9", "drawing": [[["1", 2], [3, 4]]]}',
    b'{"word": "cat", "key_id": "9", "drawing": [[[true, 2], [3, 4]]]}',
    b'{"word": "cat", "key_id": "9", "drawing": [[[1, 2], [3, 4]], 7]}',
    b'{"word": 5, "key_id": "9", "drawing": [[[1, 2], [3, 4]]]}',
    b'{"word": "cat", "key_id": true, "drawing": [[[1, 2], [3, 4]]]}',
    b'{"word": "cat", "drawing": [[[1, 2], [3, 4]]]}',
    b'{"word": "cat", "key_id": "9", "drawing": [[[1, 2], [3, 4]], [[1, 2], [3, 4], [5, 6]]]}',
    b'{"word": "cat", "key_id": "9", "drawing": [[[1, ' + b"9" * 5000 + b'], [3, 4]]]}',
    b'{"word": "cat", "key_id": "9", "drawing": [[[-1e308, 1e308], [0, 0], [0, 1]]]}',
    b"[" * 100_000 + b"]" * 100_000,
    b'{"word": "cat", "key_id": "9", "drawing": ' + b"[" * 5000 + b"]" * 5000 + b"}",
]


def test_malformed_ndjson_lines_are_skipped_and_counted(tmp_path):
    good = [json.dumps({"word": "cat", "key_id": str(i), "drawing": [[[0, 10 + i, 20],
                                                                    [0, 5, i]]]}).encode()
            for i in range(3)]
    lines = [good[0], *MALFORMED_LINES[:12], good[1], b"", b"   ", *MALFORMED_LINES[12:], good[2]]
    path = tmp_path / "cat.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")
    drawings = datasets.read_ndjson(path)
    assert drawings.skipped == len(MALFORMED_LINES)
    assert drawings.key_ids == ["0", "1", "2"] and drawings.kind == "simplified"
    for sketch3 in drawings.sketches:
        assert as_stroke3(sketch3).shape[1] == 3
    data = datasets.load_dataset([path], 250)
    assert data.skipped_lines == len(MALFORMED_LINES)
    assert len(data.train) + len(data.valid) + len(data.test) == 3


def test_malformed_raw_ndjson_lines_are_skipped_and_counted_by_simplify(tmp_path):
    fields = {"word": "cat", "countrycode": "DE", "timestamp": "2017", "recognized": True}
    good = [json.dumps(fields | {"key_id": str(i), "drawing": [[[0, 50, 100 + i], [0, 30, 0],
                                                                [0, 10, 20]]]}).encode()
            for i in range(2)]
    raw_bad = [
        json.dumps(fields | {"key_id": "8", "drawing": [[[0, 1e308, -1e308], [0, 0, 0],
                                                         [0, 1, 2]]]}).encode(),
        json.dumps(fields | {"key_id": "8", "drawing": [[[0, 1, 2], [0, 1], [0, 1, 2]]]}).encode(),
        # One long zigzag: its resampled length would be ~25 million points.
        json.dumps(fields | {"key_id": "8", "drawing": [[[0, 1000] * 50_000,
                                                         [0, 1] * 50_000,
                                                         list(range(100_000))]]}).encode(),
    ] + MALFORMED_LINES[:8]
    path = tmp_path / "raw.ndjson"
    # Only simplify needs the other fields: a NaN there makes the output line invalid JSON.
    nan_field = json.dumps(fields | {"key_id": "7", "timestamp": float("nan"),
                                     "drawing": [[[0, 1], [0, 1], [0, 1]]]}).encode()
    # Extreme but valid: spans near the float limit (this used to escape as a ValueError and
    # stop the whole file).
    extreme = json.dumps(fields | {"key_id": "6", "drawing": [[[0, 1e306, 3e306], [0, 1e308, 0],
                                                               [0, 1, 2]]]}).encode()
    path.write_bytes(b"\n".join([good[0], *raw_bad, nan_field, extreme, good[1]]) + b"\n")
    started = time.perf_counter()
    counts = simplify_ndjson(path, tmp_path / "simplified.ndjson")
    assert counts == {"read": 4 + len(raw_bad), "written": 3, "skipped": len(raw_bad) + 1}
    assert time.perf_counter() - started < 10
    written = [json.loads(line) for line in (tmp_path / "simplified.ndjson").read_text().split()]
    assert written[1]["key_id"] == "6" and written[1]["drawing"] == [[[0, 3, 8], [0, 255, 0]]]
    drawings = datasets.read_ndjson(path)
    assert drawings.kind == "raw" and drawings.key_ids == ["0", "7", "6", "1"]
    assert drawings.skipped == len(raw_bad)


# --- drawings -----------------------------------------------------------------------------

def test_empty_canvas_gives_an_empty_drawing_that_every_step_accepts_or_names():
    strokes, skipped = canvas_to_stroke3({"version": "4.4.0", "objects": []})
    assert strokes.shape == (0, 3) and skipped == 0
    fitted, message = fit_to_model(strokes, 10)
    assert fitted.shape == (0, 3) and message is None
    assert stroke3_to_stroke5(strokes, 3).tolist() == [[0, 0, 0, 0, 1]] * 3
    assert render.to_svg(strokes).startswith("<svg")
    for bad in (None, [], {}, {"objects": None}, {"objects": [None]}, {"objects": [{}]}):
        refused(DrawingError, canvas_to_stroke3, bad)
    refused(DrawingError, preprocess_raw_drawing, [])


# What Fabric.js 4's PencilBrush writes for one click without moving: M and L around the
# point, nudged apart by strokeWidth / 1000.
ONE_CLICK = {"type": "path", "left": 47.5, "top": 47.5, "width": 0.01, "height": 0,
             "strokeWidth": 5, "path": [["M", 49.995, 50], ["L", 50.005, 50]]}


def test_one_click_is_a_valid_tiny_drawing():
    strokes, _ = canvas_to_stroke3({"objects": [ONE_CLICK]})
    assert 1 <= len(strokes) <= 2 and strokes[-1, 2] == 1
    assert float(np.abs(strokes[1:, :2]).max(initial=0)) < 0.1
    assert fit_to_model(strokes, 1)[0].shape == (1, 3)
    assert render.to_png(strokes, size=16)[:4] == b"\x89PNG"
    # A single tap in a raw Quick, Draw! file: one point, twice, as in Google's files.
    tap = preprocess_raw_drawing([[[17], [4], [0]]])
    assert tap == [[[0, 0], [0, 0]]]
    assert drawing_to_stroke3(tap).tolist() == [[0, 0, 0], [0, 0, 1]]
    assert as_stroke3([[5, 5, 1]]).shape == (1, 3)


def _circle(n: int) -> np.ndarray:
    angles = np.linspace(0, 2 * np.pi, n)
    points = np.stack([100 * np.cos(angles), 100 * np.sin(angles)], axis=1)
    s3 = np.zeros((n, 3), np.float32)
    s3[0, :2] = points[0]
    s3[1:, :2] = np.diff(points, axis=0)
    s3[-1, 2] = 1
    return s3


def test_fit_to_model_simplifies_a_long_drawing_keeping_its_shape():
    circle = _circle(1000)
    fitted, message = fit_to_model(circle, 250)
    assert len(fitted) <= 250 and "simplified to" in message and "cut" not in message
    assert fitted[-1, 2] == 1
    np.testing.assert_allclose(render.drawing_bounds(fitted), render.drawing_bounds(circle),
                               atol=2.0)


def test_fit_to_model_cuts_what_simplifying_cannot_shorten():
    scribble = np.random.default_rng(0).normal(0, 30, (2000, 3)).astype(np.float32)
    scribble[:, 2] = 0
    scribble[::2, 2] = 1  # 1000 strokes: even the coarsest RDP keeps 2000 points
    fitted, message = fit_to_model(scribble, 20)
    assert fitted.shape == (20, 3) and "cut" in message and fitted[-1, 2] == 1
    np.testing.assert_allclose(fitted[:19, :2], scribble[:19, :2], atol=1e-4)
    short, message = fit_to_model(scribble[:20], 20)
    assert message is None
    np.testing.assert_array_equal(short, scribble[:20])
    for bad in (0, -1, 2.5, "20", None, True):
        refused(SketchError, fit_to_model, scribble, bad)


def test_points_far_outside_the_canvas():
    far = {"type": "path", "left": 1e6, "top": -1e6,
           "path": [["M", 0, 0], ["L", 10, 10], ["L", 20, 0]]}
    strokes, _ = canvas_to_stroke3({"objects": [far]})
    assert np.all(np.isfinite(strokes)) and abs(strokes[0, 0]) > 9e5
    assert render.to_svg(strokes).startswith("<svg")  # still fitted into the picture
    for hopeless in ({**far, "left": 1e308, "scaleX": 1e308},
                     {**far, "path": [["M", 1e300, 0], ["L", -1e300, 10]]},
                     {**far, "path": [["M", 3e38, 0], ["L", -3e38, 10]]}):
        message = refused(DrawingError, canvas_to_stroke3, {"objects": [hopeless]})
        assert "float" in message


def test_shapes_other_than_freehand_are_converted_or_skipped_and_counted():
    shapes = [
        {"type": "rect", "left": 29, "top": 29, "width": 70, "height": 60},
        {"type": "circle", "left": 50, "top": 50, "radius": 20},
        {"type": "ellipse", "left": 5, "top": 5, "rx": 20, "ry": 5},
        {"type": "triangle", "left": 5, "top": 5, "width": 20, "height": 5},
        {"type": "line", "x1": -5, "x2": 5, "y1": -7, "y2": 7},
        {"type": "polygon", "points": [{"x": 1, "y": 2}, {"x": 5, "y": 9}, {"x": 0, "y": 4}]},
    ]
    skipped_kinds = [
        {"type": "circle", "left": 50, "top": 50, "radius": 20, "startAngle": 0, "endAngle": 90},
        {"type": "i-text", "text": "hello"},
        {"type": "textbox", "text": "hello"},
        {"type": "image", "src": "data:,"},
        {"type": "group", "objects": [shapes[0]]},
        {"type": "activeSelection", "objects": []},
    ]
    strokes, skipped = canvas_to_stroke3({"objects": shapes + skipped_kinds})
    assert skipped == len(skipped_kinds)
    assert int(strokes[:, 2].sum()) == len(shapes), "one closed stroke per shape"
    assert np.all(np.isfinite(strokes))
