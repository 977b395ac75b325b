"""Hardening of training: kill -9 at any moment (mid-checkpoint included) and resume, non-finite
steps, a full disk, and two jobs on one run directory.

The kill/resume/lock scenario runs real `python -m sketch_model train` subprocesses with a tiny
model once per module (`scenario` below); the tests then check what it recorded.
"""

from __future__ import annotations

import csv
import errno
import fcntl
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from sketch_model import HParams, Sketcher, load_model
from sketch_model import cli, datasets
from sketch_model import train as train_module
from sketch_model.errors import TrainingError
from sketch_model.model import build_model, take_skipped_step

ROOT = Path(__file__).resolve().parents[1]
SHEEP = ROOT / "assets" / "data" / "aaron_sheep.npz"
TINY_TRAIN = ["--set", "dec_rnn_size=32", "--set", "enc_rnn_size=16", "--set", "z_size=8",
              "--set", "num_mixture=3", "--set", "batch_size=8", "--set", "save_every=5",
              "--set", "bucket_width=250"]  # one batch length: one trace, a faster start
STEPS = 30
SEED = int(os.environ.get("HARDENING_SEED", "20240517"))
REAL_SAVEZ = np.savez

# Runs the train command with checkpoint.npz and/or model.keras written slowly: half the
# bytes, a pause, then the rest, so that a kill lands in the middle of the write.
SLOW_WRITES = """
import io, os, sys, time
import numpy as np
import sketch_model.train as T
from sketch_model.cli import main
PAUSE, WHAT = 60.0, os.environ["SLOW_WRITES"]

def halting(f, data):
    f.write(data[:len(data) // 2]); f.flush(); os.fsync(f.fileno())
    time.sleep(PAUSE)
    f.write(data[len(data) // 2:])

if "checkpoint" in WHAT:
    savez = np.savez
    def slow_savez(f, **arrays):
        buffer = io.BytesIO(); savez(buffer, **arrays); halting(f, buffer.getvalue())
    np.savez = slow_savez
if "model" in WHAT:
    save = T.SketchRNN.save
    def slow_save(self, path, *args, **kwargs):
        save(self, path, *args, **kwargs)
        data = open(path, "rb").read()
        with open(path, "wb") as f:
            halting(f, data)
    T.SketchRNN.save = slow_save
sys.exit(main(sys.argv[1:]))
"""


def _command(run_dir: Path, slow: str | None = None) -> list[str]:
    head = [sys.executable, "-c", SLOW_WRITES] if slow else [sys.executable, "-m", "sketch_model"]
    return head + ["train", str(SHEEP), "--out", str(run_dir), "--steps", str(STEPS), *TINY_TRAIN]


def _start(run_dir: Path, log: Path, slow: str | None = None) -> subprocess.Popen:
    env = dict(os.environ, SLOW_WRITES=slow or "")
    return subprocess.Popen(_command(run_dir, slow), cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT)


def _wait_for(condition, job: subprocess.Popen, timeout: float = 120.0, poll: float = 0.005):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        if job.poll() is not None:
            raise AssertionError(f"the job ended (rc {job.returncode}) before the condition")
        time.sleep(poll)
    raise AssertionError("timed out")


def _status_pid(run_dir: Path) -> int | None:
    try:
        status = json.loads((run_dir / "status.json").read_text())
    except (OSError, ValueError):
        return None
    return status.get("pid") if status.get("state") == "running" else None


def _temp_file(run_dir: Path, name: str):
    def find():
        for path in run_dir.glob(f".{name}.tmp*"):
            try:
                if path.stat().st_size > 0:
                    return path.name
            except FileNotFoundError:
                pass
        return None
    return find


def _lock_is_free(run_dir: Path) -> bool:
    with open(run_dir / "lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(handle, fcntl.LOCK_UN)
    return True


def _inspect(run_dir: Path, hps: HParams) -> dict:
    """What a reader finds in the run directory right after a kill."""
    found = {"lock_free": _lock_is_free(run_dir)}
    checkpoint = run_dir / "checkpoint.npz"
    if checkpoint.exists():
        try:
            found["checkpoint_step"] = train_module.load_checkpoint(checkpoint, build_model(hps))
        except Exception as err:  # recorded, and failed in the test
            found["checkpoint_step"] = f"{type(err).__name__}: {err}"
    if (run_dir / "model.keras").exists():
        try:
            found["model"] = type(load_model(run_dir)).__name__
        except Exception as err:
            found["model"] = f"{type(err).__name__}: {err}"
    return found


@pytest.fixture(scope="module")
def scenario(tmp_path_factory) -> dict:
    """Job A trains; job B on the same directory is refused; A is killed -9 at a random moment
    after its first checkpoint; B2 at a random moment soon after it starts; C is killed in the
    middle of writing a file (model.keras or checkpoint.npz, whichever comes first), D in the
    middle of writing checkpoint.npz; E resumes and runs to the end."""
    rng = random.Random(SEED)
    base = tmp_path_factory.mktemp("killed")
    run_dir, logs = base / "run", base / "logs"
    logs.mkdir()
    hps = HParams().with_overrides([s for s in TINY_TRAIN if s != "--set"]).replace(num_steps=STEPS)
    record: dict = {"kills": [], "seed": SEED}

    a = _start(run_dir, logs / "a.txt")
    try:
        _wait_for(lambda: _status_pid(run_dir) == a.pid, a)
        b = subprocess.run(_command(run_dir), cwd=ROOT, capture_output=True, timeout=120)
        record["second_job"] = {"rc": b.returncode, "stderr": b.stderr.decode(errors="replace"),
                                "status_pid_after": _status_pid(run_dir), "first_pid": a.pid}
        _wait_for(lambda: (run_dir / "checkpoint.npz").exists(), a)
        delay = rng.uniform(0.0, 1.5)
        time.sleep(delay)
    finally:
        a.send_signal(signal.SIGKILL)
        a.wait()
    record["kills"].append({"job": "A", "at": f"random, {delay:.2f} s after the first checkpoint",
                            **_inspect(run_dir, hps)})

    b2 = _start(run_dir, logs / "b2.txt")
    try:
        _wait_for(lambda: _status_pid(run_dir) == b2.pid, b2)
        delay = rng.uniform(0.0, 3.0)  # loading data, building, tracing or the first steps
        time.sleep(delay)
    finally:
        b2.send_signal(signal.SIGKILL)
        b2.wait()
    record["kills"].append({"job": "B2", "at": f"random, {delay:.2f} s after taking the lock",
                            **_inspect(run_dir, hps)})

    for name, slow, target in (("C", "checkpoint model", None), ("D", "checkpoint", "checkpoint")):
        job = _start(run_dir, logs / f"{name}.txt", slow=slow)
        try:
            if target:
                during = _wait_for(_temp_file(run_dir, "checkpoint.npz"), job)
            else:
                during = _wait_for(lambda: _temp_file(run_dir, "model.keras")()
                                   or _temp_file(run_dir, "checkpoint.npz")(), job)
            time.sleep(rng.uniform(0.0, 0.5))  # still inside the write's pause
        finally:
            job.send_signal(signal.SIGKILL)
            job.wait()
        record["kills"].append({"job": name, "at": f"in the middle of writing {during}",
                                "temp_file": during, **_inspect(run_dir, hps)})

    record["before_resume_step"] = record["kills"][-1].get("checkpoint_step")
    e = _start(run_dir, logs / "e.txt")
    e.wait(timeout=170)
    record["final"] = {"rc": e.returncode, "output": (logs / "e.txt").read_text(errors="replace"),
                       **_inspect(run_dir, hps)}
    record["run_dir"] = run_dir
    record["hps"] = hps
    return record


def test_a_second_job_on_the_same_run_directory_is_refused(scenario):
    second = scenario["second_job"]
    assert second["rc"] == 2, second["stderr"][-2000:]
    assert f"another training job (pid {second['first_pid']}) is using" in second["stderr"]
    assert "Traceback" not in second["stderr"]
    assert second["status_pid_after"] == second["first_pid"], "the refused job wrote status.json"


def test_a_killed_job_does_not_hold_the_lock(scenario):
    assert all(kill["lock_free"] for kill in scenario["kills"]), scenario["kills"]
    assert scenario["final"]["rc"] == 0  # the next job got the lock and ran


def test_kill_9_never_leaves_an_unreadable_checkpoint_or_model(scenario):
    kills = scenario["kills"]
    for kill in kills:
        print(kill)
    assert len(kills) == 4
    assert any(k.get("temp_file", "").startswith(".checkpoint.npz.tmp") for k in kills), \
        "no kill landed in the middle of a checkpoint write"
    for kill in kills:
        step = kill.get("checkpoint_step")
        assert isinstance(step, int) and step % 5 == 0 and 5 <= step < STEPS, kill
        assert kill.get("model", "Sketcher") == "Sketcher", kill
    steps = [k["checkpoint_step"] for k in kills]
    assert steps == sorted(steps), "a resumed job went backwards"


def test_resume_after_the_kills_runs_to_completion(scenario):
    final, run_dir = scenario["final"], scenario["run_dir"]
    assert final["rc"] == 0, final["output"][-3000:]
    assert f"resuming {run_dir} from step {scenario['before_resume_step']} of" in final["output"]
    assert final["checkpoint_step"] == STEPS and final["model"] == "Sketcher"
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "finished" and status["step"] == STEPS
    with open(run_dir / "log.csv", newline="") as f:
        logged = [int(row["step"]) for row in csv.DictReader(f)]
    assert logged == list(range(1, STEPS + 1)), "log.csv lost or repeated steps"
    assert isinstance(load_model(run_dir), Sketcher)


def test_temporary_files_of_killed_jobs_are_cleaned_up_on_resume(scenario):
    leftovers = sorted(p.name for p in scenario["run_dir"].glob(".*.tmp*"))
    assert leftovers == []


def test_a_torn_last_line_of_log_csv_is_dropped_on_resume(tmp_path):
    rows = [",".join([str(step)] + ["0.5"] * (len(train_module.LOG_COLUMNS) - 1))
            for step in range(1, 13)]
    (tmp_path / "log.csv").write_text(",".join(train_module.LOG_COLUMNS) + "\n"
                                      + "\n".join(rows) + "\n1")  # "13,..." cut after "1"
    train_module._Logs(tmp_path, start_step=10).close()
    with open(tmp_path / "log.csv", newline="") as f:
        assert [int(row["step"]) for row in csv.DictReader(f)] == list(range(1, 11))


# --- non-finite steps ---------------------------------------------------------------------

def test_a_non_finite_loss_or_gradient_skips_the_step_and_never_reaches_the_weights():
    hps = HParams(dec_rnn_size=16, enc_rnn_size=8, z_size=4, num_mixture=2, batch_size=4,
                  max_seq_len=12)
    model = build_model(hps)
    rng = np.random.default_rng(0)
    sketches = []
    for n in (6, 8, 10, 9):
        sketch = np.zeros((n, 3), np.float32)
        sketch[:, :2] = rng.normal(0, 1, (n, 2))
        sketch[[2, -1], 2] = 1
        sketches.append(sketch)
    strokes, lengths = datasets.pad_batch(sketches, hps.max_seq_len)
    model.train_on_batch({"strokes": strokes, "lengths": lengths})
    assert not take_skipped_step(model)

    def state() -> list[np.ndarray]:
        adam = [v for v in model.optimizer.variables if "adam" in v.path]
        return [np.array(v.numpy()) for v in [*model.trainable_variables, *adam]]

    poisons = {"NaN": np.nan, "inf": np.inf, "-inf": -np.inf, "3e38": 3e38, "1e30": 1e30}
    for name, value in poisons.items():
        bad = strokes.copy()
        bad[0, 3, 0] = value
        before = state()
        out = model.train_on_batch({"strokes": bad, "lengths": lengths}, return_dict=True)
        assert not np.isfinite(out["loss"]), name
        assert take_skipped_step(model), f"{name}: the step was not reported as skipped"
        assert not take_skipped_step(model), "reported twice"
        for got, want in zip(state(), before):
            np.testing.assert_array_equal(got, want, err_msg=f"{name} reached the weights")
    bad_eps = {"strokes": strokes, "lengths": lengths, "eps": np.full((4, 4), np.nan, np.float32)}
    before = state()
    model.train_on_batch(bad_eps)
    assert take_skipped_step(model)
    for got, want in zip(state(), before):
        np.testing.assert_array_equal(got, want)
    # The optimizer is re-armed: the next good step trains, at full scale.
    model.train_on_batch({"strokes": strokes, "lengths": lengths})
    assert not take_skipped_step(model)
    after = state()
    assert all(np.all(np.isfinite(v)) for v in after)
    assert any(not np.array_equal(a, b) for a, b in zip(after, before)), \
        "a good step changed nothing"


# --- a full disk --------------------------------------------------------------------------

def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def _half_then_enospc(path: Path) -> None:
    with open(path, "wb") as f:
        f.write(b"PK\x03\x04 half a file")
    _enospc()


def test_a_full_disk_keeps_the_last_good_file(tmp_path):
    target = tmp_path / "status.json"
    target.write_text('{"good": true}')
    with pytest.raises(TrainingError, match="disk is full.*status.json.*kept"):
        train_module.atomic_write(target, _half_then_enospc)
    assert target.read_text() == '{"good": true}'

    def over_quota(path: Path) -> None:
        raise OSError(errno.EDQUOT, "Disk quota exceeded")

    with pytest.raises(TrainingError, match="disk is full.*status.json.*kept"):
        train_module.atomic_write(target, over_quota)
    assert target.read_text() == '{"good": true}'
    assert list(tmp_path.iterdir()) == [target], "the temporary file was left behind"
    with pytest.raises(TrainingError, match="disk is full"):
        train_module.atomic_write(tmp_path / "new.json", _enospc)
    assert not (tmp_path / "new.json").exists()


def test_a_full_disk_while_checkpointing_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    hps = HParams(dec_rnn_size=16, enc_rnn_size=8, z_size=4, num_mixture=2)
    model = build_model(hps)
    model.optimizer.build(model.trainable_variables)
    path = tmp_path / "checkpoint.npz"
    train_module.save_checkpoint(path, model, step=5)
    train_module.save_model(tmp_path, model)
    good_checkpoint, good_model = path.read_bytes(), (tmp_path / "model.keras").read_bytes()

    def half_savez(f, **arrays):
        buffer = io.BytesIO()
        REAL_SAVEZ(buffer, **arrays)
        f.write(buffer.getvalue()[:1000])
        _enospc()

    monkeypatch.setattr(train_module.np, "savez", half_savez)
    with pytest.raises(TrainingError, match="disk is full.*checkpoint.npz"):
        train_module.save_checkpoint(path, model, step=10)
    monkeypatch.setattr(train_module.SketchRNN, "save",
                        lambda self, p, *a, **k: _half_then_enospc(p))
    with pytest.raises(TrainingError, match="disk is full.*model.keras"):
        train_module.save_model(tmp_path, model)
    monkeypatch.undo()
    assert path.read_bytes() == good_checkpoint
    assert (tmp_path / "model.keras").read_bytes() == good_model
    assert train_module.load_checkpoint(path, build_model(hps)) == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.npz", "model.keras"]


def test_the_train_command_on_a_full_disk_says_so_and_keeps_the_last_checkpoint(
        tmp_path, monkeypatch, capsys):
    """In-process `train`: the second checkpoint write (step 10) hits ENOSPC."""
    calls = []

    def savez_until_full(f, **arrays):
        calls.append(int(arrays["step"]))
        if len(calls) > 1:
            f.write(b"PK\x03\x04")
            _enospc()
        REAL_SAVEZ(f, **arrays)

    monkeypatch.setattr(train_module.np, "savez", savez_until_full)
    run_dir = tmp_path / "full"
    rc = cli.main(["train", str(SHEEP), "--out", str(run_dir), "--steps", "10", *TINY_TRAIN])
    err = capsys.readouterr().err
    monkeypatch.undo()
    assert rc == 2 and "error: the disk is full: could not write checkpoint.npz" in err
    assert "Traceback" not in err
    assert calls == [5, 10]
    hps = HParams.load(run_dir / "hparams.json")
    assert train_module.load_checkpoint(run_dir / "checkpoint.npz", build_model(hps)) == 5
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "failed" and "disk is full" in status["error"]
    assert not list(run_dir.glob(".*.tmp*"))


def test_a_full_disk_while_writing_the_log_gives_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(csv.DictWriter, "writeheader", _enospc)
    rc = cli.main(["train", str(SHEEP), "--out", str(tmp_path / "run"), "--steps", "5",
                   *TINY_TRAIN])
    assert rc == 2 and "disk is full" in capsys.readouterr().err
