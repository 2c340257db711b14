"""Registry entries of the ContextNet variants (Table 4 of Poudel et al. 2018)."""

from __future__ import annotations

import functools

from kseg.models.contextnet.contextnet import ContextNet
from kseg.models.contextnet.contextnet_presets import CONTEXTNET_VARIANTS
from kseg.models.registry import register_model


def _factory(variant: str, **kwargs) -> ContextNet:
    return ContextNet(variant=variant, **kwargs)


for _variant in CONTEXTNET_VARIANTS:
    register_model(f"contextnet_{_variant}")(functools.partial(_factory, _variant))
