"""Fine-tuning: initialise a model from another model's weights where they fit (a kseg
model's, or a PyTorch checkpoint's that the model family can name)."""

from __future__ import annotations

import keras


def init_from(model: keras.Model, source: str | keras.Model, verbose: bool = True) -> dict:
    """Copies every weight of `source` whose path (layer and variable name) and shape match
    one of `model`'s; the rest keep their fresh initialisation, e.g. a 19-class head
    fine-tuned to 5 classes.

    `source` is a kseg `.keras` file or a model, or a PyTorch checkpoint (`.pth`, `.pt`,
    `.bin`, `.safetensors`) of a model family that knows its PyTorch names (the HRNets and
    SegNode: HRNet's ImageNet weights, timm's `hrnet_w*`, HRNet-Semantic-Segmentation's
    models).

    Returns {"loaded": [paths], "shape_mismatch": [paths], "missing": [paths], "unused":
    [what `source` holds that no weight of `model` has a place for: a PyTorch checkpoint's
    tensor names, a kseg model's weight paths]} and, with `verbose`, prints it (a model
    pre-trained on ImageNet reports its classification head unused)."""
    from kseg.models.torch_checkpoint import is_torch_checkpoint

    converted = None
    if isinstance(source, str) and is_torch_checkpoint(source):
        name = source
        converted, unused = torch_weights(model, source)
        available = {path: array for path, (_, array) in converted.items()}
    elif isinstance(source, str):
        from kseg.models.loading import load_model

        name = source
        available, unused = {w.path: w for w in load_model(source).weights}, []
    else:
        name = source.name
        available, unused = {w.path: w for w in source.weights}, []
    loaded, mismatched, missing = [], [], []
    for w in model.weights:
        found = available.get(w.path)
        if found is None:
            missing.append(w.path)
        elif tuple(found.shape) != tuple(w.shape):
            mismatched.append(f"{w.path} {tuple(found.shape)} -> {tuple(w.shape)}")
        else:
            w.assign(found)
            loaded.append(w.path)
    # and what has a kseg path that this model lacks
    left = sorted(available.keys() - {w.path for w in model.weights})
    unused += [converted[p][0] for p in left] if converted is not None else left
    if verbose:
        total = len(model.weights)
        print(f"Initialised from {name}: {len(loaded)} of {total} weight tensors loaded")
        if mismatched:
            print(f"  kept fresh (shape differs): {', '.join(mismatched)}")
        if missing:
            shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
            print(f"  kept fresh (not in {name}): {shown}")
        if unused:
            print(f"  not used ({len(unused)} tensors of {name}): {_modules(unused)}")
    if not loaded:
        from kseg.errors import UserError

        raise UserError(
            f"{name}: no weight matches {model.name}'s by name and shape; was it trained "
            "with the same model family?"
        )
    return {"loaded": loaded, "shape_mismatch": mismatched, "missing": missing, "unused": unused}


def load_trained(model: keras.Model, source: str) -> dict:
    """`init_from` for a trained model's weights: every weight of `model` must come from
    `source`; one that would stay fresh (an ImageNet checkpoint has no segmentation head)
    is a `UserError` naming it. Returns `init_from`'s report."""
    from kseg.errors import UserError

    report = init_from(model, source)
    fresh = report["missing"] + report["shape_mismatch"]
    if fresh:
        raise UserError(
            f"{source} leaves {len(fresh)} of {model.name}'s weights untrained ({fresh[0]}, "
            "...): give a checkpoint of the whole trained model, or train from this one with "
            "--init-from"
        )
    return report


# The constructor arguments of a saved model that fix how its weights compute, adopted by
# a model initialised from it (`source_arguments`).
SOURCE_SETTINGS = ("convention", "align_corners")


def source_arguments(model_name: str, source: str | None) -> dict:
    """The arguments that build the registered model `model_name` to compute as the
    weights of `source` were trained, with a line saying so; else none.

    - A PyTorch checkpoint: its family's `torch_arguments` for the checkpoint's tensor
      names (as PyTorch computed it), those `model_name` takes.
    - A kseg `.keras` file whose model was built with the `SOURCE_SETTINGS` (the HRNets'
      `convention`, `kseg.layers.conv.CONVENTIONS`, and HRNetV2's `align_corners`) that
      `model_name` takes too: those, so that a model pre-trained as PyTorch computes (an
      ImageNet run started from HRNet's weights) is not fine-tuned with other padding,
      input scaling or upsampling.
    """
    import inspect

    from kseg.models.registry import model_class
    from kseg.models.torch_checkpoint import is_torch_checkpoint, read_state_dict

    if not source:
        return {}
    family = model_class(model_name)
    takes = inspect.signature(family).parameters
    if is_torch_checkpoint(source):
        if not hasattr(family, "torch_arguments"):
            return {}
        arguments = family.torch_arguments(list(read_state_dict(source)))
        arguments = {k: v for k, v in arguments.items() if k in takes}
        shown = ", ".join(f"{k}={v!r}" for k, v in arguments.items())
        print(f"Built as PyTorch computes it ({shown}), as {source}'s weights were trained")
        return arguments
    saved = saved_config(source)
    arguments = {k: saved[k] for k in SOURCE_SETTINGS if k in saved and k in takes}
    changed = {k: v for k, v in arguments.items() if v != takes[k].default}
    if changed:
        shown = ", ".join(f"{k}={v!r}" for k, v in changed.items())
        print(f"Built with {shown}, as {source}'s model was")
    return arguments


def saved_config(path: str) -> dict:
    """The constructor arguments of the model in the `.keras` file `path` (its
    config.json; {} for anything else), read without building the model."""
    import json
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read("config.json")).get("config", {})
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return {}


def torch_weights(model: keras.Model, path: str) -> tuple[dict, list[str]]:
    """A PyTorch checkpoint's tensors as {kseg weight path: (name, array)}, and the names
    of those the model's family has no layer for."""
    from kseg.errors import UserError
    from kseg.models.torch_checkpoint import read_state_dict

    convert = getattr(model, "torch_weights", None)
    if convert is None:
        raise UserError(
            f"{path}: kseg reads PyTorch checkpoints into the HRNets (--model hrnetv2_w48, "
            f"residual_hrnet or segnode), not into {model.name}, which takes kseg .keras files "
            "(DeepLab's Xception-65 ImageNet weights go through backbone_weights)"
        )
    return convert(read_state_dict(path))


def _modules(names: list[str]) -> str:
    """Tensor names summarised by module, with a list's index: `classifier (2), stage4.0
    (112), ...`; kseg weight paths by their layer name's first two parts: `cls_incre0
    (25), ...`."""
    counts = {}
    for n in sorted(names):
        if "/" in n:  # a kseg weight path, layer/variable
            key = "_".join(n.split("/")[0].split("_")[:2])
        else:
            parts = n.removeprefix("model.").split(".")
            key = ".".join(parts[:2]) if len(parts) > 2 and parts[1].isdigit() else parts[0]
        counts[key] = counts.get(key, 0) + 1
    shown = [f"{k} ({v})" for k, v in list(counts.items())[:8]]
    return ", ".join(shown) + (" ..." if len(counts) > 8 else "")
