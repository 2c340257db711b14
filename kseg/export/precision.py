"""The model as export writes it: in float32, also when it was built for mixed precision.

Mixed precision (`--mixed-precision`, `keras.mixed_precision.set_global_policy`) is a
training setting: its layers compute in float16 or bfloat16 on float32 weights. A model
built under it traces a float16 graph, which TFLite's builtin ops do not take (its
converter wants float32 graphs and makes fp16 and int8 files from them) and which the
float artefacts' parity checks would hold against float16 rounding. `float32_model`
rebuilds such a model from its config with every dtype policy float32 and gives it the
same weights (which mixed precision keeps in float32).
"""

from __future__ import annotations

import keras


def computes_in_float32(model: keras.Model) -> bool:
    """Whether every layer of `model` (nested ones too) computes in float32 or in no
    floating type of its own."""
    return all(
        layer.compute_dtype not in ("float16", "bfloat16") for layer in model._flatten_layers()
    )


def float32_model(model: keras.Model) -> keras.Model:
    """`model` itself when it computes in float32 throughout; else the same model rebuilt
    in float32 (module docstring), with its weights."""
    if computes_in_float32(model):
        return model
    config = _float32_policies(keras.saving.serialize_keras_object(model))
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")  # for layers a model's constructor makes
    try:
        rebuilt = keras.saving.deserialize_keras_object(config)
    finally:
        keras.config.set_dtype_policy(previous)
    rebuilt.set_weights(model.get_weights())
    return rebuilt


def _float32_policies(config):
    """`config` with each mixed dtype policy in it (a "dtype" entry naming one, or a
    serialised `DTypePolicy`) replaced by float32."""
    if isinstance(config, list):
        return [_float32_policies(value) for value in config]
    if not isinstance(config, dict):
        return config
    if config.get("class_name") == "DTypePolicy" and _mixed(config.get("config", {}).get("name")):
        return {**config, "config": {**config["config"], "name": "float32"}}
    return {
        key: "float32" if key == "dtype" and _mixed(value) else _float32_policies(value)
        for key, value in config.items()
    }


def _mixed(name) -> bool:
    return isinstance(name, str) and name.startswith("mixed_")
