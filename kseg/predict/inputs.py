"""What `kseg.predict` reads: image files, folders (recursive), globs and videos.

The search itself is the standalone `segment.py`'s (`kseg.predict.standalone`); here its
mistakes become kseg's `UserError`.
"""

from __future__ import annotations

from kseg.errors import UserError
from kseg.predict import standalone


def expand_inputs(inputs: list[str], out: str | None = None) -> tuple[list[str], list[str]]:
    """(images, videos): files as given, folders searched recursively, globs expanded;
    each sorted, without repeats, and without kseg's own outputs in the output folder
    `out`. An input that matches nothing is a `UserError`."""
    try:
        return standalone.expand_inputs(inputs, out)
    except standalone.UsageError as e:
        raise UserError(str(e)) from None
