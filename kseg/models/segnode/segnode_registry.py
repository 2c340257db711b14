"""Registry entries: SegNode and SegNode+OCR."""

from __future__ import annotations

from kseg.models.registry import register_model
from kseg.models.segnode.segnode import SegNode


@register_model("segnode")
def segnode(**kwargs) -> SegNode:
    return SegNode(**kwargs)


@register_model("segnode_ocr")
def segnode_ocr(**kwargs) -> SegNode:
    return SegNode(**{"ocr": True, **kwargs})
