"""Training on Quick, Draw! ndjson files of any size: the drawings are streamed, never all held.

`survey` reads the start of each file for the scale factor and a validation sample.
`StreamBatcher` then reads the training split line by line into a shuffle buffer of a fixed
number of sketches and serves length-bucketed, augmented batches, as `datasets.Batcher` does
for data held in memory. Memory is bounded by the buffer, whatever the size of the files.

Its state (each file's read position, and where the sketches it holds are in their files)
goes into the training checkpoint, so a resumed run gets exactly the batches of a run that
never stopped. `.npz` files named together with ndjson files join as in-memory sources.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np

from .datasets import (CHUNK_BATCHES, OFFSET_LIMIT, NdjsonRecord, augmented_batch, expand_paths,
                       iter_ndjson, no_usable_drawing, normalize, read_npz, split_of)
from .errors import DataFileError, TrainingError

SHUFFLE_BUFFER = 10_000  # training sketches held for shuffling
SCALE_SAMPLE = 100_000  # training sketches, the first of each file, that set the scale factor
VALID_SAMPLE = 2_500  # validation sketches, the first of each file, for the validation loss


class _NdjsonSource:
    """The training sketches of one ndjson file, read in file order; a sketch's key is the
    byte offset of its line."""

    def __init__(self, path: Path, kind: str, max_seq_len: int, factor: float,
                 bytes_per_sketch: float) -> None:
        self.path, self.kind, self.max_seq_len, self.factor = path, kind, max_seq_len, factor
        self.size = path.stat().st_size
        self.bytes_per_sketch = bytes_per_sketch
        self.position = 0
        self._lines = None

    def remaining(self) -> float:
        """About how many training sketches are left in this pass."""
        return (self.size - self.position) / self.bytes_per_sketch

    def rewind(self, position: int = 0) -> None:
        self.position, self._lines = position, None

    def read(self) -> tuple[int, np.ndarray] | None:
        """(key, normalised sketch) of the next training sketch, or None at the end of the file."""
        if self._lines is None:
            self._lines = iter_ndjson(self.path, self.kind, start=self.position)
        for record in self._lines:
            self.position = record.end
            sketch = self._usable(record)
            if sketch is not None:
                return record.offset, sketch
        self.position = self.size
        return None

    def fetch(self, key: int) -> np.ndarray:
        """The sketch whose line starts at byte `key` (to restore a checkpointed buffer)."""
        record = next(iter_ndjson(self.path, self.kind, start=key), None)
        sketch = None if record is None or record.offset != key else self._usable(record)
        if sketch is None:
            raise TrainingError(f"{self.path} changed since the checkpoint was written (no training "
                                f"sketch at byte {key}); train into a new --out directory")
        return sketch

    def _usable(self, record: NdjsonRecord) -> np.ndarray | None:
        sketch = record.sketch
        if (sketch is None or split_of(record.key_id) != "train" or len(sketch) == 0
                or len(sketch) > self.max_seq_len):
            return None
        return normalize([sketch], self.factor)[0]


class _MemorySource:
    """The training sketches of a `.npz` file, held in memory; a sketch's key is its index."""

    def __init__(self, path: Path, sketches: list[np.ndarray], factor: float) -> None:
        self.path = path
        self.sketches = normalize(sketches, factor)
        self.size = len(self.sketches)
        self.position = 0

    def remaining(self) -> float:
        return float(self.size - self.position)

    def rewind(self, position: int = 0) -> None:
        self.position = position

    def read(self) -> tuple[int, np.ndarray] | None:
        if self.position >= self.size:
            return None
        self.position += 1
        return self.position - 1, self.sketches[self.position - 1]

    def fetch(self, key: int) -> np.ndarray:
        if not 0 <= key < self.size:
            raise TrainingError(f"{self.path} changed since the checkpoint was written; "
                                "train into a new --out directory")
        return self.sketches[key]


@dataclasses.dataclass
class _FileSurvey:
    path: Path
    kind: str  # "npz", "simplified" or "raw"
    bytes_per_sketch: float = 1.0  # ndjson bytes per training sketch, from the lines surveyed
    train: list[np.ndarray] | None = None  # a .npz file's whole training split


@dataclasses.dataclass
class Survey:
    """What `survey` found: the files, the scale factor and a validation sample (original units)."""

    files: list[_FileSurvey]
    scale_factor: float
    valid: list[np.ndarray]
    classes: list[str]
    skipped_lines: int
    dropped_too_long: int  # of the lines surveyed

    def info(self) -> dict:
        """What the trainer records in the run's dataset.json."""
        return {"sources": [str(f.path) for f in self.files], "scale_factor": self.scale_factor,
                "streamed": True, "sizes": {"valid": len(self.valid)},
                "classes": self.classes, "skipped_lines_surveyed": self.skipped_lines,
                "dropped_too_long_surveyed": self.dropped_too_long}


def is_streamed(paths: list[str | Path]) -> bool:
    """Whether training on `paths` streams: when any of the files is ndjson."""
    return any(p.suffix.lower() == ".ndjson" for p in expand_paths(paths))


class _Moments:
    """Count, sum and sum of squares of clipped offsets, for a standard deviation in one pass."""

    def __init__(self) -> None:
        self.n, self.total, self.squares = 0, 0.0, 0.0

    def add(self, sketch: np.ndarray) -> None:
        offsets = np.clip(np.asarray(sketch, dtype=np.float64)[:, 0:2], -OFFSET_LIMIT, OFFSET_LIMIT)
        self.n += offsets.size
        self.total += float(offsets.sum())
        self.squares += float(np.square(offsets).sum())

    def std(self) -> float:
        if not self.n:
            raise DataFileError("cannot compute a scale factor: no training sketch was found")
        mean = self.total / self.n
        factor = math.sqrt(max(self.squares / self.n - mean * mean, 0.0))
        if not factor > 0:
            raise DataFileError("cannot compute a scale factor: every training offset is zero")
        return factor


def survey(paths: list[str | Path], max_seq_len: int, scale_sample: int = SCALE_SAMPLE,
           valid_sample: int = VALID_SAMPLE) -> Survey:
    """Read the start of each file: the first training sketches (shared out evenly, scale_sample
    in all) set the scale factor as the reference's std of all dx and dy; the first validation
    sketches (valid_sample in all) are the validation set. ndjson files are read only until
    their shares are found; `.npz` files are read whole."""
    files = expand_paths(paths)
    train_share, valid_share = (-(-n // len(files)) for n in (scale_sample, valid_sample))
    moments, valid, classes = _Moments(), [], set()
    found: list[_FileSurvey] = []
    skipped = too_long = 0
    for path in files:
        if path.suffix.lower() == ".npz":
            splits = read_npz(path)
            usable = {s: [x for x in splits[s] if 0 < len(x) <= max_seq_len] for s in ("train", "valid")}
            too_long += sum(len(x) > max_seq_len for s in ("train", "valid") for x in splits[s])
            for sketch in usable["train"][:train_share]:
                moments.add(sketch)
            valid.extend(usable["valid"][:valid_share])
            classes.add(path.stem)
            found.append(_FileSurvey(path, "npz", train=usable["train"]))
            continue
        entry, n_train, n_valid, read_to, malformed = _FileSurvey(path, "auto"), 0, 0, 0, 0
        for record in iter_ndjson(path):
            read_to = record.end
            if record.sketch is None:
                malformed += 1
                continue
            entry.kind = record.kind
            if not 0 < len(record.sketch) <= max_seq_len:
                too_long += len(record.sketch) > max_seq_len
                continue
            classes.add(record.word)
            split = split_of(record.key_id)
            if split == "train":
                n_train += 1
                if n_train <= train_share:
                    moments.add(record.sketch)
            elif split == "valid" and n_valid < valid_share:
                n_valid += 1
                valid.append(record.sketch)
            if n_train >= train_share and n_valid >= valid_share:
                break
        if entry.kind == "auto":
            raise no_usable_drawing(path, malformed)
        skipped += malformed
        entry.bytes_per_sketch = read_to / max(n_train, 1)
        found.append(entry)
    if not valid:
        raise TrainingError("the data has no validation sketches; training needs some")
    return Survey(found, moments.std(), valid, sorted(classes), skipped, too_long)


class StreamBatcher:
    """Training batches streamed through a shuffle buffer, for data too big to hold.

    Each step draws its randomness from (seed, step). When the batches in hand run out, a chunk
    of CHUNK_BATCHES batches is drawn at random from the buffer
    (refilled first), sorted by length, cut into batches and shuffled, as `Batcher` does with an
    epoch. The buffer is filled from the files in turn, each picked with a chance in proportion
    to the training sketches it has left in the current pass, so that classes mix as in one
    shuffled set. Sketches are normalised by `factor` as they are read. `batch` must be called
    with consecutive steps.
    """

    def __init__(self, found: Survey, factor: float, batch_size: int, max_seq_len: int,
                 seed: int, random_scale_factor: float, augment_stroke_prob: float,
                 bucket_width: int = 10, dequantize_width: float = 0.0,
                 buffer_size: int = SHUFFLE_BUFFER) -> None:
        if batch_size < 1 or max_seq_len < 1 or seed < 0 or buffer_size < 1:
            raise ValueError("batch_size, max_seq_len and buffer_size must be at least 1 and "
                             "seed at least 0")
        self.sources = [
            _MemorySource(f.path, f.train, factor) if f.kind == "npz" else
            _NdjsonSource(f.path, f.kind, max_seq_len, factor, f.bytes_per_sketch)
            for f in found.files]
        self.batch_size, self.max_seq_len, self.seed = batch_size, max_seq_len, seed
        self.random_scale_factor, self.augment_stroke_prob = random_scale_factor, augment_stroke_prob
        self.bucket_width, self.dequantize_width = bucket_width, dequantize_width
        self.capacity = max(buffer_size, CHUNK_BATCHES * batch_size)
        self.buffer: list[tuple[int, int, np.ndarray]] = []  # (source, key, sketch)
        self.pending: list[list[tuple[int, int, np.ndarray]]] = []  # the chunk's batches to come
        self.passes = 0  # completed passes over all the files
        self._pass_count: int | None = 0  # sketches read this pass (None: it began before a restore)
        self.next_step = 0

    def batch(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """The augmented batch of training step `step`: strokes (B, T+1, 5) float32, lengths (B,) int32."""
        if step != self.next_step:
            raise ValueError(f"streamed batches come in order: the next is step {self.next_step}, "
                             f"not {step}")
        if not self.pending:
            self.pending = self._draw_chunk(np.random.default_rng([self.seed, 2, step]))
        chosen = [sketch for _, _, sketch in self.pending.pop(0)]
        self.next_step += 1
        return augmented_batch(chosen, np.random.default_rng([self.seed, 1, step]),
                               self.random_scale_factor, self.augment_stroke_prob,
                               self.max_seq_len, self.bucket_width, self.dequantize_width)

    def _draw_chunk(self, rng: np.random.Generator) -> list[list[tuple[int, int, np.ndarray]]]:
        self._fill(rng)
        size = min(CHUNK_BATCHES * self.batch_size, len(self.buffer))
        size -= size % self.batch_size
        picked = set(rng.choice(len(self.buffer), size, replace=False).tolist())
        chunk = [item for i, item in enumerate(self.buffer) if i in picked]
        self.buffer = [item for i, item in enumerate(self.buffer) if i not in picked]
        chunk.sort(key=lambda item: len(item[2]))
        batches = [chunk[i:i + self.batch_size] for i in range(0, size, self.batch_size)]
        return [batches[i] for i in rng.permutation(len(batches))]

    def _fill(self, rng: np.random.Generator) -> None:
        while len(self.buffer) < self.capacity:
            left = np.array([source.remaining() for source in self.sources])
            if not left.sum() > 0:
                if self._pass_count is not None and self._pass_count < self.batch_size:
                    raise TrainingError(f"the training set has {self._pass_count} sketches, "
                                        f"fewer than batch_size={self.batch_size}")
                for source in self.sources:
                    source.rewind()
                self.passes += 1
                self._pass_count = 0
                continue
            index = int(rng.choice(len(self.sources), p=left / left.sum()))
            item = self.sources[index].read()
            if item is not None:
                self.buffer.append((index, *item))
                if self._pass_count is not None:
                    self._pass_count += 1

    def state(self) -> dict[str, np.ndarray]:
        """Where the stream is, as arrays for the checkpoint: sketches are stored as
        (source, key) pairs, so the state is small whatever the buffer holds."""
        def keys(items):
            return np.array([(s, k) for s, k, _ in items], dtype=np.int64).reshape(-1, 2)
        return {"positions": np.array([s.position for s in self.sources], dtype=np.int64),
                "sizes": np.array([s.size for s in self.sources], dtype=np.int64),
                "passes": np.array(self.passes), "next_step": np.array(self.next_step),
                "buffer": keys(self.buffer),
                "pending": keys([item for batch in self.pending for item in batch]),
                "pending_sizes": np.array([len(b) for b in self.pending], dtype=np.int64)}

    def restore(self, state: dict[str, np.ndarray], step: int) -> None:
        """Continue from `state` (see state()) at `step`; with no state, a fresh stream starts
        at `step` (a checkpoint written before the run streamed)."""
        self.next_step = step
        if not state:
            return
        if int(state["next_step"]) != step:
            raise TrainingError(f"the checkpoint's stream is at step {int(state['next_step'])}, "
                                f"its model at step {step}")
        if state["sizes"].tolist() != [s.size for s in self.sources]:
            raise TrainingError("the data files changed since the checkpoint was written; "
                                "train into a new --out directory")
        for source, position in zip(self.sources, state["positions"].tolist()):
            source.rewind(position)
        self.passes = int(state["passes"])
        self._pass_count = None

        def fetch(pairs: np.ndarray) -> list[tuple[int, int, np.ndarray]]:
            return [(s, k, self.sources[s].fetch(k)) for s, k in pairs.tolist()]
        self.buffer = fetch(state["buffer"])
        pending, start = fetch(state["pending"]), 0
        self.pending = []
        for size in state["pending_sizes"].tolist():
            self.pending.append(pending[start:start + size])
            start += size
