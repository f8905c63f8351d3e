"""Photon-count noise: FBP, TV with the Gaussian and with the weighted likelihood, DDS posterior.

    OMP_NUM_THREADS=1 python benchmarks/tomography_photons.py

Held-out MNI152 slices at 64 x 64 (the shipped prior's held-out block z = 84..95), 60 views in
[0, 90), counts I ~ Poisson(I0 exp(-mu_scale A x)) at I0 = 1e4 and 1e5 (mu_scale from a 250 mm
field of view, `gensci.inverse.noise.mu_scale_for`), post-log data y with weights w = I mu_scale^2.
The TV weight of each likelihood is tuned on validation slices from the guard gap next to the
held-out block (z = 80..83, 96..99; never the test slices), by mean PSNR over --tv-grid. The
discrepancy ratio sum w (Ax - y)^2 / m is reported at the truth (it should be about 1) and for
each answer. DDS (shipped prior, K = --samples, 50 steps) runs with the Gaussian likelihood (5 CG
iterations per step, the study's setting) and with the weighted one (DDS_WEIGHTED_CG_ITERATIONS);
each posterior mean is checked against gensci's threshold with the weighted ratio and falls back
to the weighted TV at the weight the discrepancy principle picks, as `gensci ct reconstruct`
does. Control: the same DDS and check under Gaussian noise of the same effective std
(sqrt(mean(1 / w))), to tell the noise model's effect on the check from the slices'.
Writes benchmarks/results/tomography_photons.json (after each dose).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from gensci.inverse import Radon, fbp, psnr, tv_pdhg
from gensci.inverse.discrepancy import discrepancy_ratio, morozov_choice
from gensci.inverse.noise import PoissonNoise, effective_std, mu_scale_for
from gensci.runtime import atomic_write_text
from gensci.tomography.study import (
    DDS_WEIGHTED_CG_ITERATIONS,
    DISCREPANCY_THRESHOLD,
    TV_DISCREPANCY_TARGET,
    dds_lam_for,
    simulate_counts,
    tv_lambda,
)

RESULTS = Path(__file__).parent / "results"


def _slices(resolution: int, zs: list[int]) -> torch.Tensor:
    from gensci.tomography.data import axial_slices, load_mni152

    vol = axial_slices(load_mni152(), resolution)
    return torch.from_numpy(vol[zs]).double()[:, None]


def _measure(op: Radon, truth: torch.Tensor, noise: PoissonNoise, seed: int) -> dict:
    gen = torch.Generator().manual_seed(seed)
    y, counts = simulate_counts(op, truth, noise, gen)
    w = noise.weights(counts)
    return {"y": y, "counts": counts, "w": w, "std": effective_std(w)}


def _tv(op: Radon, m: dict, weight: float, weighted: bool, iters: int, norm: float) -> torch.Tensor:
    rel = m["w"] * m["std"] ** 2 if weighted else None  # mean variance 1, as gensci does
    return tv_pdhg(op, m["y"], tv_lambda(weight, m["std"]), iters, op_norm=norm, weights=rel).x


def dds_cg_check(
    args: argparse.Namespace,
    op: Radon,
    norm: float,
    val: torch.Tensor,
    val_z: list[int],
    mu: float,
    prior: object,
) -> dict:
    """Return PSNR and weighted discrepancy of DDS per validation slice, for 5 and 10 CG
    iterations per step, with the Gaussian and the weighted likelihood."""
    from gensci.inverse.posterior import DiffusionPrior, dds_posterior

    assert isinstance(prior, DiffusionPrior), "--dds-cg-check needs the shipped prior"
    out: dict = {}
    for dose in (float(d) for d in args.photons.split(",")):
        noise = PoissonNoise(dose, mu)
        rows = []
        for i in range(val.shape[0]):
            m = _measure(op, val[i : i + 1], noise, 1000 + i)
            for cg in (5, 10):
                for name, wts in (("gaussian", None), ("weighted", m["w"].float())):
                    post = dds_posterior(
                        prior,
                        op,
                        m["y"].float(),
                        m["std"],
                        n_samples=args.samples,
                        steps=args.dds_steps,
                        lam=dds_lam_for(op.n),
                        cg_iterations=cg,
                        op_norm=norm,
                        generator=torch.Generator().manual_seed(i),
                        weights=wts,
                    )
                    x = post.mean.double()
                    row = {
                        "z": val_z[i],
                        "cg": cg,
                        "likelihood": name,
                        "psnr": float(psnr(x, val[i : i + 1])[0]),
                        "ratio": float(discrepancy_ratio(op, x, m["y"], m["std"], m["w"])[0]),
                    }
                    rows.append(row)
                    print(json.dumps(row), flush=True)
        out[f"{dose:g}"] = rows
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--views", type=int, default=60)
    parser.add_argument("--wedge", type=float, default=90.0)
    parser.add_argument("--photons", default="1e4,1e5")
    parser.add_argument("--fov", type=float, default=250.0, help="field of view, mm")
    parser.add_argument("--test-z", default="84,88,91,95", help="held-out slices scored")
    parser.add_argument("--val-z", default="80,83,96,99", help="guard-gap slices for tuning")
    parser.add_argument("--tv-grid", default="0.25,0.5,1,2,4,8")
    parser.add_argument("--tv-iterations", type=int, default=600)
    parser.add_argument("--samples", type=int, default=4, help="DDS samples (0: no posterior)")
    parser.add_argument("--dds-steps", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "tomography_photons.json")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument(
        "--dds-cg-check",
        action="store_true",
        help="instead: DDS with 5 and 10 CG iterations per step, Gaussian and weighted, on the "
        "--val-z slices (how DDS_WEIGHTED_CG_ITERATIONS was chosen)",
    )
    args = parser.parse_args()
    if args.out.exists() and not args.overwrite:
        raise SystemExit(f"{args.out} exists; pass --overwrite to replace it")
    torch.set_num_threads(1)
    n = args.resolution
    test_z = [int(z) for z in args.test_z.split(",")]
    val_z = [int(z) for z in args.val_z.split(",")]
    grid = [float(w) for w in args.tv_grid.split(",")]
    test, val = _slices(n, test_z), _slices(n, val_z)
    op = Radon(n, args.wedge * np.arange(args.views) / args.views)
    norm = op.norm()
    mu = mu_scale_for(n, args.fov)
    prior = None
    if args.samples > 0:
        from gensci.tomography.prior import load_diffusion_prior, shipped_prior

        path = shipped_prior(n)
        if path is not None:
            prior = load_diffusion_prior(path, n, torch.device("cpu"))
    result: dict = {
        "machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": 1},
        "config": {
            **{k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "mu_scale": mu,
            "discrepancy_threshold": DISCREPANCY_THRESHOLD,
            "prior": "shipped prior-64" if prior is not None else None,
        },
        "doses": {},
    }
    if args.dds_cg_check:
        result["dds_cg_check"] = dds_cg_check(args, op, norm, val, val_z, mu, prior)
        atomic_write_text(args.out, json.dumps(result, indent=1), overwrite=True)
        print(f"wrote {args.out}")
        return
    for dose in (float(d) for d in args.photons.split(",")):
        noise = PoissonNoise(dose, mu)
        t0 = time.perf_counter()
        vals = [_measure(op, val[i : i + 1], noise, 1000 + i) for i in range(val.shape[0])]
        tests = [_measure(op, test[i : i + 1], noise, i) for i in range(test.shape[0])]
        line_max = max(
            float(noise.line_integral(op(test[i : i + 1])).max()) for i in range(test.shape[0])
        )
        tuned: dict[str, dict] = {}
        for name, weighted in (("tv_gaussian", False), ("tv_weighted", True)):
            scores = {}
            for w in grid:
                scores[w] = float(
                    np.mean(
                        [
                            float(
                                psnr(
                                    _tv(op, m, w, weighted, args.tv_iterations, norm),
                                    val[i : i + 1],
                                )[0]
                            )
                            for i, m in enumerate(vals)
                        ]
                    )
                )
            best = max(scores, key=lambda k: scores[k])
            tuned[name] = {
                "weight": best,
                "validation_psnr": {f"{k:g}": v for k, v in scores.items()},
            }
        rows: dict[str, list[float]] = {
            k: []
            for k in (
                "fbp",
                "tv_gaussian",
                "tv_weighted",
                "ratio_truth_weighted",
                "ratio_truth_gaussian",
                "ratio_tv_weighted",
                "dds_gaussian",
                "dds_gaussian_ratio",
                "dds_gaussian_flagged",
                "dds_gaussian_checked",
                "dds_weighted",
                "dds_weighted_ratio",
                "dds_weighted_flagged",
                "dds_weighted_checked",
                "dds_seconds",
                "control_dds",
                "control_ratio",
                "control_ratio_truth",
            )
        }
        for i, m in enumerate(tests):
            truth = test[i : i + 1]
            rows["fbp"].append(float(psnr(fbp(op, m["y"]), truth)[0]))
            rows["ratio_truth_weighted"].append(
                float(discrepancy_ratio(op, truth, m["y"], m["std"], m["w"])[0])
            )
            rows["ratio_truth_gaussian"].append(
                float(discrepancy_ratio(op, truth, m["y"], m["std"])[0])
            )
            for name, weighted in (("tv_gaussian", False), ("tv_weighted", True)):
                x = _tv(op, m, tuned[name]["weight"], weighted, args.tv_iterations, norm)
                rows[name].append(float(psnr(x, truth)[0]))
                if weighted:
                    rows["ratio_tv_weighted"].append(
                        float(discrepancy_ratio(op, x, m["y"], m["std"], m["w"])[0])
                    )
            if prior is None:
                continue
            from gensci.inverse.noise import GaussianNoise
            from gensci.inverse.posterior import dds_posterior

            # control: Gaussian noise of the same effective std, the study's DDS and check
            yg = GaussianNoise(m["std"]).simulate(op(truth), torch.Generator().manual_seed(i))
            post = dds_posterior(
                prior,
                op,
                yg.float(),
                m["std"],
                n_samples=args.samples,
                steps=args.dds_steps,
                lam=dds_lam_for(n),
                op_norm=norm,
                generator=torch.Generator().manual_seed(args.seed * 1000 + i),
            )
            rows["control_dds"].append(float(psnr(post.mean.double(), truth)[0]))
            rows["control_ratio"].append(
                float(discrepancy_ratio(op, post.mean.double(), yg, m["std"])[0])
            )
            rows["control_ratio_truth"].append(float(discrepancy_ratio(op, truth, yg, m["std"])[0]))

            for name, wts in (("dds_gaussian", None), ("dds_weighted", m["w"].float())):
                t = time.perf_counter()
                post = dds_posterior(
                    prior,
                    op,
                    m["y"].float(),
                    m["std"],
                    n_samples=args.samples,
                    steps=args.dds_steps,
                    lam=dds_lam_for(n),
                    cg_iterations=5 if wts is None else DDS_WEIGHTED_CG_ITERATIONS,
                    op_norm=norm,
                    generator=torch.Generator().manual_seed(args.seed * 1000 + i),
                    weights=wts,
                )
                rows[name].append(float(psnr(post.mean.double(), truth)[0]))
                if wts is not None:
                    rows["dds_seconds"].append(time.perf_counter() - t)
                # the check, for both, against the weighted residual (the data's noise model)
                ratio = float(
                    discrepancy_ratio(op, post.mean.double(), m["y"], m["std"], m["w"])[0]
                )
                flagged = ratio > DISCREPANCY_THRESHOLD
                answer = post.mean.double()
                if flagged:  # the fall-back: weighted TV at the discrepancy principle's weight
                    if "fallback" not in m:
                        cands = [_tv(op, m, w, True, args.tv_iterations, norm) for w in grid]
                        ratios = [
                            float(discrepancy_ratio(op, c, m["y"], m["std"], m["w"])[0])
                            for c in cands
                        ]
                        m["fallback"] = cands[morozov_choice(ratios, TV_DISCREPANCY_TARGET)]
                    answer = m["fallback"]
                rows[f"{name}_ratio"].append(ratio)
                rows[f"{name}_flagged"].append(float(flagged))
                rows[f"{name}_checked"].append(float(psnr(answer, truth)[0]))
        summary = {
            k: {"mean": float(np.mean(v)), "std": float(np.std(v)), "values": v}
            for k, v in rows.items()
            if v
        }
        result["doses"][f"{dose:g}"] = {
            "max_line_integral": line_max,
            "tuning": tuned,
            "per_method": summary,
            "seconds": time.perf_counter() - t0,
        }
        print(
            f"I0 = {dose:g}:",
            json.dumps({k: round(v["mean"], 3) for k, v in summary.items()}),
            f"TV weights {tuned['tv_gaussian']['weight']:g} / {tuned['tv_weighted']['weight']:g}",
        )
        # after each dose, so that a long run keeps what it has measured
        atomic_write_text(args.out, json.dumps(result, indent=1), overwrite=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
