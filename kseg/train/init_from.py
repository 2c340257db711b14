"""Fine-tuning: initialise a model from another model's weights where they fit."""

from __future__ import annotations

import keras


def init_from(model: keras.Model, source: str | keras.Model, verbose: bool = True) -> dict:
    """Copies every weight of `source` (a kseg `.keras` file or a model) whose path (layer
    and variable name) and shape match one of `model`'s; the rest keep their fresh
    initialisation, e.g. a 19-class head fine-tuned to 5 classes.

    Returns {"loaded": [paths], "shape_mismatch": [paths], "missing": [paths]} and, with
    `verbose`, prints it."""
    if isinstance(source, str):
        from kseg.models.loading import load_model

        name, source = source, load_model(source)
    else:
        name = source.name
    available = {w.path: w for w in source.weights}
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
    if verbose:
        total = len(model.weights)
        print(f"Initialised from {name}: {len(loaded)} of {total} weight tensors loaded")
        if mismatched:
            print(f"  kept fresh (shape differs): {', '.join(mismatched)}")
        if missing:
            shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
            print(f"  kept fresh (not in {name}): {shown}")
    if not loaded:
        from kseg.errors import UserError

        raise UserError(
            f"--init-from {name}: no weight matches the model by name and shape; was it "
            "trained with the same model family?"
        )
    return {"loaded": loaded, "shape_mismatch": mismatched, "missing": missing}
