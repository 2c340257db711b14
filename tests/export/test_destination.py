"""An export killed outright leaves its staging folder in --out; the next export to the
folder removes it, and only the staging folders of processes that no longer run."""

import os
import subprocess
import sys

from kseg.export.destination import Destination

KILLED = """
import os, signal, sys
from kseg.export.destination import Destination

destination = Destination(sys.argv[1])
with open(os.path.join(destination.stage, "model_fp32.tflite"), "wb") as f:
    f.write(bytes(1000))
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_the_next_export_removes_the_stage_of_a_killed_one(tmp_path):
    out = tmp_path / "assets"
    out.mkdir()
    (out / "labels.txt").write_text("my app's labels\n")
    killed = subprocess.Popen([sys.executable, "-c", KILLED, str(out)])
    assert killed.wait(timeout=120) == -9
    (left,) = [n for n in os.listdir(out) if n != "labels.txt"]
    assert left.startswith(f".kseg-staging-{killed.pid}-")
    assert os.listdir(out / left) == ["model_fp32.tflite"]
    # a running export's stage (this process's) and one named as kseg did before the
    # process id was in the name: both kept
    running = out / f".kseg-staging-{os.getpid()}-abc"
    running.mkdir()
    older = out / ".kseg-staging-k2x9_q1"
    older.mkdir()

    with Destination(str(out)) as destination:
        names = set(os.listdir(out))
        assert left not in names
        assert names == {
            "labels.txt",
            running.name,
            older.name,
            os.path.basename(destination.stage),
        }
    assert sorted(os.listdir(out)) == sorted(["labels.txt", running.name, older.name])
