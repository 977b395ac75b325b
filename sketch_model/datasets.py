"""Datasets: safe readers for sketch-rnn `.npz` and Quick, Draw! ndjson, normalisation,
the reference's augmentation, and deterministic bucketed batches.

Sketches are stroke-3 arrays (see `strokes.py`). Batches are stroke-5 with the start token
(0, 0, 1, 0, 0) in row 0, as magenta's sketch_rnn `utils.DataLoader.pad_batch` builds them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import pickle
import pickletools
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import Iterator

import numpy as np
from numpy.lib import format as npy_format

from .errors import DataFileError, DrawingError, SketchError, TrainingError
from .quickdraw import (MAX_LINE_BYTES, bounded_lines, check_regular_file, drawing_to_stroke3,
                        preprocess_raw_drawing)
from .strokes import stroke3_to_stroke5

SPLITS = ("train", "valid", "test")
MAX_NPZ_BYTES = 2 * 1024**3  # refuse .npz files (and any member, uncompressed) above 2 GiB
TRAIN_FRACTION = 0.8  # ndjson drawings are split 80/10/10 by a hash of their key_id
VALID_FRACTION = 0.1
OFFSET_LIMIT = 1000.0  # the reference clips dx, dy to [-limit, limit] before normalising
START_TOKEN = np.array([0.0, 0.0, 1.0, 0.0, 0.0], dtype=np.float32)
CHUNK_BATCHES = 20  # batches per length-sorted chunk of an epoch

MAX_PICKLE_DIMS = 32  # more dimensions than any array of sketches has


class _PickledDtype:
    """What `numpy.dtype(name, align, copy)` and its BUILD rebuild in an array pickle, checked
    and rebuilt here: plain dtypes only (no records, fields or sub-arrays)."""

    def __init__(self, name: object = None, align: object = 0, copy: object = 1) -> None:
        if not isinstance(name, str) or len(name) > 16:
            raise DataFileError(f"the file's pickle asks for the dtype {name!r}, which no "
                                "array of sketches has")
        try:
            dtype = np.dtype(name)
        except TypeError:
            dtype = None
        if dtype is None or dtype.kind == "V" or dtype.fields or dtype.subdtype:
            raise DataFileError(f"the file's pickle asks for the dtype {name!r}, which no "
                                "array of sketches has")
        self.dtype = dtype
        self.built = False

    def __setstate__(self, state: object) -> None:
        # numpy's dtype state: (version, byteorder, subarray, names, fields, elsize,
        # alignment, flags[, metadata]); only the byte order matters for a plain dtype.
        if (self.built or not isinstance(state, tuple) or len(state) not in (8, 9)
                or state[0] not in (3, 4) or state[1] not in ("<", ">", "|", "=")
                or any(item is not None for item in state[2:5])):
            raise DataFileError("the file's pickle holds a dtype state numpy never writes")
        if state[1] in "<>" and self.dtype.kind != "O":
            self.dtype = self.dtype.newbyteorder(state[1])
        self.built = True


class _PickledArray:
    """What `numpy.core.multiarray._reconstruct` and its BUILD rebuild in an array pickle,
    checked and rebuilt here rather than by ndarray.__setstate__, which trusts the pickle: an
    object array's state with a list shorter than its shape makes numpy read past the list
    and crash the process."""

    def __init__(self, subtype: object = None, shape: object = None, code: object = None) -> None:
        if subtype is not _NDARRAY:
            raise DataFileError("the file's pickle rebuilds something other than a numpy array")
        self.array: np.ndarray | None = None

    def __setstate__(self, state: object) -> None:
        if self.array is not None or not isinstance(state, tuple) or len(state) not in (4, 5):
            raise DataFileError("the file's pickle holds an array state numpy never writes")
        shape, dtype, fortran, data = state[-4:]
        if (not isinstance(shape, tuple) or len(shape) > MAX_PICKLE_DIMS
                or not all(type(n) is int and n >= 0 for n in shape)):
            raise DataFileError(f"the file's pickle holds an array of invalid shape {shape!r}")
        if not isinstance(dtype, _PickledDtype) or fortran not in (0, 1):
            raise DataFileError("the file's pickle holds an array state numpy never writes")
        count, order = math.prod(shape), "F" if fortran else "C"
        if dtype.dtype.kind == "O":
            if not isinstance(data, list) or len(data) != count:
                raise DataFileError(f"the file's pickle holds an object array of shape {shape} "
                                    f"with {len(data) if isinstance(data, list) else 'no'} items")
            array = np.empty(count, dtype=object)
            for i, item in enumerate(data):
                array[i] = _unwrap(item)
        else:
            if isinstance(data, str):  # a Python 2 pickle read with encoding="latin1"
                data = data.encode("latin1")
            size = count * dtype.dtype.itemsize
            if not isinstance(data, (bytes, bytearray)) or len(data) != size:
                raise DataFileError(f"the file's pickle holds an array of shape {shape} whose "
                                    "data is missing or of the wrong size")
            array = np.frombuffer(data, dtype=dtype.dtype).copy()
        self.array = array.reshape(shape, order=order)


def _unwrap(item: object) -> object:
    """An item of a rebuilt object array: a finished nested array as a numpy array."""
    if isinstance(item, _PickledArray):
        if item.array is None:
            raise DataFileError("the file's pickle holds an array that is never filled in")
        return item.array
    return item


_NDARRAY = object()  # stands for numpy.ndarray, the only type an array pickle rebuilds
# The globals an array pickle names, whatever numpy called its core package when the file
# was written (numpy.core before 2.0, numpy._core after).
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _PickledArray,
    ("numpy._core.multiarray", "_reconstruct"): _PickledArray,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _PickledDtype,
}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and nothing else: any other global is refused before it loads,
    and arrays are rebuilt by checked code (_PickledArray), never by numpy's __setstate__."""

    def find_class(self, module: str, name: str) -> object:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise DataFileError(
                f"the file's pickle asks for {module}.{name}, which is not part of a numpy array: "
                "refusing to load it (the file may be hostile)") from None

    def persistent_load(self, pid: object) -> object:
        raise DataFileError("the file's pickle uses persistent ids, which a numpy array never does")


def read_npz(path: str | Path, max_bytes: int = MAX_NPZ_BYTES) -> dict[str, list[np.ndarray]]:
    """Read the train/valid/test splits of a sketch-rnn `.npz` as float32 stroke-3 arrays.

    Object arrays are unpickled with an unpickler that can only rebuild numpy arrays, so no code
    in the file runs. Numeric members of shape (k, n, 3) are read as k sketches.
    Raises DataFileError for a missing, oversized, corrupt, hostile or malformed file.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as err:
        raise DataFileError(f"cannot read {path}: {err.strerror or err}") from None
    if not path.is_file():
        raise DataFileError(f"{path} is not a file")
    if size > max_bytes:
        raise DataFileError(f"{path} is {size} bytes, over the limit of {max_bytes} bytes")
    try:
        with zipfile.ZipFile(path) as archive:
            members = {info.filename.removesuffix(".npy"): info for info in archive.infolist()}
            missing = [s for s in SPLITS if s not in members]
            if missing:
                raise DataFileError(
                    f"{path} lacks the split(s) {missing}; it holds {sorted(members) or 'nothing'}, "
                    f"but a sketch-rnn .npz needs {list(SPLITS)}")
            raw = {s: _read_member(archive, members[s], max_bytes, f"{path}:{s}") for s in SPLITS}
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, OSError) as err:
        raise DataFileError(f"{path} is not a readable .npz (zip) file: {err}") from None
    return {s: _parse_npy(raw[s], f"{path}:{s}", s) for s in SPLITS}


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, max_bytes: int, where: str) -> bytes:
    if info.file_size > max_bytes:
        raise DataFileError(f"{where} unpacks to {info.file_size} bytes, over the limit of {max_bytes}")
    with archive.open(info) as member:
        data = member.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise DataFileError(f"{where} unpacks to more than the limit of {max_bytes} bytes")
    return data


def _parse_npy(data: bytes, where: str, split: str) -> list[np.ndarray]:
    """Sketches from one `.npy` member: an object array of (n, 3) arrays or a numeric (k, n, 3)."""
    stream = io.BytesIO(data)
    try:
        version = npy_format.read_magic(stream)
        if version == (1, 0):
            shape, fortran_order, dtype = npy_format.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, fortran_order, dtype = npy_format.read_array_header_2_0(stream)
        else:
            raise DataFileError(f"{where} is .npy version {version}, which this reader does not support")
    except ValueError as err:
        raise DataFileError(f"{where} is not a valid .npy array: {err}") from None
    if dtype.hasobject:
        return _parse_object_array(stream, dtype, shape, where, split)
    if dtype.kind not in "iuf" or len(shape) != 3 or shape[2] != 3:
        raise DataFileError(
            f"{where} is a {dtype} array of shape {shape}; expected an object array of sketches "
            "or a numeric array of shape (sketches, points, 3)")
    count = math.prod(shape)
    body = data[stream.tell():]
    if len(body) < count * dtype.itemsize:
        raise DataFileError(f"{where} is truncated: its header promises {shape} values of {dtype}")
    array = np.frombuffer(body, dtype=dtype, count=count).reshape(shape, order="F" if fortran_order else "C")
    return [_validate_sketch(sketch, split, i, where) for i, sketch in enumerate(array)]


def _parse_object_array(stream: io.BytesIO, dtype: np.dtype, shape: tuple, where: str,
                        split: str) -> list[np.ndarray]:
    if dtype != np.dtype(object) or len(shape) != 1:
        raise DataFileError(f"{where} is a {dtype} array of shape {shape}; expected a 1-D object array")
    _check_memo_indices(stream, where)
    try:
        # latin1 is how numpy reads Python 2 pickles, as the published sketch-rnn files are.
        loaded = _ArrayOnlyUnpickler(stream, encoding="latin1").load()
    except DataFileError as err:
        raise DataFileError(f"{where}: {err}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, OverflowError, MemoryError, UnicodeError, RecursionError) as err:
        raise DataFileError(f"{where} holds a corrupt pickle: {type(err).__name__}: {err}") from None
    array = loaded.array if isinstance(loaded, _PickledArray) else None
    if not isinstance(array, np.ndarray) or array.dtype != object or array.shape != tuple(shape):
        raise DataFileError(f"{where}'s pickle is not the object array of shape {shape} its header states")
    return [_validate_sketch(item, split, i, where) for i, item in enumerate(array)]


def _check_memo_indices(stream: io.BytesIO, where: str) -> None:
    """Walk the pickle's opcodes, before anything is built, and refuse memo indices beyond
    the opcodes so far: a 9-byte pickle storing to index 2**31 makes the C unpickler allocate
    and zero 16 GiB for its memo table. A pickler numbers its memo entries from 0 up."""
    start = stream.tell()
    try:
        with warnings.catch_warnings():  # pickletools warns about odd escapes in strings
            warnings.simplefilter("ignore", DeprecationWarning)
            for count, (opcode, arg, _) in enumerate(pickletools.genops(stream)):
                if opcode.name in ("PUT", "BINPUT", "LONG_BINPUT") and arg > count:
                    raise DataFileError(f"{where}'s pickle stores to memo entry {arg} after "
                                        f"{count} opcodes, which no pickler writes: refusing "
                                        "to load it")
    except (ValueError, EOFError, UnicodeError, OverflowError, MemoryError) as err:
        raise DataFileError(f"{where} holds a corrupt pickle: {type(err).__name__}: {err}") from None
    stream.seek(start)


def _validate_sketch(item: object, split: str, index: int, source: str = "") -> np.ndarray:
    """A float32 copy of one stored sketch; raises DataFileError naming the file (`source`),
    the split and the index."""
    prefix = f"{source.rsplit(':', 1)[0]}: " if source else ""
    where = f"{prefix}sketch {split}[{index}]"
    try:
        array = np.asarray(item)
    except (ValueError, TypeError):
        array = np.asarray(None)
    if array.dtype.kind not in "iuf":
        raise DataFileError(f"{where} is not a numeric array (got {array.dtype})")
    if array.ndim != 2 or array.shape[1] != 3:
        raise DataFileError(f"{where} has shape {array.shape}, but a stroke-3 sketch is (n, 3)")
    with np.errstate(over="ignore", invalid="ignore"):  # out-of-range values become inf
        sketch = array.astype(np.float32)
    if not np.all(np.isfinite(sketch)):
        raise DataFileError(f"{where} holds NaN, infinite or out-of-range values")
    if not np.all((sketch[:, 2] == 0) | (sketch[:, 2] == 1)):
        raise DataFileError(f"{where} has pen values other than 0 and 1")
    return sketch


@dataclasses.dataclass
class NdjsonDrawings:
    """The drawings of one Quick, Draw! ndjson file as stroke-3, in file order."""

    sketches: list[np.ndarray]
    key_ids: list[str]
    words: list[str]
    skipped: int  # malformed lines left out
    kind: str  # "simplified" or "raw"


def read_ndjson(path: str | Path, kind: str = "auto",
                max_line_bytes: int = MAX_LINE_BYTES) -> NdjsonDrawings:
    """Read a Quick, Draw! simplified or raw ndjson file line by line, converting to stroke-3.

    Raw drawings (strokes of [xs, ys, ts]) go through Google's preprocessing first; with
    kind="auto" the first well-formed line decides which the file is. Malformed lines, and
    lines over `max_line_bytes` (never read into memory whole), are counted and skipped; a
    file with no usable drawing, or a path that is not a regular file, raises DataFileError.
    A drawing without a `word` is labelled with the file's stem.
    """
    path = Path(path)
    result = NdjsonDrawings([], [], [], 0, kind)
    for record in iter_ndjson(path, kind, max_line_bytes):
        if record.sketch is None:
            result.skipped += 1
            continue
        result.kind = record.kind
        result.sketches.append(record.sketch)
        result.key_ids.append(record.key_id)
        result.words.append(record.word)
    if not result.sketches:
        raise no_usable_drawing(path, result.skipped)
    return result


def no_usable_drawing(path: str | Path, malformed: int) -> DataFileError:
    """The error for an ndjson file without a single usable drawing."""
    return DataFileError(f"{path} holds no usable Quick, Draw! drawing ({malformed} malformed lines)")


@dataclasses.dataclass
class NdjsonRecord:
    """One line of an ndjson file: where it starts and ends, and its drawing (sketch None for a
    malformed line)."""

    offset: int
    end: int
    sketch: np.ndarray | None = None
    key_id: str = ""
    word: str = ""
    kind: str = ""


def iter_ndjson(path: str | Path, kind: str = "auto", max_line_bytes: int = MAX_LINE_BYTES,
                start: int = 0) -> Iterator[NdjsonRecord]:
    """The non-blank lines of an ndjson file from byte `start` on, one at a time, so that a file
    of any size is read in bounded memory. With kind="auto" the first well-formed line fixes the
    kind; lines of the other kind then count as malformed. Raises DataFileError for a path that
    is not a readable regular file.
    """
    if kind not in ("auto", "simplified", "raw"):
        raise ValueError(f"kind must be auto, simplified or raw, not {kind!r}")
    path = Path(path)
    check_regular_file(path)
    try:
        with path.open("rb") as handle:
            handle.seek(start)
            offset = start
            for line in bounded_lines(handle, max_line_bytes):
                record = NdjsonRecord(offset, handle.tell())
                offset = record.end
                if line is not None and not line.strip():
                    continue
                parsed = None if line is None else _parse_ndjson_line(line, kind)
                if parsed is not None:
                    record.sketch, record.key_id, word, record.kind = parsed
                    record.word = word if word is not None else path.stem
                    kind = record.kind
                yield record
    except OSError as err:
        raise DataFileError(f"cannot read {path}: {err.strerror or err}") from None


def _parse_ndjson_line(line: bytes, kind: str) -> tuple[np.ndarray, str, str | None, str] | None:
    """(stroke-3, key_id, word, kind) of one line, or None when the line is malformed."""
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested too deep
        return None
    if not isinstance(record, dict):
        return None
    drawing, key_id, word = record.get("drawing"), record.get("key_id"), record.get("word")
    if not isinstance(key_id, (str, int)) or isinstance(key_id, bool):
        return None
    if word is not None and not isinstance(word, str):
        return None
    if not isinstance(drawing, list) or not drawing or not all(isinstance(s, list) for s in drawing):
        return None
    rows = {len(stroke) for stroke in drawing}
    if rows not in ({2}, {3}):
        return None
    line_kind = "raw" if rows == {3} else "simplified"
    if kind not in ("auto", line_kind):
        return None
    try:
        simplified = preprocess_raw_drawing(drawing) if line_kind == "raw" else drawing
        sketch = drawing_to_stroke3(simplified)
    except (SketchError, ValueError, TypeError):
        return None
    return np.asarray(sketch, dtype=np.float32), str(key_id), word, line_kind


def split_of(key_id: str) -> str:
    """The split ("train", "valid" or "test") of a Quick, Draw! drawing, fixed by its key_id."""
    digest = hashlib.sha256(key_id.encode("utf-8")).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2.0**64
    if fraction < TRAIN_FRACTION:
        return "train"
    return "valid" if fraction < TRAIN_FRACTION + VALID_FRACTION else "test"


@dataclasses.dataclass
class Dataset:
    """Sketches of one or more files as float32 stroke-3 in original units, split three ways."""

    train: list[np.ndarray]
    valid: list[np.ndarray]
    test: list[np.ndarray]
    labels: dict[str, list[str]]  # per split, the class of each sketch
    sources: list[str]  # the files read, in order
    dropped_too_long: dict[str, int]  # per split, sketches over max_seq_len points
    dropped_empty: int = 0
    skipped_lines: int = 0  # malformed ndjson lines

    @property
    def classes(self) -> list[str]:
        return sorted({label for split in SPLITS for label in self.labels[split]})


def load_dataset(paths: list[str | Path], max_seq_len: int,
                 splits: tuple[str, ...] = SPLITS) -> Dataset:
    """Combine `.npz` and `.ndjson` files (or directories of them) into one Dataset.

    The class of a sketch is its `.npz` file's stem or its ndjson `word`. Empty sketches and
    sketches of more than `max_seq_len` points are dropped and counted. Only the sketches of
    `splits` are kept (ndjson files are read line by line, so the others never take memory).
    """
    if max_seq_len < 1:
        raise ValueError(f"max_seq_len must be at least 1, not {max_seq_len}")
    unknown = set(splits) - set(SPLITS)
    if unknown:
        raise ValueError(f"unknown split(s) {sorted(unknown)}; the splits are {list(SPLITS)}")
    files = expand_paths(paths)
    data = Dataset([], [], [], {s: [] for s in SPLITS}, [], {s: 0 for s in SPLITS})
    for file in files:
        for split, sketch, label in _labelled_sketches(file, data):
            if split not in splits:
                continue
            if len(sketch) == 0:
                data.dropped_empty += 1
            elif len(sketch) > max_seq_len:
                data.dropped_too_long[split] += 1
            else:
                getattr(data, split).append(sketch)
                data.labels[split].append(label)
        data.sources.append(str(file))
    return data


def expand_paths(paths: list[str | Path]) -> list[Path]:
    """The `.npz` and `.ndjson` files named, directories expanded (sorted), each file once
    (also when named twice under different paths or links)."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    if not paths:
        raise DataFileError("no dataset files were given")
    files: list[Path] = []
    for entry in map(Path, paths):
        if entry.is_dir():
            found = sorted(p for p in entry.iterdir()
                           if p.is_file() and p.suffix.lower() in (".npz", ".ndjson"))
            if not found:
                raise DataFileError(f"the directory {entry} holds no .npz or .ndjson files")
            files.extend(found)
        elif not entry.exists():
            raise DataFileError(f"{entry} does not exist")
        elif entry.suffix.lower() not in (".npz", ".ndjson"):
            raise DataFileError(f"{entry} is neither a sketch-rnn .npz nor a Quick, Draw! .ndjson file")
        else:
            files.append(entry)
    unique: dict[tuple[int, int], Path] = {}  # the same file under two names is read once
    for file in files:
        try:
            info = file.stat()
        except OSError as err:
            raise DataFileError(f"cannot read {file}: {err.strerror or err}") from None
        unique.setdefault((info.st_dev, info.st_ino), file)
    return list(unique.values())


def _labelled_sketches(file: Path, data: Dataset) -> Iterator[tuple[str, np.ndarray, str]]:
    """(split, sketch, label) for every sketch of one file; counts skipped ndjson lines in data."""
    if file.suffix.lower() == ".npz":
        for split, sketches in read_npz(file).items():
            for sketch in sketches:
                yield split, sketch, file.stem
        return
    usable = malformed = 0
    for record in iter_ndjson(file):
        if record.sketch is None:
            malformed += 1
            data.skipped_lines += 1
            continue
        usable += 1
        yield split_of(record.key_id), record.sketch, record.word
    if not usable:
        raise no_usable_drawing(file, malformed)


def scale_factor(sketches: list[np.ndarray]) -> float:
    """The reference's normalising scale: the std of all dx and dy together, after clipping."""
    if not sketches:
        raise DataFileError("cannot compute a scale factor: the training set is empty")
    offsets = np.concatenate([np.asarray(s, dtype=np.float64)[:, 0:2].ravel() for s in sketches])
    factor = float(np.std(np.clip(offsets, -OFFSET_LIMIT, OFFSET_LIMIT)))
    if not factor > 0:
        raise DataFileError("cannot compute a scale factor: every offset in the training set is zero")
    return factor


def normalize(sketches: list[np.ndarray], factor: float) -> list[np.ndarray]:
    """float32 copies with dx, dy clipped to [-OFFSET_LIMIT, OFFSET_LIMIT] then divided by factor."""
    if not factor > 0:
        raise ValueError(f"the scale factor must be positive, not {factor}")
    result = []
    for sketch in sketches:
        scaled = np.array(sketch, dtype=np.float32)
        scaled[:, 0:2] = np.clip(scaled[:, 0:2], -OFFSET_LIMIT, OFFSET_LIMIT) / np.float32(factor)
        result.append(scaled)
    return result


def random_scale(sketch: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
    """Stretch x and y independently by uniform factors in [1 - factor, 1 + factor] (x drawn first)."""
    x_scale = (rng.random() - 0.5) * 2 * factor + 1.0
    y_scale = (rng.random() - 0.5) * 2 * factor + 1.0
    result = np.array(sketch, copy=True)
    result[:, 0] *= x_scale
    result[:, 1] *= y_scale
    return result


def dequantize(sketch: np.ndarray, width: float, rng: np.random.Generator) -> np.ndarray:
    """Add uniform noise in [-width/2, width/2) to each offset; pens are unchanged.

    On integer data, the mixture can otherwise buy much density with a component of
    vanishing sigma on a value that recurs exactly, such as dx = 0 (every vertical move).
    """
    result = np.array(sketch, copy=True)
    result[:, 0:2] += (rng.random((len(result), 2)) - 0.5) * width
    return result


def augment_strokes(sketch: np.ndarray, prob: float, rng: np.random.Generator) -> np.ndarray:
    """The reference's point dropping, drawing one uniform per point as it does.

    A pen-down point whose predecessor is pen-down and which is at least the fourth point of its
    run is dropped with probability `prob`. As in the reference (where `stroke` aliases the last
    kept row), a dropped point's offset is added to the last kept point, which thereby moves onto
    the dropped point's position; the points after it keep their positions.
    """
    strokes = np.asarray(sketch)
    n = len(strokes)
    uniforms = rng.random(n)
    if n == 0:
        return strokes.reshape(0, 3).copy()
    pen = strokes[:, 2]
    prev_pen = np.concatenate([[1], pen[:-1]])
    index = np.arange(n)
    # `count` in the reference: points since the last one where this or the previous pen was up.
    count = index - np.maximum.accumulate(np.where((pen == 1) | (prev_pen == 1), index, 0))
    drop = (pen == 0) & (prev_pen == 0) & (count > 2) & (uniforms < prob)
    keep = ~drop
    result = strokes[keep].copy()
    owner = np.cumsum(keep) - 1  # the kept row each dropped row merges into
    np.add.at(result[:, 0], owner[drop], strokes[drop, 0])
    np.add.at(result[:, 1], owner[drop], strokes[drop, 1])
    return result


def pad_batch(sketches: list[np.ndarray], max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Stroke-5 batch (B, max_len + 1, 5) float32 with the start token in row 0, and lengths (B,) int32."""
    strokes = np.empty((len(sketches), max_len + 1, 5), dtype=np.float32)
    strokes[:, 0] = START_TOKEN
    for row, sketch in zip(strokes, sketches):
        row[1:] = stroke3_to_stroke5(sketch, max_len)
    lengths = np.array([len(s) for s in sketches], dtype=np.int32)
    return strokes, lengths


def _bucketed_length(longest: int, max_seq_len: int, bucket_width: int) -> int:
    """Steps T of a batch: one end-of-sketch step past `longest`, rounded up, at most max_seq_len."""
    return min(-(-(longest + 1) // bucket_width) * bucket_width, max_seq_len)


def _check_lengths(sketches: list[np.ndarray], max_seq_len: int, bucket_width: int) -> np.ndarray:
    if bucket_width < 1:
        raise ValueError(f"bucket_width must be at least 1, not {bucket_width}")
    lengths = np.array([len(s) for s in sketches], dtype=np.int64)
    if len(lengths) and lengths.max() > max_seq_len:
        raise DrawingError(f"a sketch has {lengths.max()} points, more than max_seq_len={max_seq_len}")
    return lengths


class Batcher:
    """Training batches that depend only on (seed, step), grouped by length to save padding.

    Epoch e is a permutation seeded by (seed, e), cut into chunks of CHUNK_BATCHES batches that
    are each sorted by length and cut into batches, whose order is then shuffled. Each epoch
    uses `batches_per_epoch` full batches; the remainder of its permutation is left out.
    """

    def __init__(self, sketches: list[np.ndarray], batch_size: int, max_seq_len: int, seed: int,
                 random_scale_factor: float, augment_stroke_prob: float, bucket_width: int = 10,
                 dequantize_width: float = 0.0) -> None:
        if batch_size < 1 or max_seq_len < 1 or seed < 0:
            raise ValueError("batch_size and max_seq_len must be at least 1 and seed at least 0")
        if len(sketches) < batch_size:
            raise TrainingError(
                f"the training set has {len(sketches)} sketches, fewer than batch_size={batch_size}")
        self.sketches = [np.asarray(s, dtype=np.float32) for s in sketches]
        self.lengths = _check_lengths(self.sketches, max_seq_len, bucket_width)
        self.batch_size = batch_size
        self.max_seq_len = max_seq_len
        self.seed = seed
        self.random_scale_factor = random_scale_factor
        self.augment_stroke_prob = augment_stroke_prob
        self.bucket_width = bucket_width
        self.dequantize_width = dequantize_width
        self.batches_per_epoch = len(self.sketches) // batch_size
        self._plan: tuple[int, np.ndarray] | None = None

    def epoch_batches(self, epoch: int) -> np.ndarray:
        """Sketch indices (batches_per_epoch, batch_size) of one epoch, in batch order."""
        if self._plan is None or self._plan[0] != epoch:
            rng = np.random.default_rng([self.seed, 0, epoch])
            order = rng.permutation(len(self.sketches))[: self.batches_per_epoch * self.batch_size]
            chunk = CHUNK_BATCHES * self.batch_size
            order = np.concatenate([
                part[np.argsort(self.lengths[part], kind="stable")]
                for part in np.split(order, range(chunk, len(order), chunk))])
            batches = order.reshape(self.batches_per_epoch, self.batch_size)
            self._plan = (epoch, batches[rng.permutation(self.batches_per_epoch)])
        return self._plan[1]

    def batch(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """The augmented batch of training step `step`: strokes (B, T+1, 5) float32, lengths (B,) int32."""
        if step < 0:
            raise ValueError(f"step must be at least 0, not {step}")
        epoch, index = divmod(step, self.batches_per_epoch)
        chosen = [self.sketches[i] for i in self.epoch_batches(epoch)[index]]
        return augmented_batch(chosen, np.random.default_rng([self.seed, 1, step]),
                               self.random_scale_factor, self.augment_stroke_prob,
                               self.max_seq_len, self.bucket_width, self.dequantize_width)

    def state(self) -> dict[str, np.ndarray]:
        """Nothing to checkpoint: the batches depend only on the seed and the step."""
        return {}

    def restore(self, state: dict[str, np.ndarray], step: int) -> None:
        """Nothing to restore (see state)."""


def augmented_batch(sketches: list[np.ndarray], rng: np.random.Generator,
                    random_scale_factor: float, augment_stroke_prob: float, max_seq_len: int,
                    bucket_width: int, dequantize_width: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The reference's augmentation of each sketch (random scale, then point dropping), after
    noise of `dequantize_width` (model units) if it is positive, padded to the batch's bucketed
    length: strokes (B, T+1, 5) float32, lengths (B,) int32."""
    chosen = []
    for sketch in sketches:
        if dequantize_width > 0:
            sketch = dequantize(sketch, dequantize_width, rng)
        sketch = random_scale(sketch, random_scale_factor, rng)
        if augment_stroke_prob > 0:
            sketch = augment_strokes(sketch, augment_stroke_prob, rng)
        chosen.append(sketch)
    longest = max(len(s) for s in chosen)
    return pad_batch(chosen, _bucketed_length(longest, max_seq_len, bucket_width))


def eval_batches(sketches: list[np.ndarray], batch_size: int, max_seq_len: int,
                 bucket_width: int = 10) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(strokes, lengths) batches over all sketches in length order, unaugmented; the last may be smaller."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    lengths = _check_lengths(sketches, max_seq_len, bucket_width)
    order = np.argsort(lengths, kind="stable")
    for start in range(0, len(order), batch_size):
        chosen = [sketches[i] for i in order[start:start + batch_size]]
        longest = int(lengths[order[start:start + batch_size]].max())
        yield pad_batch(chosen, _bucketed_length(longest, max_seq_len, bucket_width))
