"""Training: the reference's loop with bucketed batches, checkpoints, resumption and logs.

A run directory holds everything of one run: hparams.json, dataset.json (sources, sizes, the
scale factor), log.csv, tb/ (TensorBoard), checkpoint.npz (weights, optimizer state and step,
written atomically), model.keras (the best model on the validation set), samples.svg and
status.json. Running the same command again resumes from checkpoint.npz.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import json
import math
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from keras import ops
from tqdm import tqdm

from . import __version__, datasets
from .config import HParams
from .distribute import (build_replicated_model, check_same_step, is_chief, local_copy,
                         make_strategy, shard_batch, sum_over_workers)
from .errors import DISK_FULL, SketchError, TrainingError
from .evaluate import evaluate_losses
from .model import SketchRNN, kl_weight_at, take_skipped_step
from .stream import StreamBatcher, is_streamed, survey

LOG_COLUMNS = ["step", "loss", "L_R", "L_KL", "lr", "kl_weight", "skipped",
               "valid_loss", "valid_L_R", "valid_L_KL", "seconds"]


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary file in the same directory, then rename over `path`, so a
    reader (or a crash) never sees a half-written file. A full disk raises TrainingError and
    leaves the previous file in place."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}{path.suffix}")
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        if err.errno in DISK_FULL:
            raise TrainingError(f"the disk is full: could not write {path.name}; "
                                f"the last good {path.name} is kept") from None
        raise


def write_json(path: Path, data: dict) -> None:
    atomic_write(path, lambda p: p.write_text(json.dumps(data, indent=2) + "\n"))


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the run directory; the kernel drops it when the process dies."""
    handle = open(run_dir / "lock", "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or "unknown"
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
    """The checkpoint's arrays whose names start with `prefix` (the others are not read)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files if key.startswith(prefix)}
    except (OSError, ValueError, EOFError) as err:
        raise TrainingError(f"the checkpoint {path} is unreadable ({err}); "
                            "delete it to start the run again") from None


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
    """Turns SIGTERM and SIGINT into a request to checkpoint and stop after the current step."""

    def __init__(self) -> None:
        self.requested = False

    def __enter__(self) -> "_StopFlag":
        self._previous = {s: signal.signal(s, self._handle) for s in (signal.SIGTERM, signal.SIGINT)}
        return self

    def _handle(self, signum, frame) -> None:
        self.requested = True

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)


class _Logs:
    """log.csv and TensorBoard scalars; on resume, rows past the checkpoint are dropped."""

    def __init__(self, run_dir: Path, start_step: int) -> None:
        from tensorboard.summary import Writer

        self.path = run_dir / "log.csv"
        rows = []
        if self.path.exists() and start_step > 0:
            with open(self.path, newline="") as f:  # a torn last line has missing columns
                rows = [r for r in csv.DictReader(f) if None not in r.values()
                        and r.get("step", "").isdigit() and int(r["step"]) <= start_step]
        self.file = open(self.path, "w", newline="")
        self.writer = csv.DictWriter(self.file, fieldnames=LOG_COLUMNS, extrasaction="ignore")
        self.writer.writeheader()
        self.writer.writerows(rows)
        self.tb = Writer(str(run_dir / "tb"))

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
                  say: Callable[[str], None]):
    """(batcher, normalised validation sketches, scale factor): ndjson data is streamed (see
    stream.py), `.npz` data alone is held in memory."""
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
    info_path = run_dir / "dataset.json"
    if resuming and info_path.exists():
        factor = float(json.loads(info_path.read_text())["scale_factor"])
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
        if (run_dir / name).exists():
            shutil.copy2(run_dir / name, scratch / name)
    return scratch


def train(data_paths: list[str], run_dir: str | Path, steps: int | None = None,
          overrides: list[str] | None = None, say: Callable[[str], None] = print,
          distribution: str | None = None, devices: list[str] | None = None) -> Path:
    """Train (or resume) a run in `run_dir`; returns the run directory. `distribution` and
    `devices` choose a tf.distribute strategy (see distribute.make_strategy)."""
    strategy = make_strategy(distribution, devices)  # first: multi-worker must precede other TF work
    run_dir = Path(run_dir) if is_chief(strategy) else _worker_dir(Path(run_dir))
    run_dir.mkdir(parents=True, exist_ok=True)
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
            hps = HParams().with_overrides(overrides or [])
        if steps is not None:
            hps = hps.replace(num_steps=steps)
        write_json(hparams_path, hps.to_dict())
        status = {"state": "running", "step": 0, "steps": hps.num_steps, "pid": os.getpid(),
                  "error": None, "sketch_model_version": __version__}
        write_json(run_dir / "status.json", status)
        try:
            _train_loop(run_dir, data_paths, hps, resuming, status, say, strategy, stop)
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
                status: dict, say: Callable[[str], None], strategy, stop: _StopFlag) -> None:
    batcher, valid_set, factor = _prepare_data(run_dir, data_paths, hps, resuming, say)
    model = build_replicated_model(hps, strategy)
    evaluator = None  # the model's weights outside the strategy, for validation and samples
    step = 0
    if resuming:
        with strategy.scope():
            step = load_checkpoint(run_dir / "checkpoint.npz", model)
        batcher.restore(load_data_state(run_dir / "checkpoint.npz"), step)
        say(f"resuming {run_dir} from step {step} of {hps.num_steps}")
    check_same_step(strategy, step)
    best_path = run_dir / "best.json"
    best = json.loads(best_path.read_text())["valid_loss"] if best_path.exists() else math.inf
    logs = _Logs(run_dir, step)
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
