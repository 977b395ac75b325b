"""Training: overfitting a fixed batch, save -> load, kill -9 and resume, the CLI's outputs."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from keras import ops

import sketch_model
from sketch_model.datasets import pad_batch
from sketch_model.model import build_model
from sketch_model.config import HParams
from sketch_model.train import _prepare_data, load_checkpoint, save_checkpoint, save_model
from tests.helpers import ROOT, SHEEP, sheep, tiny_hparams

TINY_ARGS = ["--set", "dec_rnn_size=32", "--set", "enc_rnn_size=16", "--set", "z_size=8",
             "--set", "num_mixture=3", "--set", "batch_size=8", "--set", "save_every=5"]
OVERFIT_MARGIN = 0.8  # L_R must fall by more than this on a fixed batch (measured: 1.08)


def cli(*args, timeout=300):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "sketch_model", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_small_model_overfits_a_fixed_batch_of_real_sheep():
    hps = tiny_hparams(dec_rnn_size=128, enc_rnn_size=64, z_size=16, num_mixture=5,
                       batch_size=16, use_recurrent_dropout=False, learning_rate=0.005,
                       decay_rate=1.0)
    model = build_model(hps)
    strokes, lengths = pad_batch(sheep(n=16), 250)
    batch = {"strokes": strokes, "lengths": lengths}
    losses = []
    for _ in range(150):
        model.reset_metrics()
        losses.append(model.train_on_batch(batch, return_dict=True)["L_R"])
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    print(f"overfit: L_R {first:.3f} -> {last:.3f} (fall {first - last:.3f})")
    assert np.all(np.isfinite(losses))
    assert first - last > OVERFIT_MARGIN


def test_checkpoint_round_trip_restores_weights_optimizer_and_step(tmp_path):
    model = build_model(tiny_hparams())
    strokes, lengths = pad_batch(sheep(n=8), 250)
    model.train_on_batch({"strokes": strokes, "lengths": lengths})
    save_checkpoint(tmp_path / "c.npz", model, 7)
    other = build_model(tiny_hparams())
    assert load_checkpoint(tmp_path / "c.npz", other) == 7
    for a, b in zip(model.variables + model.optimizer.variables,
                    other.variables + other.optimizer.variables):
        np.testing.assert_array_equal(ops.convert_to_numpy(a), ops.convert_to_numpy(b))


def test_save_then_load_gives_identical_outputs(tmp_path):
    hps = tiny_hparams()
    model = build_model(hps)
    strokes, lengths = pad_batch(sheep(n=8), 250)
    model.train_on_batch({"strokes": strokes, "lengths": lengths})
    hps.save(tmp_path / "hparams.json")
    (tmp_path / "dataset.json").write_text(json.dumps({"scale_factor": 18.5198}))
    save_model(tmp_path, model)
    loaded = sketch_model.load_model(tmp_path)
    eps = np.zeros((8, hps.z_size), np.float32)
    inputs = {"strokes": strokes, "lengths": lengths, "eps": eps}
    np.testing.assert_array_equal(ops.convert_to_numpy(model(inputs)["params"]),
                                  ops.convert_to_numpy(loaded.model(inputs)["params"]))
    same = sketch_model.Sketcher(model, 18.5198)
    for a, b in zip(same.generate(3, 0.5, seed=4), loaded.generate(3, 0.5, seed=4)):
        np.testing.assert_array_equal(a, b)


def _log_steps(run_dir):
    with open(run_dir / "log.csv", newline="") as f:
        return [int(r["step"]) for r in csv.DictReader(f)]


def test_kill_9_and_resume_continue_the_same_run(tmp_path):
    """A run killed with SIGKILL after a checkpoint resumes from it with the same step count
    and schedules, and ends with the weights of an uninterrupted run."""
    steps = ["--steps", "20"]
    whole = tmp_path / "whole"
    assert cli("train", str(SHEEP), "--out", str(whole), *steps, *TINY_ARGS).returncode == 0

    run = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "sketch_model", "train", str(SHEEP), "--out",
                             str(run), *steps, *TINY_ARGS], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if (run / "checkpoint.npz").exists():
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with np.load(run / "checkpoint.npz") as ckpt:
        saved_step = int(ckpt["step"])
    assert 0 < saved_step < 20

    resumed = cli("train", str(SHEEP), "--out", str(run), *steps, *TINY_ARGS)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming {run} from step {saved_step} of 20" in resumed.stdout
    assert _log_steps(run) == list(range(1, 21))
    assert json.loads((run / "status.json").read_text())["state"] == "finished"
    with np.load(run / "checkpoint.npz") as a, np.load(whole / "checkpoint.npz") as b:
        assert int(a["step"]) == int(b["step"]) == 20
        for key in a.files:
            if key.startswith(("model/", "optimizer/")):
                np.testing.assert_allclose(a[key], b[key], rtol=1e-4, atol=1e-5, err_msg=key)


def test_eval_and_sample_commands(tmp_path):
    run = tmp_path / "run"
    assert cli("train", str(SHEEP), "--out", str(run), "--steps", "5", *TINY_ARGS).returncode == 0
    for name in ("hparams.json", "dataset.json", "log.csv", "model.keras", "samples.svg"):
        assert (run / name).exists(), name
    for name in ("status.json", "best.json"):  # the library's version, beside the model it wrote
        assert json.loads((run / name).read_text())["sketch_model_version"] == sketch_model.__version__
    header = (run / "log.csv").read_text().splitlines()[0].split(",")
    assert {"step", "loss", "L_R", "L_KL", "lr", "kl_weight"} <= set(header)
    out = cli("eval", str(run), str(SHEEP), "--split", "test", "--json")
    result = json.loads(out.stdout)
    assert result["n"] == 300 and np.isfinite(result["L_R"]) and result["L_KL"] >= 0.2
    drawings = tmp_path / "s.json"
    assert cli("sample", str(run), "--n", "3", "--temperature", "0.5", "--seed", "1",
               "--out", str(drawings)).returncode == 0
    assert len(json.loads(drawings.read_text())) == 3
    bad = cli("train", str(SHEEP), "--out", str(tmp_path / "x"), "--set", "dec_model=gru")
    assert bad.returncode == 2 and "dec_model must be lstm, layer_norm or hyper" in bad.stderr


def test_a_run_from_a_model_teaches_its_encoder_and_keeps_its_decoder(tmp_path):
    """train --from: the new run takes the model's hparams (with --set on top), weights, scale
    factor and step; with train_encoder_only its saved decoder, initial-state and head weights
    are the model's, its encoder's are not."""
    source = tmp_path / "source"
    assert cli("train", str(SHEEP), "--out", str(source), "--steps", "5", *TINY_ARGS).returncode == 0
    info = json.loads((source / "dataset.json").read_text())
    (source / "dataset.json").write_text(json.dumps({**info, "scale_factor": 20.0}))
    run = tmp_path / "run"
    done = cli("train", str(SHEEP), "--out", str(run), "--from", str(source), "--steps", "8",
               "--set", "encode_prefix_prob=0.5", "--set", "train_encoder_only=true")
    assert done.returncode == 0, done.stderr
    assert f"starting from {source} at its step 5" in done.stdout
    assert _log_steps(run) == [6, 7, 8]
    assert json.loads((run / "dataset.json").read_text())["scale_factor"] == 20.0
    hps = HParams.load(run / "hparams.json")
    assert hps == HParams.load(source / "hparams.json").replace(
        encode_prefix_prob=0.5, train_encoder_only=True, num_steps=8)
    assert (run / "samples.svg").exists()
    before = sketch_model.load_model(source).weights.arrays
    after = sketch_model.load_model(run).weights.arrays
    for name, value in after.items():
        same = np.array_equal(before[name], value)
        assert same == name.startswith(("decoder/", "initial_state/", "mixture_head/")), name


def test_a_run_from_a_model_keeps_its_architecture_and_needs_one_of_ours(tmp_path):
    source = tmp_path / "source"
    assert cli("train", str(SHEEP), "--out", str(source), "--steps", "1", *TINY_ARGS).returncode == 0
    wider = cli("train", str(SHEEP), "--out", str(tmp_path / "a"), "--from", str(source),
                "--set", "dec_rnn_size=64")
    assert wider.returncode == 2 and "change the architecture" in wider.stderr
    google = cli("train", str(SHEEP), "--out", str(tmp_path / "b"), "--from",
                 str(ROOT / "assets" / "models" / "google_sheep"))
    assert google.returncode == 2 and "no model.keras" in google.stderr
    assert not (tmp_path / "b").exists()


def test_dequantize_reaches_the_batcher_in_model_units_and_is_never_negative(tmp_path):
    hps = tiny_hparams(dequantize=1.0)
    batcher, _, factor = _prepare_data(tmp_path, [str(SHEEP)], hps, False, lambda _: None)
    assert factor == pytest.approx(18.5198, abs=1e-4)
    assert batcher.dequantize_width == pytest.approx(1.0 / factor)
    with pytest.raises(ValueError, match="dequantize"):
        HParams().with_overrides(["dequantize=-0.5"])
