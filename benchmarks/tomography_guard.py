"""Which truth-free statistic tells a prior's null-space errors? The measurement behind the
extrapolation check (`gensci.tomography.study.extrapolation_check`).

    python benchmarks/tomography_guard.py --prior runs/head64/prior.safetensors --wedges 90 \
        --out runs/guard/head_90.json [--part 0/2]
    python benchmarks/tomography_guard.py --summary runs/guard/head_90.json ... \
        --out benchmarks/results/tomography_guard/head.json   (and .md beside it)

About 25 minutes per prior at one wedge on one shared core.

Every validation and test image of `tomography_realct.py` (the prior's guard gap and held-out
slab, the other patient, MNI152 coronal / sagittal, scikit-image), 60 views over [0, W), 1 %
noise, DDS K = 8 with the prior's tuned weight: the DDS posterior mean and TV (weight chosen by
cross-validation over rays) and, per image, the candidates:
- discrepancy: ||A x - y||^2 / (m sigma^2) of the posterior mean (the check before this one);
- std_mean: the mean posterior std;
- disagreement: rms(posterior mean - TV) / rms(std);
- tension_S: the discrepancy of the prior's own denoiser applied to the posterior mean noised to
  std S (0.1, 0.3 in the prior's [-1, 1] units), mean of 4 draws: how far the prior, left alone,
  pulls the answer off the data;
- extrapolation: `extrapolation_check` (the end views left out, posterior vs TV predicting them).
The truth decides only the label: does the posterior mean lose to TV at its oracle weight?
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from gensci.runtime import atomic_write_text  # noqa: E402
from tomography_realct import NOISE, TV_GRID, VIEWS, test_images  # noqa: E402

TENSION_LEVELS = (0.1, 0.3)


def tension(prior, op, x: torch.Tensor, y: torch.Tensor, s: float, level: float,
            gen: torch.Generator, draws: int = 4) -> float:
    """Return the mean discrepancy of the prior's denoiser on x noised to std `level`."""
    from gensci.inverse.discrepancy import discrepancy_ratio

    model, sde = prior.model, prior.model.sde
    grid = torch.linspace(float(sde.eps), float(sde.T), 2001)
    t = grid[int(torch.argmin((sde.std(grid) - level).abs()))].reshape(1)
    a, sd = float(sde.alpha(t)), float(sde.std(t))
    u = x.float() * prior.scale + prior.shift
    ratios = []
    with torch.no_grad():
        for _ in range(draws):
            x0 = prior.to_image(model.denoise(a * u + sd * torch.randn(u.shape, generator=gen), t))
            ratios.append(float(discrepancy_ratio(op, x0.double(), y, s)[0]))
    return float(np.mean(ratios))


def run_one(op, img, seed, prior, settings) -> dict:
    from gensci.tomography.study import (
        extrapolation_check,
        reconstruct_checked,
        simulate,
        tv_lambda,
    )

    truth = torch.from_numpy(np.asarray(img, dtype=np.float64))[None, None]
    y, s = simulate(op, truth, NOISE, torch.Generator().manual_seed(seed))
    tv = reconstruct_checked("tv", op, y, s, settings, tv_weights=TV_GRID, truth=img)
    w = tv.report["tv_weight"]
    row: dict = {"noise_std": s, "tv_weight_chosen": w,
                 "tv_chosen_psnr": tv.report["final"]["psnr"],
                 "tv_oracle_psnr": max(r["psnr"] for r in tv.report["tv_sweep"])}
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    dds = reconstruct_checked("dds", op, y, s, settings, prior=prior, generator=gen, truth=img,
                              check=False)
    post = dds.posterior
    assert post is not None and post.std is not None
    row.update(dds=dds.report["posterior"], seconds=time.perf_counter() - t0)
    xp, sd = post.mean, post.std
    row["std_mean"] = float(sd.mean())
    row["disagreement"] = float((xp - tv.final.mean).pow(2).mean().sqrt() / sd.pow(2).mean().sqrt())
    for level in TENSION_LEVELS:
        row[f"tension_{level:g}"] = tension(prior, op, xp, y, s, level, gen)
    row["extrapolation"] = extrapolation_check("dds", op, y, s, settings, prior,
                                               tv_lambda(w, s), generator=gen)
    return row


CANDIDATES = ("discrepancy", "std_mean", "disagreement", "tension_0.1", "tension_0.3",
              "extrapolation")


def value(r: dict, key: str) -> float:
    if key == "discrepancy":
        return float(r["dds"]["discrepancy"])
    if key == "extrapolation":
        return float(r["extrapolation"]["ratio"])
    return float(r[key])


def summary(rows: list[dict]) -> tuple[dict, str]:
    """Per group: the range of each candidate and of the posterior's gain over oracle TV; per
    candidate: the largest value on images where the posterior wins and the smallest where it
    loses by more than 0.5 dB (separated when the first is below the second)."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["group"], []).append(r)
    table = {}
    for g, rs in groups.items():
        gain = [r["dds"]["psnr"] - r["tv_oracle_psnr"] for r in rs]
        table[g] = {"images": len(rs), "gain": [min(gain), max(gain)],
                    **{c: [min(value(r, c) for r in rs), max(value(r, c) for r in rs)]
                       for c in CANDIDATES}}
    wins = [r for r in rows if r["dds"]["psnr"] >= r["tv_oracle_psnr"]]
    loses = [r for r in rows if r["dds"]["psnr"] < r["tv_oracle_psnr"] - 0.5]
    split = {c: {"max_where_posterior_wins": max((value(r, c) for r in wins), default=None),
                 "min_where_posterior_loses": min((value(r, c) for r in loses), default=None)}
             for c in CANDIDATES}
    lines = ["| group | n | posterior - TV oracle (dB) | " + " | ".join(CANDIDATES) + " |",
             "|---|---|---|" + "---|" * len(CANDIDATES)]
    for g, t in table.items():
        cells = " | ".join(f"{t[c][0]:.3g}-{t[c][1]:.3g}" for c in CANDIDATES)
        lines.append(f"| {g} | {t['images']} | {t['gain'][0]:+.2f} .. {t['gain'][1]:+.2f} | "
                     f"{cells} |")
    lines.append("| **max where the posterior wins / min where it loses > 0.5 dB** | | | " + " | ".join(
        f"{split[c]['max_where_posterior_wins']:.3g} / {split[c]['min_where_posterior_loses']:.3g}"
        if split[c]["max_where_posterior_wins"] is not None
        and split[c]["min_where_posterior_loses"] is not None else "-" for c in CANDIDATES) + " |")
    return {"groups": table, "separation": split}, "\n".join(lines) + "\n"


def main() -> None:
    from tqdm.auto import tqdm

    from gensci import checkpoint
    from gensci.inverse import Radon
    from gensci.tomography.prior import load_diffusion_prior
    from gensci.tomography.study import MethodSettings

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--prior", type=Path)
    p.add_argument("--lam", type=float, default=0.003, help="DDS weight (the prior's tuned one)")
    p.add_argument("--part", default="0/1")
    p.add_argument("--wedges", default="90,120")
    p.add_argument("--summary", type=Path, nargs="*", default=None)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    if args.summary:
        rows = [r for f in args.summary for r in json.loads(f.read_text())["rows"]]
        res, text = summary(rows)
        prior = json.loads(args.summary[0].read_text())["prior"]
        atomic_write_text(args.out, json.dumps({"prior": prior, **res, "rows": rows}, indent=1),
                          overwrite=True)
        atomic_write_text(args.out.with_suffix(".md"), text, overwrite=True)
        print(text)
        return
    if args.prior is None:
        p.error("--prior is needed (or --summary)")
    torch.set_num_threads(1)
    n = 64
    meta = checkpoint.load_metadata(args.prior)
    prior = load_diffusion_prior(args.prior, n, torch.device("cpu"))
    val, test = test_images(meta, n, (30, 50, 70, 90))
    wedges = [float(w) for w in args.wedges.split(",")]
    ops = {w: Radon(n, w * np.arange(VIEWS) / VIEWS) for w in wedges}
    settings = MethodSettings(samples=8, dds_lam=args.lam)
    part, parts = (int(v) for v in args.part.split("/"))
    jobs = [(g, nm, im, w) for g, nm, im in val + test for w in wedges]
    rows = []
    for j, (group, name, img, w) in enumerate(tqdm(jobs)):
        if j % parts != part:
            continue
        r = run_one(ops[w], img, j, prior, settings)
        r.update(group=group, image=name, wedge=w)
        rows.append(r)
        e = r["extrapolation"]
        print(f"{group} {name} [0,{w:g}): DDS - TV oracle "
              f"{r['dds']['psnr'] - r['tv_oracle_psnr']:+.2f} dB, discrepancy "
              f"{r['dds']['discrepancy']:.3f}, tension {r['tension_0.1']:.2f} / "
              f"{r['tension_0.3']:.2f}, extrapolation {e['posterior']:.2f} vs TV {e['tv']:.2f}",
              flush=True)
        atomic_write_text(args.out, json.dumps({"prior": str(args.prior), "rows": rows},
                                               indent=1), overwrite=True)


if __name__ == "__main__":
    main()
