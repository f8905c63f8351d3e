"""Style study benchmark: AdaIN generator vs its entangled twin (content IoU and style-probe
monotonicity along 9-step style interpolations, DCI, MIG, PPL; spread over seeds), and stain
normalisation of held-out tissue tiles (AdaIN transfer vs Reinhard and Macenko from torchstain).

    OMP_NUM_THREADS=1 python benchmarks/style.py shapes    # -> results/style_shapes.json
    OMP_NUM_THREADS=1 python benchmarks/style.py stain     # -> results/style_stain.json
    OMP_NUM_THREADS=1 python benchmarks/style.py small64   # generators at 64 x 64, one seed
    python benchmarks/style.py summary                     # -> results/style.json (targets)
    python benchmarks/style.py stain_table                 # the stain table of style_stain.json
    (figures in benchmarks/results/style/; the two runs are independent and may run side by side)

Targets (issue 15): content IoU >= 0.95 for AdaIN along the interpolation, the entangled
baseline's measurably lower; DCI disentanglement higher and PPL lower than the baseline; stain SSIM
of the haematoxylin map at least Macenko's at an equal or better stain match (held-out pairs, every
normaliser given the same k = 1, 4, 16 tiles of the reference slide and of the source slide;
validation pairs from the slide's other half are reported beside them, for choosing the variant).
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from gensci.style.study import SCALES, markdown_summary, run_stain, run_study

RESULTS = Path(__file__).parent / "results"


def targets(report: dict) -> dict:
    """Return each target with its measured values and whether it is met."""
    a, e = report["summary"]["adain"], report["summary"]["entangled"]
    out = {
        "content_iou_adain_ge_0.95": {"adain": a["iou_mean"], "met": a["iou_mean"]["mean"] >= 0.95},
        "content_iou_entangled_lower": {
            "adain": a["iou_mean"],
            "entangled": e["iou_mean"],
            # "measurably": the gap exceeds twice the larger seed spread
            "met": a["iou_mean"]["mean"] - e["iou_mean"]["mean"]
            > 2 * max(a["iou_mean"]["std"], e["iou_mean"]["std"], 0.0),
        },
        "dci_higher": {
            "adain": a["dci_disentanglement"],
            "entangled": e["dci_disentanglement"],
            "met": a["dci_disentanglement"]["mean"] > e["dci_disentanglement"]["mean"],
        },
        "ppl_lower": {
            "adain": a["ppl"],
            "entangled": e["ppl"],
            "met": a["ppl"]["mean"] < e["ppl"]["mean"],
        },
    }
    if "stain" in report:
        stain = report["stain"]
        by_k = stain.get("test", {str(stain.get("k", 1)): stain["methods"]})
        for k, st in by_k.items():
            # held-out pairs, both normalisers given the same k tiles of each slide
            out[f"stain_ssim_ge_macenko_at_equal_or_better_match_k{k}"] = {
                "adain_ssim": st["adain"]["ssim_h"]["mean"],
                "macenko_ssim": st["macenko"]["ssim_h"]["mean"],
                "adain_dist": st["adain"]["stain_dist_truth"]["mean"],
                "macenko_dist": st["macenko"]["stain_dist_truth"]["mean"],
                "met": st["adain"]["ssim_h"]["mean"] >= st["macenko"]["ssim_h"]["mean"]
                and st["adain"]["stain_dist_truth"]["mean"]
                <= st["macenko"]["stain_dist_truth"]["mean"],
            }
    return out


def stain_table(stain: dict) -> str:
    """Return the stain measures (validation and held-out, every k) as a markdown table."""

    def fmt(d: dict) -> str:
        return f"{d['mean']:.3f} +- {d['std']:.3f}"

    lines = [
        "| method | k | validation SSIM(H) | validation distance | held-out SSIM(H) | "
        "held-out distance to truth | held-out distance to reference tiles |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in stain["test"][str(stain["ks"][0])]:
        for k in stain["ks"]:
            v, t = stain["validation"][str(k)][name], stain["test"][str(k)][name]
            lines.append(
                f"| {name} | {k} | {fmt(v['ssim_h'])} | {fmt(v['stain_dist_truth'])} | "
                f"{fmt(t['ssim_h'])} | {fmt(t['stain_dist_truth'])} | "
                f"{fmt(t['stain_dist_reference'])} |"
            )
    lines += [
        "",
        "| held-out, paired over the same pairs | k | SSIM(H) adain - macenko (mean +- s.e.) "
        "| pairs adain >= macenko | distance adain - macenko (mean +- s.e.) |",
        "|---|---|---|---|---|",
    ]
    for k in stain["ks"]:
        t = stain["test"][str(k)]
        ds = np.subtract(t["adain"]["ssim_h"]["values"], t["macenko"]["ssim_h"]["values"])
        dd = np.subtract(
            t["adain"]["stain_dist_truth"]["values"], t["macenko"]["stain_dist_truth"]["values"]
        )

        def se(a: np.ndarray) -> str:
            return f"{a.mean():+.3f} +- {a.std(ddof=1) / np.sqrt(len(a)):.3f}"

        lines.append(
            f"| adain vs macenko | {k} | {se(ds)} | {int((ds >= 0).sum())} / {len(ds)} | {se(dd)} |"
        )
    return "\n".join(lines)


def main() -> None:
    mode = sys.argv[1] if len(sys.argv) > 1 else "shapes"
    torch.set_num_threads(1)
    meta = {
        "device": "cpu (2 shared cores, 1 thread)",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "command": f"OMP_NUM_THREADS=1 python benchmarks/style.py {mode}",
    }
    if mode == "stain_table":
        print(stain_table(json.loads((RESULTS / "style_stain.json").read_text())["stain"]))
        return
    if mode == "summary":  # style.json: the targets over the shapes and stain runs
        shapes = json.loads((RESULTS / "style_shapes.json").read_text())
        stain = json.loads((RESULTS / "style_stain.json").read_text())
        report = {"summary": shapes["summary"], "stain": stain["stain"]}
        result = {
            **meta,
            "targets": targets(report),
            "summary": shapes["summary"],
            "judge_iou_on_real_test_images": shapes["judge_iou_on_real_test_images"],
            "stain": stain["stain"],
            "seconds": shapes["seconds"] + stain["seconds"],
            "settings": shapes["settings"],
        }
        (RESULTS / "style.json").write_text(json.dumps(result, indent=2, default=float))
        print(json.dumps({k: v["met"] for k, v in result["targets"].items()}, indent=1))
        return
    # shapes | stain | small64 | tour | tiny
    scale = "small" if mode in ("shapes", "stain") else mode
    out = RESULTS / ("style" if scale == "small" else f"style_{scale}")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    if mode == "stain":  # the AdaIN transfer net against Reinhard and Macenko
        stain = run_stain(SCALES["small"], out, seed=0, device="cpu", progress=False)
        result = {**meta, "seconds": time.time() - t0, "stain": stain}
        (RESULTS / "style_stain.json").write_text(json.dumps(result, indent=2, default=float))
        print(stain_table(stain))
        return
    report = run_study(out, scale, seed=0, device="cpu", progress=False, stain=False)
    result = {
        **meta,
        "scale": scale,
        "seconds": time.time() - t0,
        "summary": report["summary"],
        "judge_iou_on_real_test_images": report["judge_iou_on_real_test_images"],
        "runs": report["runs"],
        "settings": report["settings"],
    }
    name = "style_shapes.json" if scale == "small" else f"style_shapes_{scale}.json"
    (RESULTS / name).write_text(json.dumps(result, indent=2, default=float))
    print(markdown_summary(report))


if __name__ == "__main__":
    main()
