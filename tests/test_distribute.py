"""Tests of sketch_model.distribute: strategies, the chief rule, and data-parallel training that
matches single-device training on real sheep sketches.

The replica runs need TensorFlow configured at process start (two logical CPUs, or a
TF_CONFIG cluster), so they run this file as a script in fresh processes; the pytest process
only checks the parts that need no replicas.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
SHEEP = ROOT / "assets" / "data" / "aaron_sheep.npz"
STEPS = 3
SGD_RATE = 0.1
LOSS_TOLERANCE = 1e-5  # absolute, on losses of about 2
WEIGHT_TOLERANCE = 1e-6  # absolute; one Adam step moves a weight by up to 1e-3
RUN_SECONDS = 300


def tiny_hparams():
    from sketch_model.config import HParams

    return HParams(dec_rnn_size=32, enc_rnn_size=16, z_size=8, num_mixture=3, batch_size=8,
                   use_recurrent_dropout=False)


# --- what runs in the fresh processes ---------------------------------------------------------


def sheep_batches(hps, nan_row: int | None = None) -> list[dict[str, np.ndarray]]:
    """STEPS batches of real sheep, padded to one length (one trace), with fixed z noise; with
    `nan_row`, the second batch's noise is NaN in that row, so its gradients are not finite."""
    from sketch_model import datasets

    train = datasets.read_npz(SHEEP)["train"][:STEPS * hps.batch_size]
    train = datasets.normalize(train, datasets.scale_factor(train))
    length = max(len(s) for s in train) + 1
    rng = np.random.default_rng(1)
    batches = []
    for step in range(STEPS):
        chosen = train[step * hps.batch_size:(step + 1) * hps.batch_size]
        strokes, lengths = datasets.pad_batch(chosen, length)
        eps = rng.standard_normal((hps.batch_size, hps.z_size)).astype(np.float32)
        batches.append({"strokes": strokes, "lengths": lengths, "eps": eps})
    if nan_row is not None:
        batches[1]["eps"][nan_row] = np.nan
    return batches


def train_steps(strategy, batches, sgd: bool = False) -> tuple[list[dict], list[np.ndarray]]:
    """Train a fresh tiny model on `batches` under `strategy`: the step logs and final weights."""
    import keras
    from keras import ops

    from sketch_model.distribute import build_replicated_model, shard_batch

    model = build_replicated_model(tiny_hparams(), strategy)
    if sgd:  # plain SGD shows a wrongly scaled gradient that Adam's normalisation hides
        with strategy.scope():
            model.compile(optimizer=keras.optimizers.SGD(SGD_RATE))
    logs = [model.train_on_batch(shard_batch(strategy, batch), return_dict=True)
            for batch in batches]
    return logs, [ops.convert_to_numpy(v) for v in model.trainable_variables]


def differences(one: tuple, two: tuple) -> dict:
    """Largest absolute differences of the logged losses and of the weights of two runs; a
    loss that is NaN in both (a skipped step) counts as equal, any other NaN as a difference."""
    (logs_one, weights_one), (logs_two, weights_two) = one, two
    losses_one = np.array([[log[k] for k in sorted(log)] for log in logs_one])
    losses_two = np.array([[log[k] for k in sorted(log)] for log in logs_two])
    loss_gap = np.abs(losses_one - losses_two)
    loss_gap[np.isnan(losses_one) & np.isnan(losses_two)] = 0.0
    return {"loss": float(np.max(loss_gap)),
            "weights": float(np.max([np.max(np.abs(a - b))
                                     for a, b in zip(weights_one, weights_two)])),
            "finite": bool(all(np.isfinite(w).all() for w in weights_two)),
            "losses_one": [log["loss"] for log in logs_one],
            "losses_two": [log["loss"] for log in logs_two]}


def compare_replicas() -> dict:
    """One device against two logical CPUs, on the same global batches."""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
    from sketch_model.distribute import make_strategy

    single, mirrored = make_strategy(None), make_strategy("mirrored", ["/cpu:0", "/cpu:1"])
    assert mirrored.num_replicas_in_sync == 2
    hps = tiny_hparams()
    report = {}
    for name, batches, sgd in (("adam", sheep_batches(hps), False),
                               ("sgd", sheep_batches(hps)[:1], True),
                               # row 6 is in the second replica's half of the batch
                               ("nan_on_one_replica", sheep_batches(hps, nan_row=6), False)):
        report[name] = differences(train_steps(single, batches, sgd),
                                   train_steps(mirrored, batches, sgd))
    return report


def run_worker(out: Path) -> None:
    """One worker of a TF_CONFIG cluster: train, then save the weights and the step logs."""
    from sketch_model.distribute import is_chief, make_strategy

    strategy = make_strategy("multiworker")
    logs, weights = train_steps(strategy, sheep_batches(tiny_hparams()))
    np.savez(out.with_suffix(".npz"), *weights)
    out.write_text(json.dumps({"replicas": strategy.num_replicas_in_sync,
                               "chief": is_chief(strategy), "logs": logs}))


def run_single(out: Path) -> None:
    """The single-device reference of run_worker."""
    from sketch_model.distribute import make_strategy

    logs, weights = train_steps(make_strategy(None), sheep_batches(tiny_hparams()))
    np.savez(out.with_suffix(".npz"), *weights)
    out.write_text(json.dumps({"logs": logs}))


# --- the pytest side ----------------------------------------------------------------------------


def script_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "TF_CONFIG"}
    env.update(PYTHONPATH=str(ROOT), KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3", **extra)
    return env


def run_script(*args: str) -> dict:
    """Run this file as a script in a fresh process; its last stdout line is JSON."""
    done = subprocess.run([sys.executable, __file__, *args], cwd=ROOT, env=script_env(),
                          capture_output=True, text=True, timeout=RUN_SECONDS)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def replicas() -> dict:
    return run_script("replicas")


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_none_is_the_default_strategy_and_its_process_is_chief():
    import tensorflow as tf

    from sketch_model.distribute import is_chief, make_strategy

    strategy = make_strategy(None)
    assert strategy is tf.distribute.get_strategy() is make_strategy("none")
    assert is_chief(strategy) and is_chief()


def test_unknown_strategy_and_misplaced_devices_are_refused():
    from sketch_model.distribute import make_strategy
    from sketch_model.errors import TrainingError

    with pytest.raises(TrainingError, match="unknown distribution strategy 'horovod'"):
        make_strategy("horovod")
    with pytest.raises(TrainingError, match="only for the mirrored strategy"):
        make_strategy("none", ["/gpu:0"])
    with pytest.raises(TrainingError, match="this host has no device /gpu:7"):
        make_strategy("mirrored", ["/cpu:0", "/gpu:7"])
    with pytest.raises(TrainingError, match="'gpu zero' is not a device name"):
        make_strategy("mirrored", ["gpu zero"])


@pytest.mark.parametrize("tf_config, message", [
    (None, "needs the TF_CONFIG environment variable"),
    ("{not json", "not valid JSON"),
    ('{"task": {"type": "worker", "index": 0}}', "needs a \"cluster\""),
    ('{"cluster": {"worker": []}, "task": {"type": "worker", "index": 0}}', "needs a \"cluster\""),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "ps", "index": 0}}', "must be one of"),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 1}}',
     "index 1 is not one of the 1 worker"),
])
def test_multiworker_refuses_a_bad_tf_config(monkeypatch, tf_config, message):
    from sketch_model.distribute import make_strategy
    from sketch_model.errors import TrainingError

    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(TrainingError, match=message):
        make_strategy("multiworker")


@pytest.mark.parametrize("task_type, task_id, jobs, chief", [
    (None, None, [], True),
    ("worker", 0, ["worker"], True),
    ("worker", 1, ["worker"], False),
    ("chief", 0, ["chief", "worker"], True),
    ("worker", 0, ["chief", "worker"], False),
])
def test_chief_rule(task_type, task_id, jobs, chief):
    from sketch_model.distribute import is_chief_task

    assert is_chief_task(task_type, task_id, jobs) is chief


def test_batches_must_split_evenly_over_replicas():
    from sketch_model.distribute import build_replicated_model, shard_batch
    from sketch_model.errors import TrainingError

    three = types.SimpleNamespace(num_replicas_in_sync=3)
    with pytest.raises(TrainingError, match="batch_size=8 must be a multiple of the 3 replicas"):
        build_replicated_model(tiny_hparams(), three)
    with pytest.raises(TrainingError, match="batch of 8 cannot be split evenly over 3"):
        shard_batch(three, {"strokes": np.zeros((8, 4, 5)), "lengths": np.zeros(8)})
    batch = {"lengths": np.arange(8)}
    assert shard_batch(types.SimpleNamespace(num_replicas_in_sync=1), batch) is batch


def test_local_copy_holds_the_same_weights():
    from sketch_model.distribute import local_copy
    from sketch_model.model import build_model

    model = build_model(tiny_hparams())
    copy = local_copy(model)
    assert copy is not model
    for a, b in zip(model.get_weights(), copy.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert local_copy(model, into=copy) is copy


def test_two_replicas_match_one(replicas):
    for name in ("adam", "sgd"):
        result = replicas[name]
        assert result["loss"] < LOSS_TOLERANCE, (name, result)
        assert result["weights"] < WEIGHT_TOLERANCE, (name, result)


def test_a_non_finite_gradient_on_one_replica_skips_the_step_on_all(replicas):
    result = replicas["nan_on_one_replica"]
    assert result["finite"], result
    assert result["weights"] < WEIGHT_TOLERANCE, result


def test_two_workers_train_like_one_device(tmp_path):
    """A 2-worker MultiWorkerMirroredStrategy cluster on 127.0.0.1, one CPU replica each."""
    hosts = [f"127.0.0.1:{port}" for port in free_ports(2)]
    outs = [tmp_path / f"worker{i}.json" for i in range(2)]
    workers = []
    try:
        for i, out in enumerate(outs):
            config = {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": i}}
            workers.append(subprocess.Popen(
                [sys.executable, __file__, "worker", str(out)], cwd=ROOT,
                env=script_env(TF_CONFIG=json.dumps(config)),
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
        errors = [w.communicate(timeout=RUN_SECONDS)[1] for w in workers]
    finally:
        for w in workers:
            w.kill()  # a worker whose peer died waits forever in a collective
    assert [w.returncode for w in workers] == [0, 0], [e[-3000:] for e in errors]
    reference = run_script("single", str(tmp_path / "single.json"))
    reports = [json.loads(out.read_text()) for out in outs]
    assert [r["replicas"] for r in reports] == [2, 2]
    assert [r["chief"] for r in reports] == [True, False]
    losses = [step["loss"] for step in reports[0]["logs"]]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    single = np.load(tmp_path / "single.npz")
    for out in outs:
        assert out.with_suffix(".npz").exists()
        weights = np.load(out.with_suffix(".npz"))
        gap = np.max([np.max(np.abs(weights[k] - single[k])) for k in single.files])
        assert gap < WEIGHT_TOLERANCE
    for report in reports:
        for mine, theirs in zip(report["logs"], reference["logs"]):
            assert abs(mine["loss"] - theirs["loss"]) < LOSS_TOLERANCE


TINY_TRAIN = ["--set=dec_rnn_size=32", "--set=enc_rnn_size=16", "--set=z_size=8",
              "--set=num_mixture=3", "--set=batch_size=8", "--set=save_every=2"]


def start_cluster(outs: list[Path], steps: int) -> list[subprocess.Popen]:
    """`python -m sketch_model train --distribute multiworker` on 2 workers on 127.0.0.1, worker
    i writing into outs[i] (the same directory for both, as on a shared filesystem)."""
    hosts = [f"127.0.0.1:{port}" for port in free_ports(2)]
    workers = []
    for i, out in enumerate(outs):
        config = {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": i}}
        workers.append(subprocess.Popen(
            [sys.executable, "-m", "sketch_model", "train", str(SHEEP), "--out", str(out),
             "--steps", str(steps), "--distribute", "multiworker", *TINY_TRAIN],
            cwd=ROOT, env=script_env(TF_CONFIG=json.dumps(config)),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    return workers


def finish(workers: list[subprocess.Popen]) -> list[str]:
    """Each worker's output, once all have exited (killed after RUN_SECONDS)."""
    try:
        return [w.communicate(timeout=RUN_SECONDS)[0] for w in workers]
    finally:
        for w in workers:
            w.kill()


def logged_steps(run: Path) -> list[int]:
    """The steps of the complete rows of the run's log.csv."""
    if not (run / "log.csv").exists():
        return []
    with open(run / "log.csv") as f:
        return [int(line.split(",")[0]) for line in f.readlines()[1:] if line.endswith("\n")]


def test_the_train_command_on_two_workers_trains_resumes_and_stops_together(tmp_path):
    run = tmp_path / "run"
    errors = finish(start_cluster([run, run], 4))
    assert errors and "finished at step 4" in errors[0], errors[0][-2000:]
    errors = finish(start_cluster([run, run], 6))
    assert f"resuming {run} from step 4 of 6" in errors[0] and "finished at step 6" in errors[0]
    assert logged_steps(run) == [1, 2, 3, 4, 5, 6]  # only the chief wrote, each step once
    # A stop sent to one worker (here not the chief) stops both at the same step, cleanly.
    workers = start_cluster([run, run], 500)
    while max(logged_steps(run), default=0) < 9:
        assert all(w.poll() is None for w in workers), finish(workers)
        time.sleep(0.5)
    workers[1].send_signal(signal.SIGTERM)
    errors = finish(workers)
    assert [w.returncode for w in workers] == [0, 0], [e[-2000:] for e in errors]
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "stopped" and 9 <= status["step"] < 500
    with np.load(run / "checkpoint.npz") as checkpoint:
        assert int(checkpoint["step"]) == status["step"] == logged_steps(run)[-1]


def test_workers_that_cannot_see_the_chiefs_checkpoint_are_refused(tmp_path):
    """As when --out is not on a filesystem that every host sees: the chief resumes from its
    checkpoint, the other worker finds none. Both stop with the reason, rather than train apart."""
    run = tmp_path / "run"
    assert finish(start_cluster([run, run], 2))
    workers = start_cluster([run, tmp_path / "elsewhere"], 4)
    errors = finish(workers)
    assert [w.returncode for w in workers] == [2, 2]
    for error in errors:
        assert "start from different steps" in error and "shared filesystem" in error


def main(args: list[str]) -> None:
    if args[0] == "replicas":
        print(json.dumps(compare_replicas()))
    elif args[0] == "worker":
        run_worker(Path(args[1]))
        print(json.dumps({"done": True}))
    elif args[0] == "single":
        run_single(Path(args[1]))
        print(Path(args[1]).read_text())


if __name__ == "__main__":
    main(sys.argv[1:])
