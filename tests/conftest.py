import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)
    yield
    keras.backend.clear_session()


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
def trained(demo_cityscapes, tmp_path_factory):
    """One two-epoch ContextNet run on the demo set, shared by the tests that read it (a
    train step's graph takes ~15 s to trace)."""
    from kseg.recipes import cityscapes

    out = str(tmp_path_factory.mktemp("trained") / "run")
    cityscapes.main(["train", "--data-dir", demo_cityscapes, "--out", out, "--epochs", "2", *FAST])
    return out


@pytest.fixture(scope="session")
def artefacts(trained, tmp_path_factory):
    """The trained demo model exported at the demo's 64x128: TFLite fp32 and int8 (with
    segmenter metadata), ONNX."""
    import os

    from kseg.data import Cityscapes
    from kseg.export import export
    from kseg.models.loading import load_model

    out = str(tmp_path_factory.mktemp("export"))
    model = load_model(os.path.join(trained, "best.keras"))
    export(model, out, formats=("tflite", "onnx"), quantize=("fp32", "int8"),
           input_size=(64, 128), threads=(2,), class_names=Cityscapes.class_names)  # fmt: skip
    return {
        "keras": os.path.join(trained, "best.keras"),
        "tflite": os.path.join(out, "contextnet_cn14_fp32.tflite"),
        "int8": os.path.join(out, "contextnet_cn14_int8.tflite"),
        "onnx": os.path.join(out, "contextnet_cn14.onnx"),
        "labels": os.path.join(out, "labels.txt"),
    }
