"""Dynamics benchmark: (A, k, r0, D) from 20 snapshots x 2,000 configurations of N = 8 defects.

Runs the study at the 'full' scale (score method, weak form, trajectory oracle; the three model
classes), then the weak form and the oracle on subsets (snapshots, configurations per snapshot).
Writes benchmarks/results/dynamics.json and benchmarks/results/dynamics/ (fit.json, figure).

    OMP_NUM_THREADS=1 nice .venv/bin/python benchmarks/dynamics.py [--scale full] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from gensci.dynamics.baselines import oracle_fit, weak_form_fit
from gensci.dynamics.score_fit import ScoreModelConfig, equilibrium_directions, score_points
from gensci.dynamics.study import (
    SCALES,
    known_part,
    make_data,
    relative_errors,
    run_fits,
    write_report,
)
from gensci.runtime import device_name, resolve_device

ROOT = Path(__file__).resolve().parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", default="full", choices=sorted(SCALES))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(1)
    c = SCALES[args.scale]
    start = time.perf_counter()
    s, held, truth = make_data(args.scale, seed=args.seed, progress=False)
    sim_seconds = time.perf_counter() - start
    known = known_part(truth)
    result = run_fits(s, held, known, truth, ScoreModelConfig(steps=c["steps"]),
                      points=c["points"], n_bootstrap=c["bootstrap"], seed=args.seed,
                      device=args.device, progress=False)
    out = ROOT / "dynamics"
    out.mkdir(parents=True, exist_ok=True)
    record = write_report(out, result, truth, known, {"scale": args.scale, "seed": args.seed})
    # conditioning of the score residual: size of ds/dt against the right side's terms
    pts = score_points(result["model"], result["t_scale"], s, per_time=40, seed=args.seed)
    record["score_conditioning"] = equilibrium_directions(pts, known, truth.r0)
    from gensci.dynamics.score_fit import score_design

    _, X, y = score_design(pts, known, truth.r0, "full")
    theta = np.array([truth.A, truth.k, truth.D])
    record["score_conditioning"]["column_rms"] = np.sqrt(np.mean(X**2, 0)).tolist()
    record["score_conditioning"]["relative_residual_at_truth"] = float(
        np.linalg.norm(y - X @ theta) / np.linalg.norm(y))
    # curves: the cheap estimators on subsets of the same data
    curves = []
    T = len(s.times)
    for n_times in sorted({max(2, T // 4), max(2, T // 2), T}):
        idx = list(np.linspace(0, T - 1, n_times).round().astype(int))
        for per in sorted({max(10, c["configs"] // 8), max(10, c["configs"] // 2), c["configs"]}):
            sub = s.subset(idx, per)
            w = weak_form_fit(sub, known, "full")
            curves.append({"method": "weak_form", "snapshots": n_times, "per_snapshot": per,
                           "errors": relative_errors(w.values, truth)})
    for n_tr in sorted({max(5, c["tracks"] // 4), c["tracks"]}):
        o = oracle_fit(s, known, "full", n_tracks=n_tr)
        curves.append({"method": "oracle", "tracks": n_tr, "frame_dt": 1e-3,
                       "errors": relative_errors(o.values, truth)})
        o = oracle_fit(s, known, "full", n_tracks=n_tr, frame_times=s.times)
        curves.append({"method": "oracle_at_snapshot_times", "tracks": n_tr,
                       "errors": relative_errors(o.values, truth)})
    record["curves"] = curves
    record["simulate_seconds"] = sim_seconds
    record["total_seconds"] = time.perf_counter() - start
    record["device"] = device_name(resolve_device(args.device))
    record["command"] = f"benchmarks/dynamics.py --scale {args.scale} --seed {args.seed}"
    name = "dynamics.json" if args.scale == "full" else f"dynamics_{args.scale}.json"
    (ROOT / name).write_text(json.dumps(record, indent=1, default=float))
    print(json.dumps({k: record[k] for k in ("train_seconds", "total_seconds")}, default=float))


if __name__ == "__main__":
    main()
