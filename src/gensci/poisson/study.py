"""The Poisson surrogate study: data, models, physics checks, and a report folder.

Data: seeded rho families solved exactly (gensci.poisson.data). Models: a conditional diffusion
surrogate and a regression baseline of the same UNet (gensci.poisson.surrogate), trained by the
core Trainer. Task: solve rho -> phi. Metrics: relative L2 to the exact solution, relative discrete
residual, maximum boundary violation, per family and out of distribution. Figure: rho, exact phi,
surrogate phi, error and residual maps.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from gensci import checkpoint
from gensci.errors import CheckpointError, ConfigError
from gensci.poisson.data import PoissonDataset
from gensci.poisson.metrics import (
    max_boundary_violation,
    relative_discrete_residual,
    relative_l2,
)
from gensci.poisson.solver import poisson_cg, residual_map, solve_poisson
from gensci.poisson.surrogate import (
    PoissonSurrogate,
    SurrogateConfig,
    fit_u_scale,
    predict,
    training_tensors,
)
from gensci.runtime import atomic_write_text, barrier, is_main_process
from gensci.train import TrainConfig, Trainer, read_training_state

MODEL_FILE = "model.safetensors"
SHIPPED_DIR = Path(__file__).parent / "models"
SHIPPED_SURROGATE = "regression-64.safetensors"


def shipped_surrogate() -> Path:
    """Return the regression surrogate shipped with gensci (64 x 64, trained on the mixture).

    Its provenance (data, command, steps, seed, measured errors) is in models/PROVENANCE.md.
    """
    path = SHIPPED_DIR / SHIPPED_SURROGATE
    if not path.is_file():
        raise CheckpointError(f"the shipped surrogate {path} is missing from this installation")
    return path


def train_surrogate(
    dataset: PoissonDataset,
    out_dir: str | Path,
    kind: str = "diffusion",
    train_config: TrainConfig | None = None,
    val_dataset: PoissonDataset | None = None,
    a: np.ndarray | None = None,
    overwrite: bool = False,
    **model_options: Any,
) -> PoissonSurrogate:
    """Return a surrogate trained on `dataset` by the core Trainer; resumable from out_dir/last.pt.

    Writes out_dir/model.safetensors (weights + config + training metadata) at the end. `a`: the
    (B, N, N) coefficients for a variable-coefficient dataset (then coefficient_channel is set).
    """
    out = Path(out_dir)
    if (out / MODEL_FILE).exists() and not overwrite:
        raise ConfigError(
            f"{out / MODEL_FILE} exists (training finished); pass --overwrite to train again"
        )
    cfg_path = out / "surrogate_config.json"
    if cfg_path.exists() and (out / "last.pt").exists():
        # resuming: the model must be rebuilt exactly as it was started, and only so
        config = read_surrogate_config(cfg_path)
        _refuse_changed_settings(out, config, {"kind": kind, "n": dataset.n,
                                               "coefficient_channel": a is not None,
                                               **model_options})
    else:
        u_scale = fit_u_scale(dataset.rho, dataset.phi, dataset.boundary)
        config = SurrogateConfig(
            kind=kind, n=dataset.n, u_scale=u_scale, coefficient_channel=a is not None,
            **model_options,
        )
        if is_main_process():
            out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(cfg_path, json.dumps(asdict(config)), overwrite=True)
    model = PoissonSurrogate(config)
    data = training_tensors(config, dataset.rho, dataset.phi, dataset.boundary, a)
    val = None
    if val_dataset is not None:
        val = training_tensors(config, val_dataset.rho, val_dataset.phi, val_dataset.boundary)
    tc = train_config or TrainConfig()
    tc.out_dir = str(out)
    start = time.perf_counter()
    history = Trainer(model, data, tc, val_data=val).fit()
    meta = {
        "command": shlex.join(["gensci", *sys.argv[1:]]) if sys.argv[0].endswith("gensci")
        else shlex.join(sys.argv),
        "train_params": dataset.params,
        "train_config": asdict(tc),
        "seconds_this_run": time.perf_counter() - start,
        "final_loss": history[-1].get("loss") if history else None,
    }
    if is_main_process():
        checkpoint.save(model, out / MODEL_FILE, overwrite=True, metadata=meta)
    barrier()
    return model


def load_surrogate(path: str | Path, device: str | None = None) -> PoissonSurrogate:
    """Return the surrogate stored at `path` (a model.safetensors file or its folder)."""
    p = Path(path)
    if p.is_dir():
        if (p / MODEL_FILE).exists():
            p = p / MODEL_FILE
        elif (p / "last.pt").exists():
            return load_training_state(p, device)
        else:
            raise CheckpointError(f"{p} holds neither {MODEL_FILE} nor last.pt")
    model = checkpoint.load(p, device=device)
    if not isinstance(model, PoissonSurrogate):
        raise CheckpointError(f"{p} holds a {type(model).__name__}, not a Poisson surrogate")
    return model


def check_and_refine(rho: np.ndarray, boundary: np.ndarray | None, phi: np.ndarray,
                     tol: float | None = None, progress: bool = False,
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Estimate each answer's relative L2 error without the truth; refine those above tol.

    rho, phi: (B, N, N); boundary: (B, N, N) or None. Returns (phi refined where its estimate
    exceeded tol, the estimates before, the estimates after, preconditioned CG iterations spent).
    With tol None nothing is refined. See gensci.poisson.elliptic for the estimate.
    """
    from gensci.poisson.elliptic import (
        EllipticSystem,
        amg_hierarchy,
        estimate_error,
        refine_to_tolerance,
    )

    system = EllipticSystem(phi.shape[-1])
    ml = amg_hierarchy(system)
    phi = np.array(phi, dtype=np.float64)
    est, after = np.empty(len(phi)), np.empty(len(phi))
    iterations = 0
    for i in tqdm(range(len(phi)), desc="checking answers", disable=not progress):
        g = None if boundary is None else boundary[i]
        b = system.rhs(rho[i], g)
        u = system.gather(phi[i])
        est[i] = after[i] = estimate_error(system, ml, b, u, g)
        if tol is not None and est[i] > tol:
            r = refine_to_tolerance(system, ml, b, u, tol, g)
            phi[i], after[i] = system.scatter(r.u, g), r.estimate_after
            iterations += r.iterations
    return phi, est, after, iterations


def _refuse_changed_settings(out: Path, config: SurrogateConfig, asked: dict[str, Any]) -> None:
    """Raise ConfigError if a resumed run is asked for settings other than it was started with."""
    have = asdict(config)

    def plain(v: Any) -> Any:
        return list(v) if isinstance(v, tuple) else v

    changed = {k: (have.get(k), v) for k, v in asked.items() if plain(have.get(k)) != plain(v)}
    if changed:
        diff = ", ".join(f"{k}: {was!r} -> {now!r}" for k, (was, now) in changed.items())
        raise ConfigError(
            f"{out} holds a run started with other settings ({diff}); resume it with the same "
            "settings, or start over with --overwrite or another --out"
        )


def read_surrogate_config(path: Path) -> SurrogateConfig:
    """Return the SurrogateConfig stored in a run folder's surrogate_config.json; raise
    CheckpointError naming the file if it is empty, not UTF-8, not a JSON object or invalid."""
    from gensci.config import config_from_dict
    from gensci.files import parse_json_object, read_text

    stored = parse_json_object(
        read_text(path, "surrogate config", CheckpointError, CheckpointError, CheckpointError),
        str(path), CheckpointError,
    )
    try:
        return config_from_dict(SurrogateConfig, stored)
    except ConfigError as exc:
        raise CheckpointError(f"{path}: {exc}") from None


def load_training_state(folder: str | Path, device: str | None = None) -> PoissonSurrogate:
    """Return the surrogate of an unfinished run (its EMA weights if kept) from folder/last.pt."""
    folder = Path(folder)
    cfg_path = folder / "surrogate_config.json"
    if not cfg_path.exists():
        raise CheckpointError(f"{folder} has last.pt but no surrogate_config.json")
    config = read_surrogate_config(cfg_path)
    model = PoissonSurrogate(config)
    state = read_training_state(folder / "last.pt")
    try:
        model.load_state_dict(state["ema"] if state.get("ema") is not None else state["model"])
    except (RuntimeError, KeyError, TypeError) as exc:
        raise CheckpointError(
            f"{folder / 'last.pt'} does not fit the model of {cfg_path.name}: "
            f"{str(exc).splitlines()[0][:200]}"
        ) from None
    if device is not None:
        model.to(device)
    return model.eval()


# ----------------------------------------------------------------------------------------------
# Evaluation and report


def evaluate(
    pred: np.ndarray, ds: PoissonDataset
) -> dict[str, np.ndarray]:
    """Return per-example relative L2, relative residual and max boundary violation of pred.

    pred: (B, N, N) solutions for the examples of `ds`.
    """
    return {
        "rel_l2": relative_l2(pred, ds.phi),
        "rel_residual": relative_discrete_residual(pred, ds.rho),
        "boundary_violation": max_boundary_violation(pred, ds.boundary),
    }


def summarise(metrics: dict[str, np.ndarray], family: np.ndarray) -> dict[str, dict[str, float]]:
    """Return {family | "all": {metric_mean, metric_median, ...}} from per-example metrics."""
    out: dict[str, dict[str, float]] = {}
    for name in ["all", *sorted(set(family.tolist()))]:
        sel = np.ones(family.shape, bool) if name == "all" else family == name
        row: dict[str, float] = {"count": int(sel.sum())}
        for key, vals in metrics.items():
            v = vals[sel]
            row[f"{key}_mean"] = float(v.mean())
            row[f"{key}_median"] = float(np.median(v))
            if key == "boundary_violation":
                row[f"{key}_max"] = float(v.max())
        out[name] = row
    return out


def cg_iterations(
    ds: PoissonDataset, phi0: np.ndarray | None, tol: float = 1e-8
) -> np.ndarray:
    """Return the CG iterations to relative residual `tol` per example, from zero or from phi0."""
    its = []
    for i in range(len(ds)):
        start = None if phi0 is None else phi0[i]
        res = poisson_cg(ds.rho[i], ds.boundary[i], phi0=start, tol=tol)
        if not res.converged:
            raise ConfigError(f"CG did not reach {tol} on example {i} ({res.history[-1]:.3g})")
        its.append(res.iterations)
    return np.array(its)


def plot_examples(
    ds: PoissonDataset, preds: dict[str, np.ndarray], path: str | Path, count: int = 3
) -> Path:
    """Write a figure: per example, rho | exact phi | each surrogate phi, its error and residual."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(preds)
    cols = 2 + 3 * len(names)
    count = min(count, len(ds))
    fig, axes = plt.subplots(count, cols, figsize=(2.1 * cols, 2.1 * count), squeeze=False)
    for r in range(count):
        panels = [("rho", ds.rho[r], "RdBu_r"), ("exact phi", ds.phi[r], "viridis")]
        for name in names:
            p = preds[name][r]
            panels += [
                (f"{name} phi", p, "viridis"),
                (f"{name} error", p - ds.phi[r], "RdBu_r"),
                (f"{name} residual", residual_map(p, ds.rho[r]), "RdBu_r"),
            ]
        for c, (title, img, cmap) in enumerate(panels):
            ax = axes[r, c]
            lim = np.abs(img).max() or 1.0
            kw = {"vmin": -lim, "vmax": lim} if cmap == "RdBu_r" else {}
            ax.imshow(img.T, origin="lower", cmap=cmap, **kw)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=7)
        axes[r, 0].set_ylabel(str(ds.family[r]), fontsize=7)
    fig.tight_layout()
    path = Path(path)

    def writer(tmp: Path) -> None:
        fig.savefig(tmp, dpi=110, format="png")

    from gensci.runtime import atomic_save

    atomic_save(path, writer, overwrite=True, suffix=".png")
    plt.close(fig)
    return path


def run_study(
    ds: PoissonDataset,
    models: dict[str, PoissonSurrogate],
    out_dir: str | Path,
    steps: int = 16,
    guidance: float = 0.0,
    seed: int = 0,
    warm_start: bool = False,
    progress: bool = True,
    refine_t: float = 0.1,
    project: int = 0,
) -> dict[str, Any]:
    """Return the study table (also written to out_dir/table.{json,md} with figure examples.png).

    For every model: soft and hard (exact boundary) outputs; with guidance > 0 also the guided
    diffusion sample, with project > 0 the sample whose DDIM estimates take that many CG
    iterations on the PDE; with a diffusion and a regression model, the diffusion model refining the
    regression answer from refine_t; with warm_start, CG iterations to 1e-8 from zero and from
    each output.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table: dict[str, Any] = {"n_examples": len(ds), "n": ds.n, "data_params": ds.params}
    t = time.perf_counter()
    exact = solve_poisson(ds.rho, ds.boundary)
    seconds = time.perf_counter() - t
    table["exact"] = {"seconds": seconds, **summarise(evaluate(exact, ds), ds.family)}
    preds: dict[str, np.ndarray] = {}
    for name, model in models.items():
        variants = [("hard", True, 0.0, 0), ("soft", False, 0.0, 0)]
        if guidance and model.config.kind == "diffusion":
            variants.append(("guided", True, guidance, 0))
        if project and model.config.kind == "diffusion":
            variants.append((f"projected_{project}", True, 0.0, project))
        for label, hard, weight, iters in variants:
            t = time.perf_counter()
            pred = predict(model, ds.rho, ds.boundary, steps=steps, hard=hard, guidance=weight,
                           project=iters, seed=seed, progress=progress)[0]
            key = f"{name}/{label}"
            row: dict[str, Any] = {"seconds": time.perf_counter() - t}
            row.update(summarise(evaluate(pred, ds), ds.family))
            if warm_start and hard:
                row["cg_iterations_warm_mean"] = float(cg_iterations(ds, pred).mean())
            table[key] = row
            if label != "soft":
                preds[key] = pred
    diffusion = [m for m in models.values() if m.config.kind == "diffusion"]
    if diffusion and "regression/hard" in preds:
        # the diffusion model as a refiner of the regression answer (SDEdit from t_start)
        for label, weight in [("refine", 0.0)] + ([("refine_guided", guidance)] if guidance else []):
            t = time.perf_counter()
            pred = predict(diffusion[0], ds.rho, ds.boundary, steps=steps, guidance=weight,
                           seed=seed, init=preds["regression/hard"], t_start=refine_t)[0]
            row = {"seconds": time.perf_counter() - t, **summarise(evaluate(pred, ds), ds.family)}
            if warm_start:
                row["cg_iterations_warm_mean"] = float(cg_iterations(ds, pred).mean())
            table[f"diffusion/{label}"] = row
            preds[f"diffusion/{label}"] = pred
    if warm_start:
        table["cg_iterations_cold_mean"] = float(cg_iterations(ds, None).mean())
    atomic_write_text(out / "table.json", json.dumps(table, indent=2), overwrite=True)
    atomic_write_text(out / "table.md", markdown_table(table), overwrite=True)
    plot_examples(ds, preds, out / "examples.png")
    return table


def markdown_table(table: dict[str, Any]) -> str:
    """Return the study table as Markdown: one row per method, all-family means."""
    lines = [
        "| method | rel L2 (mean) | rel residual (median) | max boundary violation | seconds |",
        "|---|---|---|---|---|",
    ]
    for key, row in table.items():
        if not isinstance(row, dict) or "all" not in row:
            continue
        a = row["all"]
        lines.append(
            f"| {key} | {a['rel_l2_mean']:.3%} | {a['rel_residual_median']:.3g} | "
            f"{a['boundary_violation_max']:.3g} | {row['seconds']:.2f} |"
        )
    if "cg_iterations_cold_mean" in table:
        lines.append("")
        lines.append(f"CG iterations to 1e-8 from zero: {table['cg_iterations_cold_mean']:.1f}")
        for key, row in table.items():
            if isinstance(row, dict) and "cg_iterations_warm_mean" in row:
                lines.append(f"CG iterations from {key}: {row['cg_iterations_warm_mean']:.1f}")
    return "\n".join(lines) + "\n"
