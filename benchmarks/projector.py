"""Parallel-beam projector at clinical sizes: the sparse-matrix `Radon` vs the matrix-free one.

    OMP_NUM_THREADS=1 python benchmarks/projector.py [--sizes 128/60,256/180,512/360]

For each size / view count, in a fresh process (so peak memory is that configuration's): set-up
time (construction + first forward), forward + adjoint of one float32 image (median of
--repeats), peak resident memory, and agreement of the two (max relative difference of the
sinograms, when both ran). A configuration that exceeds --timeout seconds is reported as such.
Writes benchmarks/results/projector.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results"

CHILD = r"""
import json, resource, sys, time
import numpy as np, torch
torch.set_num_threads(1)
kind, n, views, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
from gensci.inverse.parallel_beam import ParallelBeam
from gensci.inverse.radon import Radon
angles = 180.0 * np.arange(views) / views
x = torch.rand((1, 1, n, n), generator=torch.Generator().manual_seed(0))
t0 = time.perf_counter()
op = ParallelBeam(n, angles) if kind == "matrix-free" else Radon(n, angles)
y = op(x)
setup = time.perf_counter() - t0
times = []
for _ in range(repeats):
    t = time.perf_counter()
    y = op(x)
    op.adjoint(y)
    times.append(time.perf_counter() - t)
np.save(sys.argv[5], y[0, 0].numpy())
print(json.dumps({"setup_s": setup, "forward_adjoint_s": float(np.median(times)),
                  "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))
"""


def run(kind: str, n: int, views: int, repeats: int, timeout: float, tmp: Path) -> dict:
    """Return one configuration's figures (or the reason it has none)."""
    out = tmp / f"{kind}_{n}_{views}.npy"
    try:
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, kind, str(n), str(views), str(repeats), str(out)],
            capture_output=True, text=True, timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"status": f"did not finish in {timeout:g} s"}
    if proc.returncode != 0:
        return {"status": "failed: " + proc.stderr.strip().splitlines()[-1]}
    return {"status": "ok", **json.loads(proc.stdout.strip().splitlines()[-1]), "sino": str(out)}


def main() -> None:
    import numpy as np

    from gensci.runtime import atomic_write_text

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="128/60,256/180,512/360")
    parser.add_argument("--kinds", default="sparse,matrix-free")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--out", type=Path, default=RESULTS / "projector.json")
    args = parser.parse_args()
    tmp = args.out.parent / "projector_sinograms"
    tmp.mkdir(parents=True, exist_ok=True)
    result: dict = {"machine": {"platform": platform.platform(), "threads": 1}, "runs": {}}
    for spec in args.sizes.split(","):
        n, views = (int(v) for v in spec.split("/"))
        row = {k: run(k, n, views, args.repeats, args.timeout, tmp) for k in args.kinds.split(",")}
        ok = [r for r in row.values() if r["status"] == "ok"]
        if len(ok) == 2:
            a, b = (np.load(r["sino"]) for r in ok)
            row["max_relative_difference"] = float(np.abs(a - b).max() / np.abs(b).max())
        for r in ok:
            Path(r.pop("sino")).unlink()
        result["runs"][spec] = row
        print(spec, json.dumps(row), flush=True)
    tmp.rmdir()
    atomic_write_text(args.out, json.dumps(result, indent=1), overwrite=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
