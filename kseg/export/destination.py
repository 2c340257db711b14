"""The folder an export writes to, which may already hold files of its user's.

An export is written to a staging folder inside `out` first and moved in when it has
succeeded, so a failed export leaves `out` as it was (the folder created, if it was not
there). A process killed outright (SIGKILL, the kernel's out-of-memory killer) cannot
remove its staging folder; the folder's name carries the process id, and the next export
to `out` removes the staging folders of processes that no longer run, so that no partial
export stays among an app's assets.

Moving in replaces a file only if an earlier kseg export wrote it and it is unchanged
since: `out/.kseg-export.json` records each file kseg wrote with its SHA-256. A file of
the same name that kseg did not write, or that changed since (an app's own labels.txt, an
edited segment.py), stops the export with a message naming it, and nothing is moved.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import weakref

from kseg.errors import UserError
from kseg.predict.standalone import sha256

MANIFEST = ".kseg-export.json"
STAGING = ".kseg-staging-"
_STAGING_PID = re.compile(re.escape(STAGING) + r"(\d+)-")


def _running(pid: int) -> bool:
    """Whether a process of this id runs (another user's counts; off POSIX, where signal 0
    is no probe, every process is taken to run)."""
    if os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def remove_stale_stages(out: str) -> None:
    """Removes the staging folders in `out` of exports whose process no longer runs."""
    for name in os.listdir(out):
        match = _STAGING_PID.match(name)
        if match and not _running(int(match.group(1))):
            shutil.rmtree(os.path.join(out, name), ignore_errors=True)


def _fingerprint(path: str) -> str:
    """A file's SHA-256; a folder's (a SavedModel) over its files' names and hashes."""
    if not os.path.isdir(path):
        return sha256(path)
    digest = hashlib.sha256()
    for folder, subfolders, files in sorted(os.walk(path)):
        subfolders.sort()
        for name in sorted(files):
            full = os.path.join(folder, name)
            digest.update(f"{os.path.relpath(full, path)}:{sha256(full)}\n".encode())
    return digest.hexdigest()


class Destination:
    """`out`, with `stage` (a folder inside it) to write an export to and `publish` to
    move the export in. A context manager: the stage is removed on leaving it, published
    or not (and, used without `with`, when the object goes)."""

    def __init__(self, out: str):
        self.out = out
        if os.path.exists(out) and not os.path.isdir(out):
            raise UserError(f"--out {out} is a file, not a folder: give a folder for the export")
        os.makedirs(out, exist_ok=True)
        remove_stale_stages(out)
        self.stage = tempfile.mkdtemp(prefix=f"{STAGING}{os.getpid()}-", dir=out)
        self._cleanup = weakref.finalize(self, shutil.rmtree, self.stage, True)

    def __enter__(self) -> Destination:
        return self

    def __exit__(self, *exc) -> None:
        self._cleanup()

    def written_by_kseg(self) -> dict[str, str]:
        """The files (and folders) earlier exports wrote here, with their fingerprints. A
        folder exported before kseg kept this record is known by its README.txt, and what
        it holds counts as kseg's."""
        try:
            with open(os.path.join(self.out, MANIFEST)) as f:
                return dict(json.load(f)["files"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
        try:
            with open(os.path.join(self.out, "README.txt")) as f:
                earlier = "exported by kseg" in f.readline()
        except (OSError, UnicodeDecodeError):
            earlier = False
        names = [n for n in os.listdir(self.out) if not n.startswith(STAGING)]
        return {n: _fingerprint(os.path.join(self.out, n)) for n in names} if earlier else {}

    def check(self, names: list[str]) -> dict[str, str]:
        """Refuses (a `UserError` naming them) when any of `names` exists in `out` and is
        not as an earlier kseg export wrote it; returns `written_by_kseg()`. The export
        checks the names it knows before its work and every file it wrote before moving
        them in."""
        ours = self.written_by_kseg()
        theirs = [
            n
            for n in names
            if os.path.lexists(os.path.join(self.out, n))
            and ours.get(n) != _fingerprint(os.path.join(self.out, n))
        ]
        if theirs:
            raise UserError(
                f"{self.out} already holds {', '.join(theirs)}, which kseg did not write (or "
                "which changed since it did); the export would overwrite them. Export to "
                "another --out, or move them away."
            )
        return ours

    def publish(self) -> dict[str, str]:
        """Moves the staged files into `out`; returns {staged path: published path}."""
        names = sorted(os.listdir(self.stage))
        ours = self.check(names)
        moved = {}
        for name in names:
            staged, target = os.path.join(self.stage, name), os.path.join(self.out, name)
            ours[name] = _fingerprint(staged)
            if os.path.isdir(target):
                shutil.rmtree(target)
            os.replace(staged, target)
            moved[staged] = target
        ours = {n: f for n, f in ours.items() if os.path.lexists(os.path.join(self.out, n))}
        with open(os.path.join(self.out, MANIFEST), "w") as f:
            json.dump({"files": ours}, f, indent=1, sort_keys=True)
        self._cleanup()
        return moved
