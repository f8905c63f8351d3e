"""Projectors at clinical sizes, side by side: raw ASTRA, our ASTRA-backed operators, our torch
matrix-free ones (and the sparse-matrix `Radon`), parallel and fan beam.

    OMP_NUM_THREADS=1 python benchmarks/projector.py \
        [--sizes 128/60,256/180,512/360,512/720] [--geometries parallel,fan] \
        [--kinds astra-raw,astra,torch] [--torch-single-at 512/360,512/720]

For each geometry, size / view count and kind, in a fresh process (so peak memory is that
configuration's): construction time ("build"), set-up time (construction + first forward; the
ASTRA import, which loads the CUDA runtime libraries, is timed apart), forward + adjoint of one
float32 image (median of --repeats; one repetition for the torch operators at the sizes named
by --torch-single-at, where one application takes seconds to a minute), peak resident memory, and the
relative L2 difference of each sinogram to the torch operator's (different discretisations:
a loose comparison). Kinds:

- astra-raw: ASTRA's own Python calls on NumPy arrays (standard 'parallel' / 'fanflat' geometry,
  'linear' / 'line_fanflat' projector, FP and BP algorithms created once): the anchor;
- astra: `AstraParallelBeam` / `AstraFanBeam` (vector geometries, torch tensors, autograd);
- torch: `ParallelBeam` / `FanBeam` (grid_sample, flat detector for fan beam);
- sparse: `Radon` (parallel beam only; its set-up grows as n^3).

Fan beam: source-to-isocentre 1.5 n, source-to-detector 2.7 n pixels, full 360-degree scan,
default detector (bins a pixel apart at the isocentre). Parallel beam: views over 180 degrees,
P = padded_size(n) bins. The run is stored under --key in --out (other keys are kept).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"

CHILD = r"""
import json, resource, sys, time
import numpy as np, torch
torch.set_num_threads(1)
geometry, kind = sys.argv[1], sys.argv[2]
n, views, repeats = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
span = 360.0 if geometry == "fan" else 180.0
angles = span * np.arange(views) / views
R, D = 1.5 * n, 2.7 * n
dev = torch.device(sys.argv[7])
cuda = dev.type == "cuda"
x = torch.rand((1, 1, n, n), generator=torch.Generator().manual_seed(0)).to(dev)
def sync():
    if cuda:
        torch.cuda.synchronize()
t0 = time.perf_counter()
import_s = 0.0
if kind.startswith("astra"):
    import astra  # loads the CUDA runtime libraries; timed apart from the set-up
    import_s = time.perf_counter() - t0
# warm torch up on tiny operators (the first autograd backward costs about a second, once)
from gensci.inverse.fan_beam import FanBeam as _Fan
from gensci.inverse.parallel_beam import ParallelBeam as _Par
for _w in (_Fan(8, [0.0, 90.0], 12.0, 20.0), _Par(8, [0.0, 90.0])):
    _w.adjoint(_w(torch.rand(1, 1, 8, 8, device=dev)))
t0 = time.perf_counter()
if kind == "astra-raw":
    from gensci.inverse.fan_beam import default_fan_detector
    from gensci.inverse.radon import padded_size
    vg = astra.create_vol_geom(n, n)
    if geometry == "fan":
        n_det, spacing = default_fan_detector(n, R, D, "flat")
        pg = astra.create_proj_geom("fanflat", spacing, n_det, np.deg2rad(angles), R, D - R)
        pid = astra.create_projector("cuda" if cuda else "line_fanflat", pg, vg)
    else:
        pg = astra.create_proj_geom("parallel", 1.0, padded_size(n), np.deg2rad(angles))
        pid = astra.create_projector("cuda" if cuda else "linear", pg, vg)
    vol = x[0, 0].cpu().numpy().copy()
    suffix = "_CUDA" if cuda else ""
    vid = astra.data2d.link("-vol", vg, vol)
    sid = astra.data2d.create("-sino", pg, 0.0)
    bid = astra.data2d.create("-vol", vg, 0.0)
    fp = astra.astra_dict("FP" + suffix)
    fp.update(ProjectorId=pid, ProjectionDataId=sid, VolumeDataId=vid)
    bp = astra.astra_dict("BP" + suffix)
    bp.update(ProjectorId=pid, ProjectionDataId=sid, ReconstructionDataId=bid)
    fp, bp = astra.algorithm.create(fp), astra.algorithm.create(bp)
    build = time.perf_counter() - t0
    astra.algorithm.run(fp)
    setup = time.perf_counter() - t0
    def apply():
        astra.algorithm.run(fp); astra.algorithm.run(bp)
    apply()
    y = astra.data2d.get(sid).T
else:
    if geometry == "fan":
        from gensci.inverse.fan_beam import FanBeam
        if kind == "astra":
            from gensci.inverse.astra import AstraFanBeam as FanBeam
        op = FanBeam(n, angles, R, D)
    elif kind == "sparse":
        from gensci.inverse.radon import Radon
        op = Radon(n, angles)
    else:
        from gensci.inverse.parallel_beam import ParallelBeam
        if kind == "astra":
            from gensci.inverse.astra import AstraParallelBeam as ParallelBeam
        op = ParallelBeam(n, angles)
    build = time.perf_counter() - t0
    y = op(x)
    sync()
    setup = time.perf_counter() - t0
    def apply():
        op.adjoint(op(x))
        sync()
    y = y[0, 0].cpu().numpy()
times = []
for _ in range(repeats):
    t = time.perf_counter()
    apply()
    times.append(time.perf_counter() - t)
np.save(sys.argv[6], np.asarray(y, dtype=np.float32))
print(json.dumps({"import_s": import_s, "build_s": build, "setup_s": setup,
                  "forward_adjoint_s": float(np.median(times)), "repeats": repeats,
                  "peak_cuda_gb": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
                  "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))
"""


def run(
    geometry: str,
    kind: str,
    n: int,
    views: int,
    repeats: int,
    timeout: float,
    tmp: Path,
    device: str = "cpu",
) -> dict:
    """Return one configuration's figures (or the reason it has none)."""
    out = tmp / f"{geometry}_{kind}_{n}_{views}.npy"
    args = [geometry, kind, str(n), str(views), str(repeats), str(out), device]
    try:
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, *args], capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return {"status": f"did not finish in {timeout:g} s"}
    if proc.returncode != 0:
        return {"status": "failed: " + proc.stderr.strip().splitlines()[-1]}
    return {"status": "ok", **json.loads(proc.stdout.strip().splitlines()[-1]), "sino": str(out)}


def table(runs: dict) -> str:
    """Return the runs as a Markdown table: one row per geometry and size, one column per kind."""
    kinds = sorted({k for row in runs.values() for k in row if isinstance(row[k], dict)})
    head = "| geometry, size/views | " + " | ".join(
        f"{k}: build / set-up / fwd+adj / peak" for k in kinds
    )
    lines = [head + " |", "|---" * (len(kinds) + 1) + "|"]
    for spec, row in runs.items():
        cells = []
        for k in kinds:
            r = row.get(k)
            if r is None:
                cells.append("-")
            elif r["status"] != "ok":
                cells.append(r["status"])
            else:
                note = f" ({r['repeats']}x)" if r["repeats"] == 1 else ""
                cells.append(
                    f"{r.get('build_s', float('nan')):.2f} s / {r['setup_s']:.2f} s / "
                    f"{1000 * r['forward_adjoint_s']:.0f} ms{note} / "
                    f"{r['peak_rss_gb']:.2f} GB"
                )
        lines.append(f"| {spec} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def checks() -> dict:
    """Return the correctness figures: dot tests, ASTRA vs ours on a phantom, fan-beam FBP PSNR
    (full and short scan), TV vs FBP at few views; one thread, in this process."""
    import math
    import time

    import numpy as np
    import torch
    from skimage.data import shepp_logan_phantom
    from skimage.transform import resize

    from gensci.inverse import fbp, psnr, tv_pdhg
    from gensci.inverse.astra import AstraFanBeam, AstraParallelBeam
    from gensci.inverse.fan_beam import FanBeam, fan_fbp
    from gensci.inverse.parallel_beam import ParallelBeam

    torch.set_num_threads(1)

    def mismatch(op, dtype=torch.float32) -> float:
        worst = 0.0
        for seed in range(3):
            gen = torch.Generator().manual_seed(seed)
            x = torch.randn((2, *op.in_shape), generator=gen, dtype=dtype)
            y = torch.randn((2, *op.out_shape), generator=gen, dtype=dtype)
            lhs = float((op(x).double() * y.double()).sum())
            rhs = float((x.double() * op.adjoint(y).double()).sum())
            worst = max(worst, abs(lhs - rhs) / abs(lhs))
        return worst

    out: dict = {"dot_test": {}, "agreement": {}, "fan_fbp_psnr_db": {}, "tv_vs_fbp": {}}
    for n, views in ((64, 90), (256, 180)):
        par, fan = np.arange(views) * 180.0 / views, np.arange(views) * 360.0 / views
        ops = {
            "astra linear": AstraParallelBeam(n, par),
            "astra line": AstraParallelBeam(n, par, projector="line"),
            "astra strip": AstraParallelBeam(n, par, projector="strip"),
            "astra line_fanflat": AstraFanBeam(n, fan, 1.5 * n, 2.7 * n),
            "ParallelBeam": ParallelBeam(n, par),
            "FanBeam flat": FanBeam(n, fan, 1.5 * n, 2.7 * n),
            "FanBeam arc": FanBeam(n, fan, 1.5 * n, 2.7 * n, detector="arc"),
        }
        row = {name: mismatch(op) for name, op in ops.items()}
        row["FanBeam flat float64"] = mismatch(ops["FanBeam flat"], torch.float64)
        out["dot_test"][f"{n}/{views}"] = row
        print("dot test", n, views, json.dumps(row), flush=True)
    n = 256
    truth = torch.from_numpy(resize(shepp_logan_phantom(), (n, n), anti_aliasing=True))[None, None]
    truth = truth.float()
    pairs: dict[str, tuple[Any, Any, Any]] = {
        "parallel 256/180": (
            ParallelBeam(n, np.arange(180.0)), AstraParallelBeam(n, np.arange(180.0)), fbp,
        ),
        "fan 256/360": (
            FanBeam(n, np.arange(360.0), 1.5 * n, 2.7 * n),
            AstraFanBeam(n, np.arange(360.0), 1.5 * n, 2.7 * n), fan_fbp,
        ),
    }  # fmt: skip
    for name, (ours, astra_op, recon) in pairs.items():
        ya, yb = ours(truth), astra_op(truth)
        ra, rb = recon(ours, ya), recon(astra_op, yb)
        out["agreement"][name] = {
            "sinogram_relative_difference": float((ya - yb).norm() / ya.norm()),
            "fbp_relative_difference": float((ra - rb).norm() / ra.norm()),
            "fbp_psnr_ours_db": float(psnr(ra, truth)[0]),
            "fbp_psnr_astra_db": float(psnr(rb, truth)[0]),
        }
        print("agreement", name, json.dumps(out["agreement"][name]), flush=True)
    reference: Any = ParallelBeam(n, np.arange(360) * 0.5)
    out["fan_fbp_psnr_db"]["parallel reference, 360 views over 180"] = float(
        psnr(fbp(reference, reference(truth)), truth)[0]
    )
    for detector in ("flat", "arc"):
        full = FanBeam(n, np.arange(360.0), 1.5 * n, 2.7 * n, detector=detector)
        half_fan = math.degrees(float(np.abs(full.fan_angles()).max()))
        span = 180.0 + 2 * half_fan
        k = int(round(span))
        short = FanBeam(n, np.arange(k + 1) * span / k, 1.5 * n, 2.7 * n, detector=detector)
        for label, op in ((f"{detector} full scan, 360 views", full),
                          (f"{detector} short scan {span:.1f} deg, {k + 1} views", short)):  # fmt: skip
            out["fan_fbp_psnr_db"][label] = float(psnr(fan_fbp(op, op(truth)), truth)[0])
    print("fan FBP PSNR", json.dumps(out["fan_fbp_psnr_db"]), flush=True)
    n, views = 128, 30
    small = torch.from_numpy(resize(shepp_logan_phantom(), (n, n), anti_aliasing=True))
    small = small.float()[None, None]
    angles = np.arange(views) * 360.0 / views
    fan_ops: list[tuple[str, Any]] = [
        ("FanBeam", FanBeam(n, angles, 1.5 * n, 2.7 * n)),
        ("AstraFanBeam", AstraFanBeam(n, angles, 1.5 * n, 2.7 * n)),
    ]
    for name, fan_op in fan_ops:
        y = fan_op(small)
        gen = torch.Generator().manual_seed(0)
        y = y + 0.01 * float(y.abs().max()) * torch.randn(y.shape, generator=gen)
        t0 = time.perf_counter()
        rec = tv_pdhg(fan_op, y, lam=1.0, iterations=300).x
        seconds = time.perf_counter() - t0
        out["tv_vs_fbp"][f"{name} 128, {views} views, 1% noise"] = {
            "fbp_psnr_db": float(psnr(fan_fbp(fan_op, y), small)[0]),
            "tv_psnr_db": float(psnr(rec, small)[0]),
            "tv_300_iterations_s": seconds,
        }
    print("TV vs FBP", json.dumps(out["tv_vs_fbp"]), flush=True)
    return out


def main() -> None:
    import numpy as np

    from gensci.runtime import atomic_write_text

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="128/60,256/180,512/360,512/720")
    parser.add_argument("--geometries", default="parallel,fan")
    parser.add_argument("--kinds", default="astra-raw,astra,torch")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--torch-single-at",
        default="512/360,512/720",
        help="sizes at which the torch operators run one repetition",
    )
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--out", type=Path, default=RESULTS / "projector.json")
    parser.add_argument("--key", default="side_by_side")
    parser.add_argument(
        "--device", default="cpu",
        help="cuda: torch operators on the GPU, ASTRA's CUDA algorithms (FP_CUDA, BP_CUDA)",
    )  # fmt: skip
    parser.add_argument(
        "--checks", action="store_true",
        help="instead of timings: dot tests, ASTRA vs ours, fan FBP PSNR, TV (key 'checks')",
    )  # fmt: skip
    args = parser.parse_args()
    if args.checks:
        stored = json.loads(args.out.read_text()) if args.out.exists() else {}
        stored["checks"] = checks()
        atomic_write_text(args.out, json.dumps(stored, indent=1), overwrite=True)
        print(f"wrote {args.out} (key 'checks')")
        return
    tmp = args.out.parent / "projector_sinograms"
    tmp.mkdir(parents=True, exist_ok=True)
    single = set(args.torch_single_at.split(",")) if args.torch_single_at else set()
    machine = {"platform": platform.platform(), "threads": 1, "device": args.device}
    result: dict = {"machine": machine, "runs": {}}
    for geometry in args.geometries.split(","):
        for spec in args.sizes.split(","):
            n, views = (int(v) for v in spec.split("/"))
            row: dict = {}
            for kind in args.kinds.split(","):
                if kind == "sparse" and geometry == "fan":
                    continue
                reps = 1 if kind == "torch" and spec in single else args.repeats
                row[kind] = run(geometry, kind, n, views, reps, args.timeout, tmp, args.device)
            ok = {k: r for k, r in row.items() if r["status"] == "ok"}
            if "torch" in ok:
                ref = np.load(ok["torch"]["sino"])
                for k, r in ok.items():
                    if k != "torch":
                        other = np.load(r["sino"])
                        r["relative_difference_to_torch"] = float(
                            np.linalg.norm(other - ref) / np.linalg.norm(ref)
                        )
            for r in ok.values():
                Path(r.pop("sino")).unlink()
            key = f"{geometry} {spec}"
            result["runs"][key] = row
            print(key, json.dumps(row), flush=True)
    tmp.rmdir()
    stored = json.loads(args.out.read_text()) if args.out.exists() else {}
    stored[args.key] = result
    atomic_write_text(args.out, json.dumps(stored, indent=1), overwrite=True)
    print(table(result["runs"]))
    print(f"wrote {args.out} (key {args.key!r})")


if __name__ == "__main__":
    main()
