"""Size ceilings: each command's memory estimate against its measured peak, at a few sizes.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sizes.py [--out benchmarks/results/sizes.json]

Every case runs the real `gensci` command in a child process whose gensci.budget.check_memory
records each estimate it checks (and the process's resident memory at that moment) before
checking it as usual. The measured figure is the child's peak resident memory (wait4's
ru_maxrss) minus its resident memory at the largest check, so both sides count what the run
allocates after the check; the estimate is the largest checked. Small sizes only (each case
stays under ~3 GB and a minute on one core); writes a JSON list and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

WRAPPER = r"""
import json, os, sys
import gensci.budget as b

_orig = b.check_memory

def _rss():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0

def _record(nbytes, what, hint, dominant=None, device=None):
    with open(os.environ["SIZES_LOG"], "a") as fh:
        fh.write(json.dumps({"bytes": float(nbytes), "what": what, "dominant": dominant,
                             "rss": _rss()}) + "\n")
    return _orig(nbytes, what, hint, dominant, device)

b.check_memory = _record
from gensci.cli import main
sys.argv = ["gensci", *sys.argv[1:]]
main()
"""


def run(args: list[str], cwd: Path) -> dict:
    """Run `gensci args` in cwd; return its largest estimate, RSS at that check and peak RSS."""
    log = cwd / "sizes.log"
    log.unlink(missing_ok=True)
    env = {**os.environ, "SIZES_LOG": str(log), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", WRAPPER, *args], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if status != 0:
        raise RuntimeError(f"gensci {' '.join(args)} failed: {err[-2000:]}")
    checks = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    main = max(checks, key=lambda c: c["bytes"]) if checks else {"bytes": 0, "rss": 0}
    peak = usage.ru_maxrss * 1024
    return {"estimate": main["bytes"], "what": main.get("what"), "dominant": main.get("dominant"),
            "rss_at_check": main["rss"], "peak": peak, "measured": peak - main["rss"]}


def setup(work: Path) -> None:
    """Write the inputs the cases read: images, sinograms, datasets, models, AnnData."""
    import numpy as np

    np.save(work / "img.npy", np.random.default_rng(0).random((64, 64)))
    g = [sys.executable, "-m", "gensci.cli"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def sh(*args: str) -> None:
        subprocess.run([*g, *args], cwd=work, env=env, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)

    for n in (128, 256):
        sh("ct", "simulate", "img.npy", "--out", f"sino{n}.npz", "--resolution", str(n))
    sh("ct", "simulate", "img.npy", "--out", "sino64.npz")
    sh("poisson", "generate", "--out", "p64.npz", "--n", "64", "--n-examples", "1000")
    sh("poisson", "generate", "--out", "p128.npz", "--n", "128", "--n-examples", "1000")
    sh("protein", "train", "fn3", "--out", "fn3", "--steps", "20")
    sh("cells", "simulate", "--out", "cells.h5ad")
    import anndata as ad

    small = ad.read_h5ad(work / "cells.h5ad")
    big = ad.concat([small] * 8, index_unique="-")
    big.uns = small.uns
    big.write_h5ad(work / "cells8.h5ad")


CASES: list[tuple[str, list[str]]] = [
    ("ct simulate 128, 60 views", ["ct", "simulate", "img.npy", "--out", "a.npz",
                                   "--resolution", "128"]),
    ("ct simulate 256, 60 views", ["ct", "simulate", "img.npy", "--out", "b.npz",
                                   "--resolution", "256"]),
    ("ct simulate 256, 180 views", ["ct", "simulate", "img.npy", "--out", "c.npz",
                                    "--resolution", "256", "--angles", "0:180:180"]),
    ("ct reconstruct fbp 128", ["ct", "reconstruct", "sino128.npz", "--out", "r1"]),
    ("ct reconstruct fbp 256", ["ct", "reconstruct", "sino256.npz", "--out", "r2"]),
    ("ct reconstruct dps 64, K=8", ["ct", "reconstruct", "sino64.npz", "--out", "r3",
                                    "--method", "dps", "--samples", "8", "--steps", "3"]),
    ("ct reconstruct dps 64, K=32", ["ct", "reconstruct", "sino64.npz", "--out", "r4",
                                     "--method", "dps", "--samples", "32", "--steps", "3"]),
    ("ct train-prior diffusion 64, batch 16", ["ct", "train-prior", "--out", "t1",
                                               "--steps", "2", "--checkpoint-every", "0"]),
    ("ct train-prior diffusion 128, batch 16", ["ct", "train-prior", "--out", "t2",
                                                "--resolution", "128", "--steps", "2",
                                                "--checkpoint-every", "0"]),
    ("poisson generate 1000 x 64^2", ["poisson", "generate", "--out", "g1.npz",
                                      "--n-examples", "1000"]),
    ("poisson generate 1000 x 128^2", ["poisson", "generate", "--out", "g2.npz",
                                       "--n-examples", "1000", "--n", "128"]),
    ("poisson generate 4000 x 128^2", ["poisson", "generate", "--out", "g3.npz",
                                       "--n-examples", "4000", "--n", "128"]),
    ("poisson train 1000 x 64^2", ["poisson", "train", "--data", "p64.npz", "--out", "m1",
                                   "--steps", "2", "--checkpoint-every", "0"]),
    ("poisson train 1000 x 128^2", ["poisson", "train", "--data", "p128.npz", "--out", "m2",
                                    "--steps", "2", "--checkpoint-every", "0"]),
    ("poisson solve exact 1000 x 64^2", ["poisson", "solve", "--rho", "p64.npz",
                                         "--out", "s1.npy"]),
    ("poisson solve exact 1000 x 128^2", ["poisson", "solve", "--rho", "p128.npz",
                                          "--out", "s2.npy"]),
    ("cells train 700 x 765, 2 x 800", ["cells", "train", "cells.h5ad", "--out", "c1",
                                        "--max-epochs", "1"]),
    ("cells train 5600 x 765, 2 x 4000", ["cells", "train", "cells8.h5ad", "--out", "c2",
                                          "--max-epochs", "1", "--hidden", "4000,4000"]),
    ("protein train fn3, hidden 128", ["protein", "train", "fn3", "--out", "f1",
                                       "--steps", "5"]),
    ("protein train fn3, hidden 4000,4000", ["protein", "train", "fn3", "--out", "f2",
                                             "--steps", "5", "--hidden", "4000,4000"]),
    ("protein design 20,000", ["protein", "design", "fn3", "--out", "d1", "-n", "20000",
                               "--temperature", "1"]),
    ("protein design 80,000", ["protein", "design", "fn3", "--out", "d2", "-n", "80000",
                               "--temperature", "1"]),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/sizes.json")
    parser.add_argument("--only", default="", help="run the cases whose name holds this text")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        setup(work)
        for name, cmd in CASES:
            if args.only and args.only not in name:
                continue
            r = run(cmd, work)
            rows.append({"case": name, **r})
            print(f"| {name} | {r['estimate'] / 1e6:,.0f} MB | {r['measured'] / 1e6:,.0f} MB | "
                  f"{r['estimate'] / max(r['measured'], 1):.2f} | {r['dominant']} |", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
