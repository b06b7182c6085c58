"""py-spy ``--native`` profiles of one sidecar worker per mode under wrk c=16.

    cd /tmp && PYTHONPATH=<checkout> python <checkout>/bench/profile_modes.py \\
        --modes memory,production --seconds 20 --out DIR

`hot_path.profile` (the busiest worker, 100 samples a second) on each mode in turn, one
target at a time; prints the top self and inclusive frames and keeps each raw profile
as ``DIR/profile-MODE.txt`` (py-spy's raw format: one stack and its count a line), so
profiles of two builds can be compared frame by frame. Needs py-spy and wrk.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from hot_path import Bench, profile, wrk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default="memory,production")
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("."))
    parser.add_argument("--upstream", choices=("plain", "tls-account"), default="plain")
    args = parser.parse_args()
    args.quick, args.sidecar_env = True, {}
    workdir = Path(tempfile.mkdtemp(prefix="ps-profile-"))
    bench = Bench(args, workdir)
    print(f"load average {os.getloadavg()[0]:.1f} at start", flush=True)
    try:
        bench.start_upstream()
        for mode in [m for m in args.modes.split(",") if m]:
            target = bench.target(mode)
            wrk(target, connections=4, duration=2, workdir=workdir)  # warm up
            if profile(bench, target, args.seconds):
                shutil.copy(workdir / "profile.txt", args.out / f"profile-{mode}.txt")
            if target.stack is not None:
                target.stack.stop()
    finally:
        bench.close()
        shutil.rmtree(workdir, ignore_errors=True)
        print(f"load average {os.getloadavg()[0]:.1f} at end")


if __name__ == "__main__":
    main()
