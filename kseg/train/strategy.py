"""`tf.distribute` strategies by name, for `--strategy`, and batch norm over all their
replicas, for `--sync-bn`."""

from __future__ import annotations

import keras
import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multiworker", "tpu")
SYNC_BN = ("auto", "on", "off")


def split_cpu(devices: int) -> None:
    """Makes `devices` logical CPU devices (to try `mirrored` on one machine without
    GPUs). Must run before TensorFlow initialises its devices."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(devices)]
    )


def get_strategy(name: str) -> tf.distribute.Strategy:
    """default: one device; mirrored: every local GPU, or every logical CPU when there is no
    GPU; multiworker: the cluster in TF_CONFIG; tpu: the TPU named by TPU_NAME (or local)."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus or tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True unless `strategy` is multi-worker and this process is not its chief (the task
    "chief", or worker 0 of a cluster without one)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def synchronize_batch_norm(model: keras.Model, setting: str, replicas: int) -> tuple[int, int]:
    """Sets, in place, whether the batch norms of `model` compute their training statistics
    over the global batch, all `replicas` together (Keras' `synchronized`: SyncBN), or over
    each replica's share. `setting` is `--sync-bn`'s: "on", "off", or "auto", on with more
    than one replica. With it, a batch of 16 over 4 GPUs normalises as the papers' batch of
    16 on one GPU did (or as HRNet's SyncBN did); without, over 4 images each.

    Batch norms inside an ODE block's derivative stay per replica: they run at every
    evaluation of the solve, within the solver's loop, where an adaptive solver takes as
    many steps on each replica as its share needs, so the replicas would not meet at the
    same all-reduces. Returns (synchronised, left per replica in ODE blocks)."""
    from kseg.ode.block import ODEBlock
    from kseg.train.precise_bn import batch_norm_layers

    if setting not in SYNC_BN:
        raise ValueError(f"sync_bn must be one of {', '.join(SYNC_BN)}, got {setting!r}")
    on = setting == "on" or (setting == "auto" and replicas > 1)
    in_blocks = {
        id(layer)
        for block in model._flatten_layers(include_self=False)
        if isinstance(block, ODEBlock)
        for layer in block._flatten_layers(include_self=False)
    }
    synced = left = 0
    for layer in batch_norm_layers(model):
        layer.synchronized = on and id(layer) not in in_blocks  # read when a step is traced
        synced, left = synced + layer.synchronized, left + (on and id(layer) in in_blocks)
    return synced, left
