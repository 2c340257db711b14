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
