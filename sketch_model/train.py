"""Training: the reference's loop with bucketed batches, checkpoints, resumption and logs.

A run directory holds everything of one run: hparams.json, dataset.json (sources, sizes, the
scale factor), log.csv, tb/ (TensorBoard), checkpoint.npz (weights, optimizer state and step,
written atomically), model.keras (the best model on the validation set), samples.svg and
status.json. Running the same command again resumes from checkpoint.npz. A new run may start
from a trained model (`start_from`): its hparams, weights, scale factor and step, with a fresh
optimizer, which is how a finished VAE is taught to read partial drawings
(`--set encode_prefix_prob=0.5 --set train_encoder_only=true`).
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import math
import os
import re
import select
import shutil
import signal
import stat
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from keras import ops
from tqdm import tqdm

from . import __version__, datasets
from .config import HParams
from .distribute import (build_replicated_model, check_same_step, is_chief, local_copy,
                         make_strategy, shard_batch, sum_over_workers)
from .errors import SketchError, TrainingError
from .evaluate import evaluate_losses
from .files import (BEST_SCHEMA, DATASET_SCHEMA, MAX_CHECKPOINT_BYTES, MAX_LOG_BYTES,
                    atomic_write, check_output_path, check_regular, open_append, open_lock_file,
                    open_regular, read_json, write_json)
from .model import SketchRNN, kl_weight_at, take_skipped_step
from .stream import StreamBatcher, is_streamed, survey

STOP_GRACE_SECONDS = 2.0  # how long a stopped process may stay stuck writing its output
_STEP = re.compile(r"[0-9]{1,15}")
LOG_COLUMNS = ["step", "loss", "L_R", "L_KL", "lr", "kl_weight", "skipped",
               "valid_loss", "valid_L_R", "valid_L_KL", "seconds"]


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the run directory; the kernel drops it when the process dies.
    The lock file is never a symbolic link followed or a FIFO waited on."""
    handle = os.fdopen(open_lock_file(run_dir / "lock"), "r+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read(32).strip() or "unknown"
        handle.close()
        raise TrainingError(f"another training job (pid {owner}) is using {run_dir}; "
                            "wait for it to finish or stop it first") from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    try:
        yield
    finally:
        handle.close()


def save_checkpoint(path: Path, model: SketchRNN, step: int,
                    data_state: dict[str, np.ndarray] | None = None) -> None:
    """Model and optimizer variables, the step and the batcher's state, in one .npz (no pickles)."""
    arrays = {f"model/{i}": ops.convert_to_numpy(v) for i, v in enumerate(model.variables)}
    arrays.update({f"optimizer/{i}": ops.convert_to_numpy(v)
                   for i, v in enumerate(model.optimizer.variables)})
    arrays.update({f"data/{name}": value for name, value in (data_state or {}).items()})
    arrays["step"] = np.array(step)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    atomic_write(path, write)


def _read_checkpoint(path: Path, prefix: str = "") -> dict[str, np.ndarray]:
    """The checkpoint's arrays whose names start with `prefix` (the others are not read): a
    regular file within MAX_CHECKPOINT_BYTES, each array within it once unpacked, no pickles."""
    try:
        with open_regular(path, MAX_CHECKPOINT_BYTES, TrainingError) as handle:
            with zipfile.ZipFile(handle) as archive:
                unpacked = sum(info.file_size for info in archive.infolist())
                if unpacked > MAX_CHECKPOINT_BYTES:
                    raise ValueError(f"it unpacks to {unpacked} bytes, over the limit of "
                                     f"{MAX_CHECKPOINT_BYTES}")
                for info in archive.infolist():
                    _check_npy_header(archive, info)
            handle.seek(0)
            with np.load(handle, allow_pickle=False) as data:
                return {key: data[key] for key in data.files if key.startswith(prefix)}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise TrainingError(f"the checkpoint {path} is unreadable ({err}); "
                            "delete it to start the run again") from None


def _check_npy_header(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
    """Raise ValueError unless the .npy member `info` holds no objects and no more array bytes
    than the member itself: numpy allocates the whole array from the header before reading."""
    with archive.open(info) as member:
        version = np.lib.format.read_magic(member)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, _, dtype = read_header(member)
    if dtype.hasobject:
        raise ValueError(f"{info.filename} holds Python objects")
    if math.prod(shape) * dtype.itemsize > info.file_size:
        raise ValueError(f"{info.filename} declares a {dtype} array of shape {shape}, larger "
                         f"than the {info.file_size} bytes it holds")


def load_checkpoint(path: Path, model: SketchRNN) -> int:
    """Restore what save_checkpoint wrote into a freshly built model; returns the step."""
    arrays = _read_checkpoint(path)
    if not model.optimizer.built:  # LossScaleOptimizer.build would add a second set of variables
        model.optimizer.build(model.trainable_variables)
    expected = {f"model/{i}": tuple(v.shape) for i, v in enumerate(model.variables)}
    expected.update({f"optimizer/{i}": tuple(v.shape)
                     for i, v in enumerate(model.optimizer.variables)})
    found = {key: arrays[key].shape for key in arrays
             if key != "step" and not key.startswith("data/")}
    if found != expected:
        raise TrainingError(f"the checkpoint {path} does not match this model's hparams "
                            "or was written by another version")
    bad = [key for key in expected if arrays[key].dtype.kind not in "fiu"]
    step = arrays.get("step")
    if bad or step is None or step.shape != () or step.dtype.kind not in "iu" or step < 0:
        raise TrainingError(f"the checkpoint {path} holds "
                            + (f"{bad[0]} of dtype {arrays[bad[0]].dtype}" if bad else
                               f"the step {step!r}, not a whole number >= 0")
                            + "; delete it to start the run again")
    for i, v in enumerate(model.variables):
        v.assign(arrays[f"model/{i}"])
    for i, v in enumerate(model.optimizer.variables):
        v.assign(arrays[f"optimizer/{i}"])
    return int(arrays["step"])


def load_data_state(path: Path) -> dict[str, np.ndarray]:
    """The batcher's state that save_checkpoint stored (empty for data held in memory)."""
    return {key.removeprefix("data/"): value
            for key, value in _read_checkpoint(path, "data/").items()}


def save_model(run_dir: Path, model: SketchRNN) -> None:
    """The .keras file of the model (architecture from hparams, weights, no optimizer state),
    written atomically."""
    export = SketchRNN(model.hps)
    export.set_weights(model.get_weights())
    atomic_write(run_dir / "model.keras", export.save)


class _StopFlag:
    """Turns SIGTERM and SIGINT into a request to checkpoint and stop after the current step.

    A stop must also end a process that is stuck: in start-up (reading the data and the run's
    files) or writing its output to a pipe that nobody reads. Those places run inside
    `may_block`; once a stop is requested, a process that is (or stays, for STOP_GRACE_SECONDS)
    inside one gets KeyboardInterrupt, as it does on a second signal. Every file the trainer
    writes is replaced whole or not at all, so the last good checkpoint is kept.
    """

    def __init__(self) -> None:
        self.requested = False
        self._depth = 0
        self._blocked_since: float | None = None
        self._done = threading.Event()

    def __enter__(self) -> "_StopFlag":
        self._previous = {s: signal.signal(s, self._handle) for s in (signal.SIGTERM, signal.SIGINT)}
        self._streams = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = (_GuardedStream(s, self) for s in self._streams)
        return self

    @contextlib.contextmanager
    def may_block(self) -> Iterator[None]:
        if self._depth == 0:
            self._blocked_since = time.monotonic()
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0:
                self._blocked_since = None

    def _handle(self, signum, frame) -> None:
        if self.requested:
            _drop_unwritable_output()
            raise KeyboardInterrupt
        self.requested, self._requested_at = True, time.monotonic()
        threading.Thread(target=self._watch, args=(signum,), daemon=True).start()

    def _watch(self, signum: int) -> None:
        """Signal the main thread again if it is stuck where it may block."""
        while not self._done.wait(0.1):
            since = self._blocked_since
            if since is not None and (since < self._requested_at
                                      or time.monotonic() - since > STOP_GRACE_SECONDS):
                signal.pthread_kill(threading.main_thread().ident, signum)
                return

    def __exit__(self, *exc) -> None:
        self._done.set()
        sys.stdout, sys.stderr = self._streams
        for s, handler in self._previous.items():
            signal.signal(s, handler)


class _GuardedStream:
    """An output stream whose writes run inside the stop flag's `may_block`."""

    def __init__(self, stream, stop: _StopFlag) -> None:
        self._stream, self._stop = stream, stop

    def write(self, text: str) -> int:
        with self._stop.may_block():
            return self._stream.write(text)

    def flush(self) -> None:
        with self._stop.may_block():
            self._stream.flush()

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def _drop_unwritable_output() -> None:
    """Point stdout and stderr at /dev/null where they are pipes too full to take more, so
    that flushing them on the way out cannot hang the process."""
    for fd in (1, 2):
        try:
            if stat.S_ISFIFO(os.fstat(fd).st_mode) and not select.select([], [fd], [], 0)[1]:
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, fd)
                os.close(null)
        except OSError:
            pass


class _Logs:
    """log.csv and TensorBoard scalars; on resume, rows past the checkpoint are dropped."""

    def __init__(self, run_dir: Path, start_step: int) -> None:
        from tensorboard.summary import Writer

        self.path = run_dir / "log.csv"
        keep = start_step > 0 and os.path.lexists(self.path)

        def rewrite(tmp: Path) -> None:  # the old log stays whole until the rename
            with open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=LOG_COLUMNS, extrasaction="ignore")
                writer.writeheader()
                writer.writerows(self._kept_rows(start_step) if keep else [])

        atomic_write(self.path, rewrite)
        self.file = open_append(self.path)
        self.writer = csv.DictWriter(self.file, fieldnames=LOG_COLUMNS, extrasaction="ignore")
        if (run_dir / "tb").is_symlink():  # its event files would be written wherever it points
            raise TrainingError(f"{run_dir / 'tb'} is a symbolic link; remove it and run again")
        self.tb = Writer(str(run_dir / "tb"))

    def _kept_rows(self, start_step: int) -> Iterator[dict]:
        """The old log's complete rows up to `start_step` (a torn last line has missing columns)."""
        with open_regular(self.path, MAX_LOG_BYTES, TrainingError) as raw:
            try:
                for row in csv.DictReader(io.TextIOWrapper(raw, newline="", errors="replace")):
                    step = row.get("step") or ""
                    if (None not in row.values() and _STEP.fullmatch(step)
                            and int(step) <= start_step):
                        yield row
            except csv.Error as err:
                raise TrainingError(f"{self.path} is not a readable log ({err}); move it "
                                    "away to resume the run") from None

    def write(self, row: dict) -> None:
        self.writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
        self.file.flush()  # live curves read it; a crash still drops rows past the checkpoint
        for key, value in row.items():
            if key != "step" and isinstance(value, (int, float)) and value != "":
                self.tb.add_scalar(key, float(value), step=row["step"])

    def flush(self) -> None:
        self.file.flush()
        self.tb.flush()

    def close(self) -> None:
        self.file.close()
        self.tb.close()


def _prepare_data(run_dir: Path, data_paths: list[str], hps: HParams, resuming: bool,
                  say: Callable[[str], None], factor_given: float | None = None):
    """(batcher, normalised validation sketches, scale factor): ndjson data is streamed (see
    stream.py), `.npz` data alone is held in memory. `factor_given` replaces the data's own
    scale factor (that of the model a run starts from)."""
    streamed = is_streamed(data_paths)
    if streamed:
        found = survey(data_paths, hps.max_seq_len)
        factor, valid, info = found.scale_factor, found.valid, found.info()
        described = f"streaming the training split of {len(found.files)} file(s)"
    else:
        data = datasets.load_dataset(data_paths, hps.max_seq_len)
        if not data.train or not data.valid:
            raise TrainingError(f"the data has {len(data.train)} training and {len(data.valid)} "
                                "validation sketches; both are needed")
        factor, valid = datasets.scale_factor(data.train), data.valid
        info = {"sources": data.sources, "scale_factor": factor,
                "sizes": {s: len(getattr(data, s)) for s in datasets.SPLITS},
                "classes": data.classes, "dropped_too_long": data.dropped_too_long,
                "dropped_empty": data.dropped_empty, "skipped_lines": data.skipped_lines}
        described = f"{len(data.train)} train sketches from {len(data.sources)} file(s)"
    if factor_given is not None:
        factor = info["scale_factor"] = factor_given
    info_path = run_dir / "dataset.json"
    if resuming and os.path.lexists(info_path):
        factor = float(read_json(info_path, DATASET_SCHEMA, TrainingError)["scale_factor"])
    else:
        write_json(info_path, info)
    settings = (hps.batch_size, hps.max_seq_len, hps.seed, hps.random_scale_factor,
                hps.augment_stroke_prob, hps.bucket_width, hps.dequantize / factor)
    if streamed:
        batcher = StreamBatcher(found, factor, *settings)
        described += f" through a buffer of {batcher.capacity} sketches"
    else:
        batcher = datasets.Batcher(datasets.normalize(data.train, factor), *settings)
    say(f"data: {described}, {len(valid)} validation sketches; scale factor {factor:.4f}")
    return batcher, datasets.normalize(valid, factor), factor


def _write_samples(run_dir: Path, model: SketchRNN, factor: float, step: int) -> None:
    from .render import grid_svg
    from .sample import Sketcher

    sketcher = Sketcher(model, factor)
    drawings = sketcher.generate(n=8, temperature=0.5, seed=step)
    atomic_write(run_dir / "samples.svg", lambda p: p.write_text(grid_svg(drawings, columns=4)))


def _worker_dir(run_dir: Path) -> Path:
    """A private copy of the run's state for a worker other than the chief, which trains in
    step with the chief but must not write into its run directory."""
    scratch = Path(tempfile.mkdtemp(prefix="sketch_model_worker_"))
    for name in ("hparams.json", "dataset.json", "best.json", "checkpoint.npz"):
        if os.path.lexists(run_dir / name):
            check_regular(run_dir / name, MAX_CHECKPOINT_BYTES, TrainingError)
            shutil.copy2(run_dir / name, scratch / name)
    return scratch


class _StartPoint:
    """What a new run takes from the trained model directory it starts from: hparams, scale
    factor and step (best.json's; 0 without one) are read at once, the weights (`load`) only
    once the model is built."""

    def __init__(self, model_dir: str | Path) -> None:
        self.dir = Path(model_dir)
        if not (self.dir / "model.keras").is_file():
            raise TrainingError(f"{self.dir} is not a model directory of this library (no "
                                "model.keras) and cannot be trained on from")
        self.hps = HParams.load(self.dir / "hparams.json")
        self.factor = float(read_json(self.dir / "dataset.json", DATASET_SCHEMA,
                                      TrainingError)["scale_factor"])
        best = self.dir / "best.json"
        self.step = (read_json(best, BEST_SCHEMA, TrainingError)["step"]
                     if os.path.lexists(best) else 0)

    def load(self, model: SketchRNN) -> None:
        from .sample import load_model

        try:
            model.set_weights(load_model(self.dir).model.get_weights())
        except ValueError:
            raise TrainingError(f"the settings given change the architecture of {self.dir}; a "
                                "run that starts from a model keeps its sizes and cells") from None


def train(data_paths: list[str], run_dir: str | Path, steps: int | None = None,
          overrides: list[str] | None = None, say: Callable[[str], None] = print,
          distribution: str | None = None, devices: list[str] | None = None,
          start_from: str | Path | None = None) -> Path:
    """Train (or resume) a run in `run_dir`; returns the run directory. `distribution` and
    `devices` choose a tf.distribute strategy (see distribute.make_strategy). `start_from`: a
    trained model directory a new run starts from, its hparams with `overrides` on top (a run
    that resumes goes on from its own checkpoint)."""
    start = _StartPoint(start_from) if start_from is not None else None
    base = start.hps if start else HParams()
    checked = base.with_overrides(overrides or [])  # every setting, before any work
    if steps is not None:
        checked.replace(num_steps=steps)
    check_output_path(run_dir, directory=True, error=TrainingError)
    strategy = make_strategy(distribution, devices)  # first: multi-worker must precede other TF work
    run_dir = Path(run_dir) if is_chief(strategy) else _worker_dir(Path(run_dir))
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise TrainingError(f"cannot create the run directory {run_dir}: "
                            f"{err.strerror or err}") from None
    with run_lock(run_dir), _StopFlag() as stop:  # a stop during start-up is clean too
        for leftover in run_dir.glob(".*.tmp*"):  # of a job killed while writing
            leftover.unlink(missing_ok=True)
        hparams_path, ckpt_path = run_dir / "hparams.json", run_dir / "checkpoint.npz"
        resuming = ckpt_path.exists() and hparams_path.exists()
        if resuming:
            hps = HParams.load(hparams_path)
            if overrides:
                changed = hps.with_overrides(overrides)
                if changed != hps:
                    raise TrainingError(f"{run_dir} already holds a run with other hparams; "
                                        "use a new --out directory to change them")
        else:
            hps = base.with_overrides(overrides or [])
        if steps is not None:
            hps = hps.replace(num_steps=steps)
        write_json(hparams_path, hps.to_dict())
        status = {"state": "running", "step": 0, "steps": hps.num_steps, "pid": os.getpid(),
                  "error": None, "sketch_model_version": __version__}
        write_json(run_dir / "status.json", status)
        try:
            _train_loop(run_dir, data_paths, hps, resuming, status, say, strategy, stop,
                        None if resuming else start)
        except KeyboardInterrupt:  # a stop that could not wait for the end of a step
            status.update(state="stopped")
            write_json(run_dir / "status.json", status)
            raise
        except BaseException as err:
            status.update(state="failed", error=str(err) if isinstance(err, SketchError)
                          else f"{type(err).__name__}: {err}")
            write_json(run_dir / "status.json", status)
            raise
    return run_dir


def _any_worker_stops(strategy, stop: _StopFlag) -> bool:
    """Whether this process or, in multi-worker training, any worker was asked to stop: all
    stop at the same step, since a worker left alone would wait forever for its peers."""
    return bool(sum_over_workers(strategy, [float(stop.requested)])[0] > 0)


def _train_loop(run_dir: Path, data_paths: list[str], hps: HParams, resuming: bool,
                status: dict, say: Callable[[str], None], strategy, stop: _StopFlag,
                start: _StartPoint | None) -> None:
    with stop.may_block():  # start-up: a stop ends it at once
        batcher, valid_set, factor = _prepare_data(run_dir, data_paths, hps, resuming, say,
                                                   start.factor if start else None)
        model = build_replicated_model(hps, strategy)
        step = 0
        if start:
            with strategy.scope():
                start.load(model)
            step = start.step
            say(f"starting from {start.dir} at its step {step}, with a fresh optimizer")
        if resuming:
            with strategy.scope():
                step = load_checkpoint(run_dir / "checkpoint.npz", model)
            try:
                batcher.restore(load_data_state(run_dir / "checkpoint.npz"), step)
            except (KeyError, IndexError, TypeError, ValueError, AttributeError) as err:
                raise TrainingError(f"the checkpoint {run_dir / 'checkpoint.npz'} holds a data "
                                    f"state this data cannot take ({type(err).__name__}: {err}); "
                                    "train into a new --out directory") from None
            say(f"resuming {run_dir} from step {step} of {hps.num_steps}")
        check_same_step(strategy, step)
        best_path = run_dir / "best.json"
        best = (read_json(best_path, BEST_SCHEMA, TrainingError)["valid_loss"]
                if os.path.lexists(best_path) else math.inf)
        logs = _Logs(run_dir, step)
    evaluator = None  # the model's weights outside the strategy, for validation and samples
    skipped = 0
    started = time.time()
    try:
        with tqdm(total=hps.num_steps, initial=step, unit="step", dynamic_ncols=True,
                  desc="train") as bar:
            stopping = False
            while step < hps.num_steps and not (stopping := _any_worker_stops(strategy, stop)):
                strokes, lengths = batcher.batch(step)
                model.kl_weight.assign(kl_weight_at(hps, step))
                lr = float(model.optimizer.learning_rate)
                model.reset_metrics()
                batch = shard_batch(strategy, {"strokes": strokes, "lengths": lengths})
                out = model.train_on_batch(batch, return_dict=True)
                skipped += take_skipped_step(model)
                step += 1
                row = {"step": step, "loss": float(out["loss"]), "L_R": float(out["L_R"]),
                       "L_KL": float(out["L_KL"]), "lr": lr,
                       "kl_weight": float(kl_weight_at(hps, step - 1)), "skipped": skipped,
                       "seconds": round(time.time() - started, 2)}
                bar.set_postfix(loss=f"{row['loss']:.3f}", L_R=f"{row['L_R']:.3f}",
                                L_KL=f"{row['L_KL']:.3f}", refresh=False)
                bar.update(1)
                checkpointing = step % hps.save_every == 0 or step == hps.num_steps
                if checkpointing:
                    evaluator = local_copy(model, evaluator)
                    valid = evaluate_losses(evaluator, valid_set, hps)
                    row.update(valid_loss=valid["loss"], valid_L_R=valid["L_R"],
                               valid_L_KL=valid["L_KL"])
                logs.write(row)
                status["step"] = step
                if checkpointing:
                    logs.flush()  # the log holds every step up to the checkpoint below
                    if valid["loss"] < best:
                        best = valid["loss"]
                        save_model(run_dir, evaluator)
                        write_json(best_path, {"step": step, "valid_loss": valid["loss"],
                                               "valid_L_R": valid["L_R"], "valid_L_KL": valid["L_KL"],
                                               "sketch_model_version": __version__})
                    save_checkpoint(run_dir / "checkpoint.npz", model, step, batcher.state())
                    write_json(run_dir / "status.json", status)
                    _write_samples(run_dir, evaluator, factor, step)
                    bar.write(f"step {step}: valid loss {valid['loss']:.4f} "
                              f"(L_R {valid['L_R']:.4f}, L_KL {valid['L_KL']:.4f}); best {best:.4f}")
            if stopping and step % hps.save_every != 0:
                logs.flush()
                save_checkpoint(run_dir / "checkpoint.npz", model, step, batcher.state())
                if not (run_dir / "model.keras").exists():
                    save_model(run_dir, model)
    finally:
        logs.close()
    status["state"] = "stopped" if step < hps.num_steps else "finished"
    write_json(run_dir / "status.json", status)
    say(f"{status['state']} at step {step}; run directory {run_dir}")
