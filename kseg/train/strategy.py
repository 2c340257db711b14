"""`tf.distribute` strategies by name, for `--strategy`."""

from __future__ import annotations

import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multiworker", "tpu")


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
