"""The command line every benchmark starts from."""

from __future__ import annotations

import argparse


def bench_parser(doc: str, **defaults: int) -> argparse.ArgumentParser:
    """A parser described by `doc`'s first line (the benchmark's module docstring), with an
    integer option for each of `defaults` (batch, height, width, runs, threads, at the
    benchmark's own defaults)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    for name, default in defaults.items():
        parser.add_argument(f"--{name}", type=int, default=default)
    return parser


def forwarded(args: argparse.Namespace, *names: str) -> list[str]:
    """`--name=value` for each of `names` that `args` sets (not None or empty): the same
    settings for a child process or a peer script."""
    return [
        f"--{name.replace('_', '-')}={getattr(args, name)}"
        for name in names
        if getattr(args, name) not in (None, "")
    ]
