"""`--strategy multiworker` for real: two local worker processes with TF_CONFIG."""

import json
import os
import shutil
import socket
import subprocess
import sys


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _run_workers(outs, data_dir, epochs: int) -> list[str]:
    ports = _free_ports(2)
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    procs = []
    for index, out in enumerate(outs):
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
               "TF_CONFIG": json.dumps({"cluster": cluster,
                                        "task": {"type": "worker", "index": index}})}  # fmt: skip
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "kseg.recipes.cityscapes",
                    "train",
                    "--data-dir",
                    data_dir,
                    "--out",
                    out,
                    "--strategy",
                    "multiworker",
                    "--epochs",
                    str(epochs),
                    "--steps-per-epoch",
                    "2",
                    "--batch-size",
                    "2",
                    "--crop",
                    "64x128",
                    "--verbose",
                    "0",
                    "--no-tensorboard",
                    "--precise-bn-batches",
                    "1",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env=env,
            )  # fmt: skip
        )
    outputs = [p.communicate(timeout=900)[0] for p in procs]
    for p, output in zip(procs, outputs, strict=True):
        assert p.returncode == 0, output[-3000:]
    return outputs


def test_two_workers_resume_a_run_and_only_the_chief_writes(demo_cityscapes, trained, tmp_path):
    """Both workers resume the shared two-epoch run (each from its own copy here, as from a
    shared file system) and train a third epoch; only the chief writes it."""
    from kseg.train.checkpoints import last_checkpoint

    chief, worker = str(tmp_path / "chief"), str(tmp_path / "worker")
    shutil.copytree(trained, chief)
    shutil.copytree(trained, worker)
    before = {name: os.path.getmtime(os.path.join(worker, name)) for name in os.listdir(worker)}
    outputs = _run_workers([chief, worker], demo_cityscapes, epochs=3)
    assert all("2 of 3 epochs done" in o and "2 replica(s)" in o for o in outputs), outputs[0]
    assert last_checkpoint(chief)[1] == 3
    assert len(open(os.path.join(chief, "log.csv")).read().splitlines()) == 4  # header + 3
    after = {name: os.path.getmtime(os.path.join(worker, name)) for name in os.listdir(worker)}
    assert after == before  # the second worker wrote nothing
