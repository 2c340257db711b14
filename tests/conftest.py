import atexit
import fcntl
import gc
import os
import shutil
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# kseg first: it pauses the collector while TensorFlow imports
import kseg  # noqa: E402, F401

# isort: split
import keras  # noqa: E402
import pytest  # noqa: E402

# The imports' objects live as long as the worker: frozen, the collector's passes skip
# them, and with higher thresholds it passes less often over the graphs the tests leave
# (a little more memory for less time in the collector; bench/RESULTS.md, startup).
gc.freeze()
gc.set_threshold(50_000, 20, 20)

# What kseg keeps in the Keras cache (the record of decoded image files, labelme's embedded
# images) goes to a folder of the test process's own, not the user's ~/.keras.
os.environ["KERAS_HOME"] = tempfile.mkdtemp(prefix="kseg-tests-keras-")
atexit.register(shutil.rmtree, os.environ["KERAS_HOME"], ignore_errors=True)


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)
    yield
    # Names and global state afresh; without clear_session's gc.collect (0.3 s a test,
    # ~90 s of the suite): Python's own collector frees the graphs soon enough.
    keras.backend.clear_session(free_memory=False)


@pytest.fixture
def model_registry():
    """kseg's model registry, restored after the test: models a test registers do not
    leak into `list_models()` for the tests after it."""
    from kseg.models import registry

    saved = dict(registry._MODELS)
    yield registry
    registry._MODELS.clear()
    registry._MODELS.update(saved)


@pytest.fixture(scope="session")
def tensorflow_oom():
    """A callable raising TensorFlow's own out-of-memory error: a real one (a 1 TiB tensor
    its CPU allocator refuses), made once a worker, since the allocator retries for 10 s
    before it gives up, then raised anew on each call."""
    import tensorflow as tf

    try:
        tf.zeros((1 << 38,))
    except tf.errors.ResourceExhaustedError as real:
        error = real

    def exhausted(*args, **kwargs):
        raise type(error)(error.node_def, error.op, error.message)

    return exhausted


def built_once(tmp_path_factory, worker_id: str, name: str, build) -> str:
    """The folder `build(folder)` fills, built once for the whole test run: under
    pytest-xdist the first worker to need it builds it under a file lock and the others
    wait for it and share it (a trained run costs a minute; two workers would each pay)."""
    if worker_id == "master":
        folder = str(tmp_path_factory.mktemp(name))
        build(folder)
        return folder
    root = tmp_path_factory.getbasetemp().parent  # this run's folder, shared by the workers
    folder = root / name
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not (folder / ".built").exists():
            shutil.rmtree(folder, ignore_errors=True)  # a failed build's leftovers
            folder.mkdir()
            build(str(folder))
            (folder / ".built").touch()
    return str(folder)


@pytest.fixture(scope="session")
def demo_cityscapes(tmp_path_factory):
    """A tiny demo set (real digits on the real VOC photo) in the Cityscapes layout."""
    from kseg.data.demo_data import build_demo_cityscapes

    return build_demo_cityscapes(
        str(tmp_path_factory.mktemp("cityscapes")), train=8, val=4, height=64, width=128
    )


# Training flags of the recipe tests: two tiny steps an epoch on the demo set.
FAST = ["--steps-per-epoch", "2", "--batch-size", "2", "--crop", "64x128", "--verbose", "0",
        "--no-tensorboard", "--precise-bn-batches", "1"]  # fmt: skip


@pytest.fixture(scope="session")
def trained(demo_cityscapes, tmp_path_factory, worker_id):
    """One two-epoch ContextNet run on the demo set, shared by the tests that read it (a
    train step's graph takes ~15 s to trace)."""
    from kseg.recipes import cityscapes

    def build(folder):
        out = os.path.join(folder, "run")
        cityscapes.main(["train", "--data-dir", demo_cityscapes, "--out", out, "--epochs", "2",
                         *FAST])  # fmt: skip

    return os.path.join(built_once(tmp_path_factory, worker_id, "trained", build), "run")


def read_exported(path: str) -> list:
    """The `Artefact` list `artefacts` wrote to `exported.json`."""
    import json

    from kseg.export import Artefact, Parity

    with open(path) as f:
        rows = json.load(f)
    return [
        Artefact(**{**row, "parity": Parity(**row["parity"]) if row["parity"] else None,
                    "latency_s": {int(t): s for t, s in row["latency_s"].items()}})
        for row in rows
    ]  # fmt: skip


@pytest.fixture(scope="session")
def artefacts(trained, demo_cityscapes, tmp_path_factory, worker_id):
    """The trained demo model exported at the demo's 64x128 in every format and TFLite
    mode (with segmenter metadata), calibrated on the demo's training images and checked
    and scored on its validation images, with the bundle's labels.txt, segment.py,
    README.txt and per_class_iou.txt. "exported" is the `Artefact` list `export` returned,
    "images" and "labels_of_images" the validation images it checked on."""
    import dataclasses
    import json

    from kseg.data import Cityscapes
    from kseg.export import TFLITE_MODES, export
    from kseg.export.calibration import calibration_data
    from kseg.models.loading import load_model

    dataset = Cityscapes(demo_cityscapes)
    images, labels = calibration_data(dataset, "val", 8, 64, 128)

    def build(out):
        model = load_model(os.path.join(trained, "best.keras"))
        calibration, _ = calibration_data(dataset, "train", 4, 64, 128)
        exported = export(model, out, quantize=TFLITE_MODES, input_size=(64, 128),
                          images=calibration, eval_images=images, eval_labels=labels,
                          threads=(1,), class_names=Cityscapes.class_names,
                          keep_float="auto:2")  # fmt: skip
        with open(os.path.join(out, "exported.json"), "w") as f:
            json.dump([dataclasses.asdict(a) for a in exported], f)

    out = built_once(tmp_path_factory, worker_id, "export", build)
    return {
        "keras": os.path.join(trained, "best.keras"),
        "tflite": os.path.join(out, "contextnet_cn14_fp32.tflite"),
        "int8": os.path.join(out, "contextnet_cn14_int8.tflite"),
        "int8_io": os.path.join(out, "contextnet_cn14_int8_io.tflite"),
        "onnx": os.path.join(out, "contextnet_cn14.onnx"),
        "labels": os.path.join(out, "labels.txt"),
        "exported": read_exported(os.path.join(out, "exported.json")),
        "images": images,
        "labels_of_images": labels,
    }
