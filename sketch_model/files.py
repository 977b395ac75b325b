"""The files of run and model directories, read and written safely.

Reading: a file must be a regular file (a FIFO would block the reader, a device such as
/dev/zero never ends, a directory is not a file), no larger than a limit, checked with
`os.stat` before it is opened and again on the open descriptor; a JSON file must hold an
object whose fields have the types and ranges of a schema. Anything else raises the caller's
error class (ModelFileError or TrainingError) naming the file and the field.

Writing: through a new temporary file in the same directory, renamed over the target, so a
write never follows a symbolic link and a reader or a crash never sees a half-written file.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import stat
from pathlib import Path
from typing import Any, BinaryIO, Callable, TextIO

from .errors import DISK_FULL, ModelFileError, SketchError, TrainingError

MAX_JSON_BYTES = 1 << 20  # hparams.json and the like are a few hundred bytes
MAX_KERAS_BYTES = 2 << 30  # a paper-size model.keras is about 10 MB
MAX_CHECKPOINT_BYTES = 8 << 30  # weights and Adam's two moments, plus a stream's state
MAX_LOG_BYTES = 4 << 30  # log.csv: about 100 bytes a step
NAME_MAX = 255  # bytes in one file name, on the file systems Linux and macOS use


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def check_regular(path: str | Path, max_bytes: int,
                  error: type[SketchError] = ModelFileError) -> os.stat_result:
    """Raise `error` unless `path` is a regular file of at most `max_bytes` bytes."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise error(f"{path} is missing") from None
    except OSError as err:
        raise error(f"cannot read {path}: {err.strerror or err}") from None
    if not stat.S_ISREG(info.st_mode):
        raise error(f"{path} is {_kind(info.st_mode)}, not a regular file")
    if info.st_size > max_bytes:
        raise error(f"{path} is {info.st_size} bytes, over the limit of {max_bytes} bytes")
    return info


def open_regular(path: str | Path, max_bytes: int,
                 error: type[SketchError] = ModelFileError) -> BinaryIO:
    """`path` opened for reading in binary, once check_regular passes. O_NONBLOCK keeps a FIFO
    swapped in after the check from blocking the open; the descriptor is checked again."""
    check_regular(path, max_bytes, error)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as err:
        raise error(f"cannot read {path}: {err.strerror or err}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_size > max_bytes:
        os.close(fd)
        raise error(f"{path} changed while it was opened: it is not a regular file of at most "
                    f"{max_bytes} bytes")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def read_bytes(path: str | Path, max_bytes: int,
               error: type[SketchError] = ModelFileError) -> bytes:
    """The bytes of a regular file of at most `max_bytes` bytes (checked while reading too)."""
    with open_regular(path, max_bytes, error) as handle:
        try:
            data = handle.read(max_bytes + 1)
        except OSError as err:
            raise error(f"cannot read {path}: {err.strerror or err}") from None
    if len(data) > max_bytes:
        raise error(f"{path} grew over the limit of {max_bytes} bytes while it was read")
    return data


@dataclasses.dataclass(frozen=True)
class Field:
    """One field of a JSON schema: kind is int, float, str, bool, list or dict; a float is
    finite and an int whole (not a bool); numbers lie in [low, high]; `text` describes the
    field in messages."""

    kind: type
    required: bool = True
    low: float = -math.inf
    high: float = math.inf
    nullable: bool = False
    choices: tuple = ()
    text: str = ""

    def describe(self) -> str:
        if self.text:
            return self.text
        name = {int: "a whole number", float: "a finite number", str: "a string",
                bool: "true or false", list: "a list", dict: "an object"}[self.kind]
        if self.choices:
            return f"one of {', '.join(map(repr, self.choices))}"
        if self.kind in (int, float) and (self.low > -math.inf or self.high < math.inf):
            bounds = [f">= {self.low:g}"] if self.low > -math.inf else []
            bounds += [f"<= {self.high:g}"] if self.high < math.inf else []
            name += " " + " and ".join(bounds)
        return name + (" or null" if self.nullable else "")

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.nullable
        if self.kind is float:
            ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
                  and math.isfinite(value))
        elif self.kind is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = isinstance(value, self.kind)
        if ok and self.kind in (int, float):
            ok = self.low <= value <= self.high
        return ok and (not self.choices or value in self.choices)


Schema = dict[str, Field]

_LOSS = Field(float)
DATASET_SCHEMA: Schema = {
    "scale_factor": Field(float, low=1e-6, text="a positive number"),
    "sources": Field(list, required=False),
    "sizes": Field(dict, required=False),
    "classes": Field(list, required=False),
    "streamed": Field(bool, required=False),
}
BEST_SCHEMA: Schema = {"step": Field(int, low=0), "valid_loss": _LOSS,
                       "valid_L_R": Field(float, required=False),
                       "valid_L_KL": Field(float, required=False)}
EVAL_SCHEMA: Schema = {"loss": Field(float, required=False), "L_R": Field(float, required=False),
                       "L_KL": Field(float, required=False), "n": Field(int, required=False, low=0),
                       "split": Field(str, required=False)}
STATUS_SCHEMA: Schema = {
    "state": Field(str, choices=("running", "finished", "stopped", "failed")),
    "step": Field(int, low=0), "steps": Field(int, low=0),
    "pid": Field(int, required=False, low=1), "error": Field(str, required=False, nullable=True),
}


def read_json(path: str | Path, schema: Schema, error: type[SketchError] = ModelFileError,
              max_bytes: int = MAX_JSON_BYTES) -> dict[str, Any]:
    """The JSON object in `path`, its fields checked against `schema` (other fields are kept
    unchecked); raises `error` naming the file and the field."""
    data = read_bytes(path, max_bytes, error)
    try:
        value = json.loads(data)
    except (ValueError, RecursionError) as err:  # not JSON, not UTF-8, or nested too deep
        raise error(f"{path} is not valid JSON: {err}") from None
    if not isinstance(value, dict):
        raise error(f"{path} does not hold a JSON object")
    for name, field in schema.items():
        if name not in value:
            if field.required:
                raise error(f"{path} lacks the field {name!r}")
        elif not field.accepts(value[name]):
            shown = repr(value[name])
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            raise error(f"{path} has {name} {shown}, not {field.describe()}")
    return value


def _write_error(path: Path, err: OSError) -> TrainingError:
    if err.errno in DISK_FULL:
        return TrainingError(f"the disk is full: could not write {path.name}; "
                             f"the last good {path.name} is kept")
    return TrainingError(f"cannot write {path}: {err.strerror or err}")


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a new temporary file in the same directory, then rename it over `path`:
    a reader (or a crash) never sees a half-written file, and a symbolic link at `path` is
    replaced, never followed. Any failure (a full disk, a stop) leaves the previous file in
    place and raises TrainingError for an OSError."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}{path.suffix}")
    try:
        tmp.unlink(missing_ok=True)
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o644))
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        if isinstance(err, OSError):
            raise _write_error(path, err) from None
        raise


def write_json(path: Path, data: dict) -> None:
    """`data` as indented JSON, written with atomic_write."""
    atomic_write(path, lambda p: p.write_text(json.dumps(data, indent=2) + "\n"))


def open_append(path: Path) -> TextIO:
    """The regular file `path` opened to append text, never through a link or into a FIFO
    swapped in for it; raises TrainingError otherwise."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as err:
        raise _write_error(path, err) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise TrainingError(f"cannot write {path}: it is not a regular file")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "w", newline="")


def open_lock_file(path: Path) -> int:
    """A descriptor of the lock file `path` (created if missing), opened read-write without
    following a symbolic link or blocking on a FIFO; raises TrainingError otherwise."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     0o644)
    except OSError as err:
        reason = "it is a symbolic link" if os.path.islink(path) else err.strerror or str(err)
        raise TrainingError(f"cannot take the lock {path}: {reason}; "
                            "remove it and run again") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise TrainingError(f"cannot take the lock {path}: it is {_kind(os.stat(path).st_mode)}, "
                            "not a regular file; remove it and run again")
    return fd


def check_output_path(path: str | Path, *, directory: bool = False,
                      error: type[SketchError] = SketchError) -> Path:
    """Check that `path` can be written before any work is done: every name fits the file
    system, the folder it goes in exists (for a `directory`, its nearest existing ancestor)
    and is a directory, and `path` itself is not something of another kind. Raises `error`."""
    path = Path(path)
    for part in path.parts:
        size = len(os.fsencode(part))
        if size > NAME_MAX:
            raise error(f"the name {part[:30]}... in {str(path)[:60]}... is {size} bytes long; "
                        f"file names hold at most {NAME_MAX}")
    if len(os.fsencode(str(path.absolute()))) >= 4096:
        raise error(f"the path {str(path)[:60]}... is too long")
    if os.path.lexists(path):
        if directory and not path.is_dir():
            raise error(f"{path} exists and is not a directory")
        if not directory and not path.is_file():
            kind = _kind(os.stat(path).st_mode) if path.exists() else "a broken symbolic link"
            raise error(f"{path} exists and is not a regular file: it is {kind}")
        return path
    parent = path.parent
    if not directory and not parent.exists():
        ancestor = next((p for p in parent.parents if p.exists()), None)
        if ancestor is not None and not ancestor.is_dir():
            raise error(f"cannot write {path}: {ancestor} is a file, not a directory")
        raise error(f"cannot write {path}: the directory {parent} does not exist")
    ancestor = next(p for p in (parent, *parent.parents) if p.exists())
    if not ancestor.is_dir():
        raise error(f"cannot write {path}: {ancestor} is a file, not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise error(f"cannot write {path}: no permission to write into {ancestor}")
    return path
