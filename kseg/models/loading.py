"""Loading a kseg model from a `.keras` file, with errors that name the file."""

from __future__ import annotations

import os
import zipfile

import keras

from kseg.errors import ModelFileError


def load_model(path: str, compile: bool = False) -> keras.Model:
    """The kseg model saved in `path` (a `.keras` file).

    Raises `ModelFileError` when the file is missing, is not a `.keras` archive (truncated
    or another format), cannot be rebuilt, or holds a model that is not kseg's."""
    if not os.path.isfile(path):
        raise ModelFileError(f"{path}: no such file; give a .keras file a kseg recipe wrote")
    if not path.endswith(".keras") or not zipfile.is_zipfile(path):
        raise ModelFileError(
            f"{path} is not a .keras model file (a zip archive Keras writes); it may be "
            "truncated or another format. Give a .keras file a kseg recipe wrote."
        )
    import kseg.models  # noqa: F401  (registers kseg's classes for deserialisation)
    from kseg.models.base import ImageModel

    try:
        model = keras.saving.load_model(path, compile=compile)
    except (ValueError, TypeError, KeyError, OSError, zipfile.BadZipFile) as e:
        raise ModelFileError(
            f"{path} could not be loaded as a kseg model ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:300]}). Is it a kseg .keras file, from this version?"
        ) from e
    if not isinstance(model, ImageModel):
        raise ModelFileError(
            f"{path} holds a {type(model).__name__}, not a kseg model; build and train one "
            "with kseg.models.create_model or a kseg recipe"
        )
    return model
