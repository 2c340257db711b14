"""Agreement of an exported artefact with the Keras model."""

from __future__ import annotations

import dataclasses

import numpy as np


class ExportParityError(AssertionError):
    """An artefact's output is further from the Keras model than its tolerance."""


@dataclasses.dataclass(frozen=True)
class Parity:
    max_abs_logit_diff: float
    argmax_agreement: float  # fraction of pixels with the same arg-max label

    def __str__(self) -> str:
        agreement = 100 * self.argmax_agreement
        return f"max|dlogit| {self.max_abs_logit_diff:.2e}, arg-max agreement {agreement:.3f}%"


def parity(reference: np.ndarray, candidate: np.ndarray) -> Parity:
    if reference.shape != candidate.shape:
        raise ExportParityError(f"output shape {candidate.shape}, Keras gives {reference.shape}")
    diff = float(np.max(np.abs(reference.astype(np.float64) - candidate)))
    agree = float(np.mean(reference.argmax(-1) == candidate.argmax(-1)))
    return Parity(diff, agree)


def check(name: str, result: Parity, min_agreement: float) -> Parity:
    """Raises ExportParityError if the arg-max agreement is below `min_agreement`."""
    if not result.argmax_agreement >= min_agreement:
        raise ExportParityError(
            f"{name}: {result}; needs at least {100 * min_agreement:.1f}% agreement with "
            "Keras. The conversion changed the model's output: check for unsupported layers, "
            "or export at float precision."
        )
    return result
