"""The cells study: predict a cell type's response to a perturbation it was never seen under.

Data: a registered AnnData (by default the semi-synthetic benchmark of ``gensci.cells.data``).
Task: leave one cell type out; for every type with >= `min_cells` cells and both conditions, train
on all cells except that type's perturbed ones and predict them from its controls.
Model: the core VAE with latent arithmetic (scGen) and, if asked, the conditional VAE.
Baselines: control-as-prediction, gene-space mean shift, PCA-space arithmetic.
Metrics: ``gensci.cells.metrics`` on all genes and the top-100 DEGs, with bootstrap intervals.
Figures: mean-expression scatter with the DEGs marked; PCA (or UMAP) of the three populations.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gensci.cells import baselines
from gensci.cells.metrics import (
    METRICS,
    evaluate_prediction,
    strip_replicates,
    summarise,
    top_degs,
)
from gensci.cells.model import (
    DEFAULT_MAX_EPOCHS,
    DEFAULT_PATIENCE,
    OUTPUTS,
    PerturbationModel,
    leave_out,
)
from gensci.cells.registry import cell_mask, dense_rows, expression_matrix, get_registry
from gensci.errors import ConfigError, DataError
from gensci.runtime import atomic_write_text, finish_out_dir, prepare_out_dir

# Model sizes. "full" is scGen's: 2 x 800 hidden, latent 100, KL weight 5e-5.
SCALES: dict[str, dict[str, Any]] = {
    "tiny": {"latent_dim": 8, "hidden": (32, 32), "max_epochs": 5, "batch_size": 64,
             "patience": 5, "n_bootstrap": 20},
    "small": {"latent_dim": 32, "hidden": (256, 256), "max_epochs": 60, "batch_size": 32,
              "patience": 10, "n_bootstrap": 100},
    "full": {"latent_dim": 100, "hidden": (800, 800), "max_epochs": DEFAULT_MAX_EPOCHS,
             "batch_size": 32, "patience": DEFAULT_PATIENCE, "n_bootstrap": 200},
}
BASELINES = ("control", "gene_shift", "pca_shift")
# "vae_regression": decoded output with each cell's delta from the type regression (scVIDR)
MODEL_METHODS = ("vae", "vae_decoded", "vae_residual", "vae_regression", "cvae", "cvae_decoded",
                 "cvae_residual")


@dataclass
class StudyConfig:
    """What the study runs: model scale, methods, held-out types, seed, device."""

    scale: str = "full"
    methods: tuple[str, ...] = ("vae",)  # "vae" = vae with `output`; see MODEL_METHODS
    output: str = "decoded"
    cell_types: tuple[str, ...] | None = None  # None: every type with >= min_cells cells
    min_cells: int = 50
    n_degs: int = 100
    balance: str = "upsample"
    ridge: float = 1.0  # penalty of the regression delta ("vae_regression")
    step: float | str = 1.0  # latent step of the VAE methods: 1 = scGen, "auto" = calibrated
    kl_weight: float = 5e-5
    pca_components: int = 50
    seed: int = 0
    device: str = "cpu"
    progress: bool = True
    figures: bool = True
    embedding: str = "pca"
    save_predictions: bool = True
    overrides: dict[str, Any] = field(default_factory=dict)  # e.g. {"max_epochs": 3}

    def __post_init__(self) -> None:
        if self.scale not in SCALES:
            raise ConfigError(f"unknown scale {self.scale!r}; choose one of {list(SCALES)}")
        bad = [m for m in self.methods if m not in MODEL_METHODS]
        if bad:
            raise ConfigError(f"unknown methods {bad}; choose from {MODEL_METHODS}")
        if self.output not in OUTPUTS:
            raise ConfigError(f"unknown output {self.output!r}; choose one of {OUTPUTS}")
        if not self.ridge > 0:
            raise ConfigError(f"ridge must be > 0, got {self.ridge}")
        if self.step != "auto" and not (
            isinstance(self.step, (int, float)) and np.isfinite(self.step) and self.step > 0
        ):
            raise ConfigError(f"step must be a positive number or 'auto', got {self.step!r}")

    def settings(self) -> dict[str, Any]:
        """Return the model and training settings of the scale, with overrides applied."""
        s = dict(SCALES[self.scale])
        unknown = sorted(set(self.overrides) - set(s))
        if unknown:
            raise ConfigError(f"unknown overrides {unknown}; known: {sorted(s)}")
        s.update(self.overrides)
        return s


def slug(name: str) -> str:
    """Return `name` made safe for a file name ("CD4+/CD25 T Reg" -> "CD4p_CD25_T_Reg")."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name.replace("+", "p")).strip("_") or "type"


def eligible_cell_types(adata, min_cells: int = 50) -> list[str]:  # type: ignore[no-untyped-def]
    """Return the cell types with >= `min_cells` cells and cells in both conditions, sorted."""
    reg = get_registry(adata)
    types = adata.obs[reg.cell_type_key].astype(str).to_numpy()
    ctrl = cell_mask(adata, reg, "control")
    pert = cell_mask(adata, reg, "perturbed")
    keep = []
    for t in sorted(set(types)):
        m = types == t
        if (ctrl | pert)[m].sum() >= min_cells and ctrl[m].any() and pert[m].any():
            keep.append(t)
    return keep


def _model_for(method: str) -> tuple[str, str | None, str]:
    """Return (family, output, delta) of a method name: 'vae' -> ('vae', None, 'mean'), None
    meaning the configured output; 'vae_regression' -> ('vae', 'decoded', 'regression')."""
    family, _, out = method.partition("_")
    if out == "regression":
        return family, "decoded", "regression"
    return family, (out or None), "mean"


def evaluate_cell_type(adata, cell_type: str, cfg: StudyConfig) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Return {"metrics": {method: metrics}, "predictions": {method: (n, G)}, "degs", ...} for one
    held-out cell type: train on the other cells, predict its perturbed cells, score."""
    reg = get_registry(adata)
    s = cfg.settings()
    M = expression_matrix(adata, reg.layer)
    types = adata.obs[reg.cell_type_key].astype(str).to_numpy()
    is_ctrl = cell_mask(adata, reg, "control")
    is_pert = cell_mask(adata, reg, "perturbed")
    target_ctrl = is_ctrl & (types == cell_type)
    target_pert = is_pert & (types == cell_type)
    if not target_ctrl.any() or not target_pert.any():
        raise DataError(f"cell type {cell_type!r} needs control and perturbed cells to be scored")
    ctrl_x = dense_rows(M, np.flatnonzero(target_ctrl))
    real_x = dense_rows(M, np.flatnonzero(target_pert))
    train = (is_ctrl | is_pert) & ~target_pert
    train_x = dense_rows(M, np.flatnonzero(train))
    train_types, train_pert = types[train], is_pert[train]
    deg = top_degs(ctrl_x, real_x, adata.var_names, n=min(cfg.n_degs, adata.n_vars))

    preds: dict[str, np.ndarray] = {
        "control": baselines.control_as_prediction(ctrl_x),
        "gene_shift": baselines.gene_shift_prediction(
            train_x, train_types, train_pert, ctrl_x, cfg.balance, cfg.seed),
        "pca_shift": baselines.pca_shift_prediction(
            train_x, train_types, train_pert, ctrl_x, cfg.pca_components, cfg.balance, cfg.seed),
    }
    timings: dict[str, float] = {}
    models: dict[str, PerturbationModel] = {}
    train_adata = leave_out(adata, cell_type)
    for method in cfg.methods:
        family, out, delta = _model_for(method)
        if family not in models:
            t0 = time.perf_counter()
            model = PerturbationModel(
                train_adata, latent_dim=s["latent_dim"], hidden=s["hidden"],
                kl_weight=cfg.kl_weight, conditional=(family == "cvae"),
            )
            model.train(
                max_epochs=s["max_epochs"], batch_size=s["batch_size"], patience=s["patience"],
                seed=cfg.seed, device=cfg.device, progress=cfg.progress,
            )
            timings[family] = time.perf_counter() - t0
            models[family] = model
        pred = models[family].predict(
            cell_type, adata=adata, balance=cfg.balance, seed=cfg.seed,
            n_bootstrap=s["n_bootstrap"], output=out or cfg.output, delta=delta, ridge=cfg.ridge,
            step=cfg.step if family == "vae" else 1.0,
        )
        preds[method] = dense_rows(pred.X)
    metrics = {
        name: evaluate_prediction(p, real_x, ctrl_x, deg, s["n_bootstrap"], cfg.seed)
        for name, p in preds.items()
    }
    return {
        "metrics": metrics, "predictions": preds, "degs": deg, "control": ctrl_x,
        "real": real_x, "train_seconds": timings,
        "models": models,
        "n_cells": {"control": int(target_ctrl.sum()), "perturbed": int(target_pert.sum())},
    }


def _fmt(m: dict) -> str:
    if m.get("ci_low") is None or m.get("ci_high") is None:
        return f"{m['value']:.3f} (no interval)"
    return f"{m['value']:.3f} [{m['ci_low']:.3f}, {m['ci_high']:.3f}]"


def _report(result: dict[str, Any]) -> str:
    """Return the study's Markdown report."""
    methods = result["methods"]
    lines = [
        "# Single-cell perturbation: leave-one-cell-type-out",
        "",
        f"Data: {result['data']['n_cells']} cells x {result['data']['n_genes']} genes "
        f"({result['data']['state']}); keys {result['data']['registry']}.",
        f"Scale `{result['config']['scale']}`, seed {result['config']['seed']}; intervals: "
        "2.5-97.5% bootstrap over cells.",
        "",
        "## Mean over held-out cell types",
        "",
        "| method | " + " | ".join(METRICS) + " |",
        "|---|" + "---|" * len(METRICS),
    ]
    for m in methods:
        row = result["summary"][m]
        lines.append(f"| {m} | " + " | ".join(_fmt(row[k]) for k in METRICS) + " |")
    lines += ["", "## Per held-out cell type (R^2 on top DEGs; Pearson r^2 on top DEGs)", ""]
    lines.append("| cell type | cells (ctrl/pert) | " + " | ".join(methods) + " |")
    lines.append("|---|---|" + "---|" * len(methods))
    for t, res in result["per_type"].items():
        cells = f"{res['n_cells']['control']}/{res['n_cells']['perturbed']}"
        vals = [
            f"{res['metrics'][m]['r2_deg']['value']:.3f}; "
            f"{res['metrics'][m]['r2_pearson_deg']['value']:.3f}"
            for m in methods
        ]
        lines.append(f"| {t} | {cells} | " + " | ".join(vals) + " |")
    lines += ["", "## Against the targets", ""]
    for line in result["verdict"]["lines"]:
        lines.append(f"- {line}")
    lines.append("")
    return "\n".join(lines)


def _verdict(per_type: dict[str, Any], summary: dict[str, Any], methods: list[str]) -> dict:
    """Return the comparison of each model method with the baselines (mean and per type)."""
    out: dict[str, Any] = {"lines": []}
    for m in [x for x in methods if x not in BASELINES]:
        mean = summary[m]["r2_deg"]["value"]
        beats = {b: mean > summary[b]["r2_deg"]["value"] for b in BASELINES}
        losing = [
            t for t, r in per_type.items()
            # a NaN score counts as not beating the baseline
            if not r["metrics"][m]["r2_deg"]["value"] > r["metrics"]["gene_shift"]["r2_deg"]["value"]
        ]
        dc = summary[m]["delta_corr_deg"]["value"]
        out[m] = {"mean_r2_deg": mean, "beats": beats, "delta_corr_deg": dc,
                  "delta_corr_target_met": dc >= 0.8, "not_beating_gene_shift": losing}
        out["lines"].append(
            f"{m}: mean R^2 on top DEGs {mean:.3f}; beats "
            + ", ".join(f"{b} {'yes' if v else 'NO'}" for b, v in beats.items())
            + f"; delta correlation on DEGs {dc:.3f} (target >= 0.8: "
            + ("met" if dc >= 0.8 else "NOT met") + ")"
            + (f"; does not beat gene_shift on: {', '.join(losing)}" if losing else "")
        )
    return out


def run_study(
    adata,  # type: ignore[no-untyped-def]
    out_dir: str | Path | None,
    cfg: StudyConfig | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Return the study's results (JSON-ready); with `out_dir`, also write the report folder.

    The folder holds metrics.json, report.md, figures/ (scatter and embedding per type, and
    the step calibration curve when step="auto") and predicted/<type>.h5ad (the first model
    method's predictions).
    """
    from tqdm.auto import tqdm

    cfg = cfg or StudyConfig()
    reg = get_registry(adata)
    out = prepare_out_dir(out_dir, overwrite) if out_dir is not None else None
    types = list(cfg.cell_types) if cfg.cell_types else eligible_cell_types(adata, cfg.min_cells)
    if not types:
        raise DataError(f"no cell type has >= {cfg.min_cells} cells in both conditions")
    eligible = set(eligible_cell_types(adata, 1))
    missing = [t for t in types if t not in eligible]
    if missing:
        raise DataError(
            f"cell types {missing} lack control or perturbed cells (have {sorted(eligible)})"
        )
    methods = list(BASELINES) + list(cfg.methods)
    per_type: dict[str, Any] = {}
    raw: dict[str, Any] = {}
    t_start = time.perf_counter()
    for t in tqdm(types, desc="held-out cell types", disable=not cfg.progress):
        res = evaluate_cell_type(adata, t, cfg)
        raw[t] = res
        per_type[t] = {
            "metrics": {m: strip_replicates(res["metrics"][m]) for m in methods},
            "n_cells": res["n_cells"],
            "train_seconds": res["train_seconds"],
            "top_degs": [str(adata.var_names[j]) for j in res["degs"][:20]],
        }
        if out is not None:
            _write_type_outputs(adata, out, t, res, cfg, overwrite)
    summary = {m: summarise({t: raw[t]["metrics"][m] for t in types}) for m in methods}
    from gensci.cells.registry import check_data_state

    result = {
        "config": {**asdict(cfg), "settings": cfg.settings()},
        "data": {"n_cells": int(adata.n_obs), "n_genes": int(adata.n_vars),
                 "state": check_data_state(adata, reg.layer).state,
                 "registry": reg.to_dict()},
        "cell_types": types,
        "methods": methods,
        "per_type": per_type,
        "summary": summary,
        "seconds": time.perf_counter() - t_start,
    }
    result["verdict"] = _verdict(per_type, summary, methods)
    if out is not None:
        atomic_write_text(out / "metrics.json", json.dumps(result, indent=2, default=_json),
                          overwrite=overwrite)
        atomic_write_text(out / "report.md", _report(result), overwrite=overwrite)
        finish_out_dir(out)
    return result


def _json(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON-ready: {type(o)}")


def _write_type_outputs(adata, out: Path, cell_type: str, res: dict, cfg: StudyConfig,  # type: ignore[no-untyped-def]
                        overwrite: bool) -> None:
    from gensci.cells import plots
    from gensci.runtime import atomic_save

    name = slug(cell_type)
    main = cfg.methods[0] if cfg.methods else "pca_shift"
    pred = res["predictions"][main]
    if cfg.figures:
        plots.mean_scatter(
            pred, res["real"], list(adata.var_names), res["degs"],
            out / "figures" / f"{name}_scatter.png", title=f"{cell_type}: {main}",
            overwrite=overwrite,
        )
        plots.embedding_plot(
            res["control"], res["real"], pred, out / "figures" / f"{name}_{cfg.embedding}.png",
            method=cfg.embedding, title=f"{cell_type}: control, real and predicted ({main})",
            seed=cfg.seed, overwrite=overwrite,
        )
        if cfg.step == "auto" and main not in BASELINES and _model_for(main)[0] == "vae":
            family, o, delta = _model_for(main)
            _, curve = res["models"][family].calibrate_step(
                delta=delta, output=o or cfg.output, balance=cfg.balance, ridge=cfg.ridge,
                seed=cfg.seed)
            plots.step_curve(
                curve["step"], curve["loss"], out / "figures" / f"{name}_step.png",
                title=f"{cell_type}: step calibration ({main})", overwrite=overwrite,
            )
    if cfg.save_predictions and main in res["predictions"] and main not in BASELINES:
        family, o, delta = _model_for(main)
        p = res["models"][family].predict(
            cell_type, adata=adata, balance=cfg.balance, seed=cfg.seed, n_bootstrap=0,
            output=o or cfg.output, delta=delta, ridge=cfg.ridge,
            step=cfg.step if family == "vae" else 1.0,
        )
        atomic_save(out / "predicted" / f"{name}.h5ad", lambda tmp: p.write_h5ad(tmp),
                    overwrite=overwrite, suffix=".h5ad")
