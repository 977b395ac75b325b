"""Data-parallel training with TensorFlow's tf.distribute: one strategy per run, the model's
variables mirrored over its replicas, and each global batch split between them.

Every process (every worker, in multi-worker training) builds the same global batch, because
`datasets.Batcher` and `stream.StreamBatcher` depend only on the seed, the step and the
checkpointed state; `shard_batch` hands each replica its
contiguous part. Keras sums the replicas' gradients, so `SketchRNN.compute_loss` must divide its
batch-mean loss by the number of replicas in sync. Only the chief writes files.
"""

from __future__ import annotations

import functools
import json
import os

import numpy as np
import tensorflow as tf
from keras import ops

from .config import HParams
from .errors import TrainingError
from .model import SketchRNN, build_model

STRATEGIES = ("none", "mirrored", "multiworker")


def make_strategy(name: str | None, devices: list[str] | None = None) -> tf.distribute.Strategy:
    """The tf.distribute strategy called `name`: "none" (or None) for TensorFlow's default,
    "mirrored" for all GPUs of this host (or the given `devices`, e.g. ["/gpu:0", "/gpu:1"]),
    "multiworker" for several hosts, configured by the TF_CONFIG environment variable."""
    name = (name or "none").lower()
    if devices and name != "mirrored":
        raise TrainingError(f"a device list is only for the mirrored strategy, not {name!r}")
    if name == "none":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        if devices:
            _check_devices(devices)
        return tf.distribute.MirroredStrategy(devices)
    if name == "multiworker":
        _check_tf_config()
        try:
            return tf.distribute.MultiWorkerMirroredStrategy()
        except RuntimeError as err:  # e.g. TensorFlow already ran an op in this process
            raise TrainingError(f"cannot start multi-worker training: {err}; the strategy must be "
                                "made before anything else uses TensorFlow") from None
    raise TrainingError(f"unknown distribution strategy {name!r}; "
                        f"choose one of {', '.join(STRATEGIES)}")


def _check_devices(devices: list[str]) -> None:
    """Refuse device names this host lacks, which MirroredStrategy would accept until it fails."""
    def key(name: str) -> tuple[str | None, int | None]:
        spec = tf.DeviceSpec.from_string(name)
        return spec.device_type, spec.device_index

    present = [device.name for device in tf.config.list_logical_devices()]
    for name in devices:
        try:
            wanted = key(name)
        except ValueError:
            raise TrainingError(f"{name!r} is not a device name such as /gpu:0") from None
        if wanted not in map(key, present):
            raise TrainingError(f"this host has no device {name}; it has {', '.join(present)}")


def _check_tf_config() -> None:
    """Refuse a missing or malformed TF_CONFIG before TensorFlow waits for a cluster that
    is not there."""
    example = ('{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
               '"task": {"type": "worker", "index": 0}}')
    text = os.environ.get("TF_CONFIG", "").strip()
    if not text:
        raise TrainingError("multi-worker training needs the TF_CONFIG environment variable, "
                            f"e.g. {example}")
    try:
        config = json.loads(text)
    except ValueError as err:
        raise TrainingError(f"TF_CONFIG is not valid JSON ({err}); expected e.g. {example}") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not all(isinstance(hosts, list) and hosts
                                                for hosts in cluster.values()):
        raise TrainingError('TF_CONFIG needs a "cluster" of jobs, each a list of host:port; '
                            f"e.g. {example}")
    if not isinstance(task, dict) or task.get("type") not in cluster:
        raise TrainingError(f"TF_CONFIG's \"task\" type must be one of the cluster's jobs "
                            f"{sorted(cluster)}")
    index = task.get("index")
    if not isinstance(index, int) or not 0 <= index < len(cluster[task["type"]]):
        raise TrainingError(f"TF_CONFIG's task index {index!r} is not one of the "
                            f"{len(cluster[task['type']])} {task['type']} task(s)")


def is_chief(strategy: tf.distribute.Strategy | None = None) -> bool:
    """Whether this process writes the run's files: always, except in multi-worker training,
    where only the chief does (the "chief" task, or worker 0 when the cluster has no chief)."""
    strategy = strategy or tf.distribute.get_strategy()
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    resolver = strategy.cluster_resolver
    return is_chief_task(resolver.task_type, resolver.task_id, resolver.cluster_spec().jobs)


def is_chief_task(task_type: str | None, task_id: int | None, jobs: list[str]) -> bool:
    """The chief rule for one task of a cluster with the given job names."""
    if task_type is None:  # a strategy with no cluster: this process is all there is
        return True
    if task_type == "chief":
        return True
    return task_type == "worker" and task_id == 0 and "chief" not in jobs


def sum_over_workers(strategy: tf.distribute.Strategy, values: list[float]) -> np.ndarray:
    """`values` summed element-wise over the workers of a multi-worker strategy (one all-reduce,
    which every worker must make at the same point); `values` themselves otherwise."""
    local = np.asarray(values, dtype=np.float64)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return local
    total = _all_reduce_sum(strategy)(tf.constant(local))
    return total.numpy() / len(strategy.extended.worker_devices)  # each local replica added it


@functools.cache
def _all_reduce_sum(strategy: tf.distribute.Strategy):
    """A compiled sum over all replicas of `strategy` (a collective run eagerly is slow)."""
    @tf.function
    def total(values: tf.Tensor) -> tf.Tensor:
        per_replica = strategy.run(tf.identity, args=(values,))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
    return total


def check_same_step(strategy: tf.distribute.Strategy, step: int) -> None:
    """Refuse, on every worker alike, to train when the workers start from different steps:
    a worker that could not read the chief's checkpoint (--out not on a filesystem that every
    host sees) would otherwise train other weights and wait forever at the end."""
    count, total, squares = sum_over_workers(strategy, [1.0, step, float(step) ** 2])
    if count * squares != total * total:  # equal only when every worker's step is the same
        raise TrainingError(
            f"the {int(count)} workers start from different steps (this one from {step}): each "
            "worker resumes from the checkpoint in its --out, so --out must be a directory that "
            "every host sees (a shared filesystem), and all must name the same one")


def build_replicated_model(hps: HParams, strategy: tf.distribute.Strategy) -> SketchRNN:
    """`build_model(hps)` with its variables (and its optimizer's) mirrored over `strategy`'s
    replicas. Restore a checkpoint into it inside `strategy.scope()` too."""
    replicas = strategy.num_replicas_in_sync
    if hps.batch_size % replicas:
        raise TrainingError(f"batch_size={hps.batch_size} must be a multiple of the {replicas} "
                            "replicas, which each train on an equal part of every batch")
    with strategy.scope():
        model = build_model(hps)
        # Now, not when a checkpoint is loaded: in multi-worker training, creating variables
        # is a collective, which every worker must make in the same order, resuming or not.
        model.optimizer.build(model.trainable_variables)
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        _give_logs_a_replica_axis(model)
    return model


def _give_logs_a_replica_axis(model: SketchRNN) -> None:
    # Keras 3 reduces multi-worker logs with strategy.reduce("MEAN", value, axis=0), which
    # fails on the scalar logs every model returns ("Invalid reduction dimension 0 for input
    # with 0 dimensions", tensorflow/tensorflow#72388). As (1,) vectors they reduce to the
    # mean over the replicas, a scalar again.
    train_step = model.train_step
    model.train_step = lambda data: {key: ops.reshape(value, (1,))
                                     for key, value in train_step(data).items()}


def shard_batch(strategy: tf.distribute.Strategy, batch: dict[str, np.ndarray]):
    """The global `batch` (a dict of arrays of equal length) split into one contiguous, equal
    part per replica, for `model.train_on_batch`. Unchanged with a single replica, where a
    strategy would otherwise give every replica the whole batch."""
    replicas = strategy.num_replicas_in_sync
    if replicas == 1:
        return batch
    size = len(next(iter(batch.values())))
    if size % replicas:
        raise TrainingError(f"a batch of {size} cannot be split evenly over {replicas} replicas")
    share = size // replicas

    def part(context: tf.distribute.experimental.ValueContext) -> dict[str, np.ndarray]:
        start = context.replica_id_in_sync_group * share
        return {key: value[start:start + share] for key, value in batch.items()}

    return strategy.experimental_distribute_values_from_function(part)


def local_copy(model: SketchRNN, into: SketchRNN | None = None) -> SketchRNN:
    """The current weights of a replicated `model` in a model outside any strategy (`into`, or
    a new one), for validation and samples: `predict_on_batch` under a strategy would run the
    whole batch on every replica. Call it outside `strategy.scope()`."""
    target = into if into is not None else SketchRNN(model.hps)
    target.set_weights(model.get_weights())
    return target
