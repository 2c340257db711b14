"""User errors, and the start every command line shares: its parser and the wrapper that
reports a user error.

A `UserError` is a mistake in what a user gave kseg (a folder, a file, a name, an argument),
as opposed to a bug. Its message names the culprit and what to do. The command lines
(`python -m kseg.recipes.<dataset>`, `python -m kseg.export`) print it as one
`error: ...` message on stderr and exit with status 2; `--debug` shows the traceback.
A full disk (`disk_full`) and memory that a run's settings exceed (`out_of_memory`), which
are no bugs either, are reported the same way. Every other exception is a bug and keeps
its traceback.
"""

from __future__ import annotations

import argparse
import errno
import math
import re
import signal
import sys
import threading
from collections.abc import Callable


class UserError(Exception):
    """A mistake in the user's input, reported without a traceback on the command line."""


class UnknownNameError(UserError, ValueError):
    """An unknown model, solver, dataset or preset name; the message lists the known ones."""


class SolverSettingError(UserError, ValueError):
    """ODE solver settings that do not go together, e.g. a fixed grid's steps on an
    adaptive method or a gradient the method does not offer."""


class ModelFileError(UserError, ValueError):
    """A model file that is missing, unreadable or not a kseg model."""


class TrainingDiverged(UserError, RuntimeError):
    """A training run whose loss or logits stopped being finite."""


def disk_full(error: BaseException) -> bool:
    """Whether `error` says that a disk (or the user's quota on it) is full."""
    full = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
    return isinstance(error, OSError) and error.errno in full


_OOM = re.compile(r"OOM when allocating tensor with shape\[([\d,]*)\] and type (\w+) on (\S+)")
_BYTES = {"half": 2, "bfloat16": 2, "float": 4, "int32": 4, "double": 8, "int64": 8}


def out_of_memory(error: BaseException) -> str | None:
    """What TensorFlow's out-of-memory error (`ResourceExhaustedError`, known by its name so
    that this module imports no TensorFlow) could not allocate, in words; None for any
    other error."""
    if type(error).__name__ != "ResourceExhaustedError":
        return None
    match = _OOM.search(str(error))
    if not match:
        return "out of memory"
    dims = [int(d) for d in match.group(1).split(",") if d]
    size = math.prod(dims) * _BYTES.get(match.group(2), 4) / 2**20
    device = match.group(3).rsplit("/device:", 1)[-1]
    shape = "x".join(map(str, dims))
    return f"out of memory on {device}: a {shape} tensor ({size:,.0f} MiB) did not fit"


def command_parser(prog: str, description: str, **kwargs) -> argparse.ArgumentParser:
    """The parser of a kseg command: defaults shown in `--help` (unless `kwargs` give
    another `formatter_class`), and `--debug`, which `run_command` reads."""
    kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
    p = argparse.ArgumentParser(prog=prog, description=description, **kwargs)
    p.add_argument("--debug", action="store_true", help="show the traceback of a user error")
    return p


class Terminated(KeyboardInterrupt):
    """SIGTERM (a batch scheduler's end of a job, `kill`), raised in `run_command`'s main
    thread so that it stops as Ctrl-C does: saying what the stopped work kept."""


def _terminated(signum, frame):
    raise Terminated


def run_command(
    main: Callable[[], object],
    argv: list[str] | None = None,
    memory_hint: str = "use smaller batches or images",
) -> None:
    """Runs `main()`, turning a `UserError`, a full disk or memory exhausted into
    `error: ...` on stderr and exit status 2, and Ctrl-C or SIGTERM into `interrupted` or
    `terminated` (with what the stopped work kept, when it says) and the shell's status for
    the signal, 130 or 143, with the objects alive before it frozen for the collector
    (`kseg.utils.heap`).

    `--debug` in `argv` (default `sys.argv`) lets the exception through with its
    traceback. `memory_hint` is what exhausted memory tells the user to change."""
    from kseg.utils.heap import frozen_heap

    argv = sys.argv[1:] if argv is None else argv
    main_thread = threading.current_thread() is threading.main_thread()
    before = signal.signal(signal.SIGTERM, _terminated) if main_thread else None
    try:
        with frozen_heap():  # the collector skips what the imports made
            main()
    except UserError as error:
        if "--debug" in argv:
            raise
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except OSError as error:
        if "--debug" in argv or not disk_full(error):
            raise
        what = f" writing {error.filename}" if error.filename else ""
        print(
            f"error: no space left on the device{what}: free some space, or give a folder on "
            "another disk, and run the command again",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
    except Exception as error:
        said = out_of_memory(error)
        if "--debug" in argv or said is None:
            raise
        print(f"error: {said}: {memory_hint} and run again", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt as stop:  # what was kept, not where it stopped
        if "--debug" in argv:
            raise
        said = f": {stop}" if str(stop) else ""
        terminated = isinstance(stop, Terminated)
        print(f"\n{'terminated' if terminated else 'interrupted'}{said}", file=sys.stderr)
        raise SystemExit(143 if terminated else 130) from None  # 128 + the signal
    finally:
        if main_thread:  # None: a handler not set from Python; the default stands in
            signal.signal(signal.SIGTERM, signal.SIG_DFL if before is None else before)
