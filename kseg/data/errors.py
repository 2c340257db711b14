"""Errors of the dataset readers: each says what is wrong and what to do."""

from __future__ import annotations

from kseg.errors import UserError


class DatasetLayoutError(UserError, FileNotFoundError):
    """A dataset folder is missing or incomplete; the message shows the expected layout."""

    def __init__(self, dataset: str, problem: str, layout: str, source: str):
        super().__init__(
            f"{dataset}: {problem}\n\nExpected layout:\n{layout.rstrip()}\n\n"
            f"Where the data comes from: {source}"
        )


class CorruptFileError(UserError, ValueError):
    """Files that cannot be read, or an image and label of different sizes, listed by name,
    with `skip`, what leaves them out. A class list's (`skippable=False`) cannot be left
    out: its lines number the classes."""

    def __init__(
        self,
        dataset: str,
        problems: list[str],
        skippable: bool = True,
        skip: str = "on_bad='skip' (--skip-bad-files)",
    ):
        shown = "\n".join(f"  {p}" for p in problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        if skippable:
            super().__init__(
                f"{dataset}: {len(problems)} bad file(s):\n{shown}{more}\nFix or remove them, "
                f"or pass {skip} to leave them out."
            )
        else:
            super().__init__(
                f"{dataset}:\n{shown}{more}\nFix it: its lines give the classes their "
                "indices, so none can be left out."
            )
