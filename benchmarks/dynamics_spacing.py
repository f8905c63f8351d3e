"""Snapshot spacing against the in-well relaxation time: what the weak form recovers.

The default physics relaxes inside a Peierls well in about 1 / (2 pi^2 A / gamma) = 0.05; the
issue's default snapshots are 0.1 apart. This script simulates the same physics (N = 8, 1-D,
cluster release, 20 snapshots x 2,000 configurations, seed 0) at spacings 0.1, 0.02 and 0.005 and
fits (A, k, r0, D) by weak-form generator regression (no score model; seconds per fit). Writes
benchmarks/results/dynamics_spacing.json.

    OMP_NUM_THREADS=1 nice .venv/bin/python benchmarks/dynamics_spacing.py
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from gensci.dynamics.baselines import weak_form_fit
from gensci.dynamics.physics import DefectParams
from gensci.dynamics.simulate import simulate
from gensci.dynamics.study import relative_errors

OUT = Path(__file__).resolve().parent / "results" / "dynamics_spacing.json"
SPACINGS = (0.1, 0.02, 0.005)


def main() -> None:
    truth = DefectParams()
    relax = 1.0 / (2 * math.pi**2 * truth.A / truth.gamma)
    report: dict = {"truth": asdict(truth), "in_well_relaxation_time": relax, "fits": []}
    for spacing in SPACINGS:
        times = spacing * np.arange(1, 21)
        s = simulate(truth, times, n_configs=2000, seed=0)
        known = replace(truth, A=1.0, k=1.0, r0=1.0, kT=1.0)  # only box, a, gamma are used
        fit = weak_form_fit(s, known)
        row = {"spacing": spacing, "spacing_over_relaxation": spacing / relax,
               "values": fit.values, "relative_errors": relative_errors(fit.values, truth),
               "residual": fit.residual, "seconds": fit.seconds}
        report["fits"].append(row)
        print(json.dumps(row), flush=True)
    OUT.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
