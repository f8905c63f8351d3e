"""Calorimetry study benchmark: the three shower generators against the truth simulator on the
dataset-1-photon geometry (368 voxels), measured like the CaloChallenge, on the CPU.

    OMP_NUM_THREADS=1 python benchmarks/calorimetry.py [small|bench|tiny]
        -> results/calorimetry.json, figures in results/calorimetry/
    OMP_NUM_THREADS=1 python benchmarks/calorimetry.py speed
        -> results/calorimetry_speed.json: showers/s of each model on ds1-photon (5 layers) and
           ds2 (45 layers) with untrained weights (the speed of a network does not depend on
           its weights), to show how the AR cost grows with the number of layers

Targets (issue 17): AR low-level AUC <= 0.65; factorised parallel >= 20x faster than AR with a
clearly larger layer-correlation distance; correlated parallel within 0.05 AUC of AR at >= 10x
AR's speed; a frontier figure (fidelity vs throughput).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import torch

from gensci.calorimetry.study import markdown_summary, run_study

RESULTS = Path(__file__).parent / "results"


def speed() -> None:
    """Measure showers/s of every model with the study's widths on both geometries."""
    import math

    from gensci.calorimetry.geometry import get_geometry
    from gensci.calorimetry.model import MODELS, CaloConfig, make_model, throughput
    from gensci.calorimetry.simulate import throughput as sim_throughput

    torch.set_num_threads(1)
    rows = {}
    for name in ("ds1-photon", "ds2"):
        geo = get_geometry(name)
        cfg = CaloConfig(geometry=name, layer_sizes=geo.layer_sizes, log_e_min=math.log(1e3),
                         log_e_max=math.log(1e5))
        n = 2000 if name == "ds1-photon" else 200
        rates = {"truth simulator": sim_throughput(geo, n=n)}
        single = {}
        for kind in MODELS:
            torch.manual_seed(0)
            model = make_model(kind, cfg).eval()
            rates[kind] = throughput(model, n=n, batch_size=n)
            single[kind] = throughput(model, n=100, batch_size=1)  # one shower at a time
        rows[name] = {"layers": len(geo.layers), "voxels": geo.n_voxels,
                      "showers_per_s": rates,
                      "speedup_over_ar": {k: v / rates["ar"] for k, v in rates.items()},
                      "showers_per_s_batch_1": single,
                      "speedup_over_ar_batch_1": {k: v / single["ar"] for k, v in single.items()}}
        print(name, {k: round(v, 1) for k, v in rows[name]["speedup_over_ar"].items()},
              {k: round(v, 1) for k, v in rows[name]["speedup_over_ar_batch_1"].items()})
    out = {"command": "OMP_NUM_THREADS=1 python benchmarks/calorimetry.py speed",
           "note": "untrained weights, hidden (256, 256, 256), one CPU thread, 2 shared cores",
           "geometries": rows}
    (RESULTS / "calorimetry_speed.json").write_text(json.dumps(out, indent=2))


def main(scale: str = "small") -> None:
    torch.set_num_threads(1)
    out = RESULTS / "calorimetry"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    t0 = time.perf_counter()
    report = run_study(out, scale, seed=0, device="cpu", progress=False)
    report["wall_seconds"] = time.perf_counter() - t0
    report["command"] = f"OMP_NUM_THREADS=1 python benchmarks/calorimetry.py {scale}"
    report["machine"] = "2 shared CPU cores, one torch thread; no GPU in this run"
    (RESULTS / "calorimetry.json").write_text(json.dumps(report, indent=2, default=str))
    print(markdown_summary(report))
    for name, t in report["targets"].items():
        print(f"{name}: {t['value']} -> {'met' if t['met'] else 'NOT met'}")


if __name__ == "__main__":
    if sys.argv[1:] == ["speed"]:
        speed()
    else:
        main(*sys.argv[1:])
