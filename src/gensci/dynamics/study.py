"""The dynamics study: physics of interacting defects learned from unpaired snapshots.

Data: Euler-Maruyama snapshots of N defects released from a cluster (gensci.dynamics.simulate).
Model: the core's score model, time-conditioned, exchangeable and periodic (score_fit).
Task: (A, k, r0, D) from the score Fokker-Planck residual; a non-parametric pair potential.
Baselines: weak-form generator regression (snapshots) and the trajectory oracle (tracked data).
Metrics: parameter errors, drift R^2 on held-out configurations, the pair potential's R^2, the
residual and the transport distance of each model class (the wrong ones must lose).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gensci.dynamics.baselines import ParamFit, oracle_fit, weak_form_fit
from gensci.dynamics.io import Snapshots
from gensci.dynamics.physics import (
    DefectParams,
    drift,
    pair_drift,
    pinning_drift,
    screened,
)
from gensci.dynamics.score_fit import (
    ScoreModelConfig,
    ScorePoints,
    fitted_drift,
    score_design,
    score_fit,
    score_points,
    train_score_model,
)
from gensci.dynamics.simulate import simulate
from gensci.errors import ConfigError
from gensci.runtime import atomic_write_text

TRUTH_KEYS = ("A", "k", "r0", "D")


# -- metrics ----------------------------------------------------------------------------------------
def relative_errors(values: dict[str, float], truth: DefectParams) -> dict[str, float]:
    """Return |estimate - truth| / truth for A, k, r0 and D."""
    true = {"A": truth.A, "k": truth.k, "r0": truth.r0, "D": truth.D}
    return {k: abs(values.get(k, math.nan) - v) / v for k, v in true.items() if v}


def r2(pred: np.ndarray, true: np.ndarray) -> float:
    """Return 1 - SS_res / SS_tot."""
    pred, true = np.asarray(pred).ravel(), np.asarray(true).ravel()
    return float(1 - np.sum((pred - true) ** 2) / np.sum((true - true.mean()) ** 2))


def drift_r2(x: np.ndarray, truth: DefectParams, values: dict[str, float]) -> float:
    """Return the R^2 of the fitted drift against the true drift at configurations x (M, N, d)."""
    xt = torch.as_tensor(x, dtype=torch.float64)
    return r2(fitted_drift(xt, truth, values).numpy(), drift(xt, truth).numpy())


def invariant_features(x: torch.Tensor, box: float, modes: int = 8, bins: int = 12) -> torch.Tensor:
    """Return permutation-invariant features of configurations x (M, N, d) -> (M, F).

    Mean Fourier modes of the positions (m = 1..modes) and a soft histogram of pair distances.
    """
    m, n, d = x.shape
    ks = 2 * math.pi * torch.arange(1, modes + 1, dtype=x.dtype) / box
    ph = x.unsqueeze(-1) * ks
    four = torch.cat([torch.cos(ph).mean(1), torch.sin(ph).mean(1)], -1).reshape(m, -1)
    delta = x.unsqueeze(2) - x.unsqueeze(1)
    delta = delta - box * torch.round(delta / box)
    r = delta.pow(2).sum(-1).sqrt()
    iu = torch.triu_indices(n, n, 1)
    r = r[:, iu[0], iu[1]]
    centres = torch.linspace(0, box / 2, bins, dtype=x.dtype)
    w = centres[1] - centres[0]
    hist = torch.exp(-0.5 * ((r.unsqueeze(-1) - centres) / w) ** 2).mean(1)
    return torch.cat([four, hist], -1)


def energy_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Return the energy distance 2 E|a - b| - E|a - a'| - E|b - b'| between feature samples."""
    ab = torch.cdist(a, b).mean()
    aa = torch.cdist(a, a).mean()
    bb = torch.cdist(b, b).mean()
    return float(2 * ab - aa - bb)


# -- transport --------------------------------------------------------------------------------------
def transport(
    x: torch.Tensor,
    t0: float,
    t1: float,
    velocity,  # type: ignore[no-untyped-def]
    box: float,
    substeps: int = 10,
) -> torch.Tensor:
    """Return x (M, N, d) moved from t0 to t1 along velocity(x, t) by Heun steps, wrapped."""
    h = (t1 - t0) / substeps
    t = t0
    for _ in range(substeps):
        v0 = velocity(x, t)
        x1 = x + h * v0
        x = x + 0.5 * h * (v0 + velocity(x1, t + h))
        t += h
    return torch.remainder(x, box)


def transport_check(
    model: Any,
    t_scale: float,
    s: Snapshots,
    p: DefectParams,
    values: dict[str, float],
    pairs: int = 4,
    per_time: int = 400,
    substeps: int = 10,
) -> dict[str, float]:
    """Return the mean energy distance of snapshot t_k moved along f - D s to t_{k+1}, vs unmoved.

    Over the first `pairs` intervals (where the density changes most).
    """
    tau = torch.zeros(1)
    moved_d, still_d = [], []

    def velocity(x: torch.Tensor, t: float) -> torch.Tensor:
        cond = torch.full((len(x), 1), t / t_scale, dtype=torch.float32)
        with torch.no_grad():
            sc = model.score(x.float(), tau, cond=cond).double()
        return fitted_drift(x, p, values) - values["D"] * sc

    for k in range(min(pairs, len(s.times) - 1)):
        x0 = torch.as_tensor(s.positions[k][:per_time], dtype=torch.float64)
        x1 = torch.as_tensor(s.positions[k + 1][:per_time], dtype=torch.float64)
        moved = transport(x0, float(s.times[k]), float(s.times[k + 1]), velocity, s.box, substeps)
        f1 = invariant_features(x1, s.box)
        moved_d.append(energy_distance(invariant_features(moved, s.box), f1))
        still_d.append(energy_distance(invariant_features(x0, s.box), f1))
    return {"moved": float(np.mean(moved_d)), "unmoved": float(np.mean(still_d))}


# -- non-parametric pair potential ------------------------------------------------------------------
@dataclass
class PairBasis:
    """phi(r) = sum_m c_m b_m(r), b_m Gaussian bumps in log r (decaying to 0 at long range)."""

    centres: np.ndarray
    width: float

    def values(self, r: torch.Tensor) -> torch.Tensor:
        """Return b_m(r): (..., M)."""
        z = (torch.log(r).unsqueeze(-1) - torch.as_tensor(np.log(self.centres))) / self.width
        return torch.exp(-z * z)

    def slopes(self, r: torch.Tensor) -> torch.Tensor:
        """Return b_m'(r): (..., M)."""
        z = (torch.log(r).unsqueeze(-1) - torch.as_tensor(np.log(self.centres))) / self.width
        return torch.exp(-z * z) * (-2 * z / self.width) / r.unsqueeze(-1)


def fit_pair_potential(
    pts: ScorePoints, p: DefectParams, n_basis: int = 10, ridge: float = 1e-6
) -> tuple[PairBasis, np.ndarray, dict[str, float]]:
    """Return (basis, coefficients, {A, D}) with the pair potential phi free (score residual)."""
    basis = PairBasis(np.geomspace(0.15, 0.8 * p.box / 2, n_basis),
                      float(np.log(0.8 * p.box / 2 / 0.15) / (n_basis - 1)) * 1.2)

    def fields(z: torch.Tensor) -> tuple[list[str], list[torch.Tensor]]:
        out = [pinning_drift(z, p.a, p.gamma)]
        for m in range(n_basis):
            out.append(pair_drift(z, p.box, 1.0, p.gamma, slope=lambda r, m=m: basis.slopes(r)[..., m]))
        return ["A"] + [f"c{m}" for m in range(n_basis)], out

    _, X, y = score_design(pts, p, 1.0, "full", basis=fields)
    scale = np.linalg.norm(X, axis=0) + 1e-300
    Xs = X / scale
    theta = np.linalg.solve(Xs.T @ Xs + ridge * len(y) * np.eye(X.shape[1]), Xs.T @ y) / scale
    return basis, theta[1:-1], {"A": float(theta[0]), "D": float(theta[-1])}


def potential_r2(basis: PairBasis, coef: np.ndarray, p: DefectParams) -> tuple[float, np.ndarray,
                                                                              np.ndarray, np.ndarray]:
    """Return (R^2, r, learned, true) of the pair potential over r in [0.5 r0, 4 r0]."""
    r = torch.linspace(0.5 * p.r0, 4 * p.r0, 200, dtype=torch.float64)
    learned = (basis.values(r) @ torch.as_tensor(coef)).numpy()
    true = (p.k * screened(r, p.r0)).numpy()
    return r2(learned, true), r.numpy(), learned, true


# -- the study --------------------------------------------------------------------------------------
SCALES: dict[str, dict[str, Any]] = {
    # 20 snapshots x 2,000 configurations of N = 8 on a line: the setting
    "full": {"n": 8, "times": 20, "configs": 2000, "t_max": 2.0, "steps": 3000, "points": 120,
             "tracks": 200, "bootstrap": 5},
    "small": {"n": 8, "times": 10, "configs": 300, "t_max": 2.0, "steps": 600, "points": 40,
              "tracks": 50, "bootstrap": 5},
    "tiny": {"n": 4, "times": 4, "configs": 60, "t_max": 0.6, "steps": 20, "points": 8,
             "tracks": 10, "bootstrap": 2},
}


def make_data(scale: str, seed: int = 0, n: int | None = None, progress: bool = True
              ) -> tuple[Snapshots, Snapshots, DefectParams]:
    """Return (training snapshots with tracks, held-out snapshots, truth) at a named scale."""
    if scale not in SCALES:
        raise ConfigError(f"unknown scale {scale!r}; choose one of {sorted(SCALES)}")
    c = SCALES[scale]
    n = n or c["n"]
    p = DefectParams(n=n, box=float(n))
    times = np.linspace(c["t_max"] / c["times"], c["t_max"], c["times"])
    s = simulate(p, times, c["configs"], track=True, frame_dt=1e-3, seed=seed, progress=progress)
    s.tracks = s.tracks[: c["tracks"]] if s.tracks is not None else None
    held = simulate(p, times, max(100, c["configs"] // 10), seed=seed + 1000)
    return s, held, p


def known_part(p: DefectParams) -> DefectParams:
    """Return what a user knows (box, lattice period, friction); the rest set to placeholders."""
    return replace(p, A=1.0, k=1.0, r0=1.0, kT=1.0)


def run_fits(
    s: Snapshots,
    held: Snapshots | None,
    known: DefectParams,
    truth: DefectParams | None,
    score_config: ScoreModelConfig,
    points: int = 120,
    n_bootstrap: int = 10,
    seed: int = 0,
    device: str = "auto",
    progress: bool = True,
    model_classes: tuple[str, ...] = ("full", "no_pair", "no_pinning"),
    model: Any = None,
    t_scale: float | None = None,
) -> dict[str, Any]:
    """Return every method's estimates (and errors against `truth` when given) on snapshots s."""
    out: dict[str, Any] = {"fits": []}
    if model is None:
        model, t_scale, seconds = train_score_model(s, score_config, seed=seed, device=device,
                                                    progress=progress)
        out["train_seconds"] = seconds
        model = model.cpu()
    assert t_scale is not None
    start = time.perf_counter()
    pts = score_points(model, t_scale, s, per_time=points, seed=seed)
    out["derivative_seconds"] = time.perf_counter() - start
    fits: list[ParamFit] = []
    for mc in model_classes:
        fits.append(score_fit(pts, known, mc, n_bootstrap=n_bootstrap if mc == "full" else 0,
                              seed=seed))
        fits.append(weak_form_fit(s, known, mc, n_bootstrap=n_bootstrap if mc == "full" else 0,
                                  seed=seed))
        if s.tracks is not None:
            fits.append(oracle_fit(s, known, mc, n_bootstrap=n_bootstrap if mc == "full" else 0,
                                   seed=seed))
    for f in fits:
        row = f.to_dict()
        row["transport"] = transport_check(model, t_scale, s, known, f.values)
        if truth is not None:
            row["errors"] = relative_errors(f.values, truth)
            if held is not None:
                x = np.concatenate(held.positions)
                row["drift_r2"] = drift_r2(x, truth, f.values)
        out["fits"].append(row)
    basis, coef, rest = fit_pair_potential(pts, known)
    out["pair_potential"] = {"A": rest["A"], "D": rest["D"], "coef": coef.tolist(),
                             "centres": basis.centres.tolist(), "width": basis.width}
    if truth is not None:
        out["pair_potential"]["r2"] = potential_r2(basis, coef, truth)[0]
    out["model"] = model
    out["t_scale"] = t_scale
    out["basis"] = (basis, coef)
    return out


def summary_table(fits: list[dict[str, Any]]) -> str:
    """Return a Markdown table of the fits."""
    lines = ["| method | model | A | k | r0 | D | residual | transport (moved / unmoved) | "
             "drift R^2 |", "|---|---|---|---|---|---|---|---|---|"]
    for f in fits:
        v = f["values"]
        tr = f.get("transport", {})
        lines.append(
            f"| {f['method']} | {f['model']} | {v['A']:.3f} | {v['k']:.3f} | {v['r0']:.3f} | "
            f"{v['D']:.3f} | {f['residual']:.3f} | {tr.get('moved', math.nan):.4f} / "
            f"{tr.get('unmoved', math.nan):.4f} | {f.get('drift_r2', math.nan):.3f} |"
        )
    return "\n".join(lines)


def plot_potential(path: Path, basis: PairBasis, coef: np.ndarray, truth: DefectParams | None,
                   fits: list[dict[str, Any]], known: DefectParams) -> None:
    """Write a figure of the recovered pair potentials (and the truth when known)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r0 = truth.r0 if truth is not None else 0.5
    r = torch.linspace(0.5 * r0, 4 * r0, 200, dtype=torch.float64)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    if truth is not None:
        ax.plot(r, truth.k * screened(r, truth.r0), "k-", lw=2, label="truth")
    for f in fits:
        if f["model"] == "full" and math.isfinite(f["values"]["r0"]):
            v = f["values"]
            ax.plot(r, v["k"] * screened(r, v["r0"]), "--", label=f"{f['method']} (parametric)")
    ax.plot(r, basis.values(r) @ torch.as_tensor(coef), ":", lw=2, label="score, non-parametric")
    ax.set_xlabel("r")
    ax.set_ylabel("phi(r)")
    ax.set_yscale("symlog", linthresh=0.05)
    ax.legend(fontsize=7)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)


def write_report(out: Path, result: dict[str, Any], truth: DefectParams | None,
                 known: DefectParams, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write fit.json, fit.md and potential.png into `out`; return the JSON-ready record."""
    record = {k: v for k, v in result.items() if k not in ("model", "basis")}
    record["truth"] = asdict(truth) | {"D": truth.D} if truth is not None else None
    record["known"] = {"box": known.box, "a": known.a, "gamma": known.gamma}
    record.update(extra or {})
    atomic_write_text(out / "fit.json", json.dumps(record, indent=1, default=float), True)
    atomic_write_text(out / "fit.md", summary_table(result["fits"]) + "\n", True)
    basis, coef = result["basis"]
    plot_potential(out / "potential.png", basis, coef, truth, result["fits"], known)
    return record


def run_study(out_dir: Path, scale: str = "small", seed: int = 0, device: str = "cpu",
              n: int | None = None) -> dict[str, Any]:
    """Simulate at a named scale, fit every method and model class, write the report into out_dir.

    Returns the JSON-ready record (as fit.json); the score model goes to out_dir/score.safetensors.
    """
    from gensci.dynamics.score_fit import MODEL_FILE, ScoreModelConfig, save_score_model

    if scale not in SCALES:
        raise ConfigError(f"unknown scale {scale!r}; choose one of {sorted(SCALES)}")
    c = SCALES[scale]
    s, held, truth = make_data(scale, seed=seed, n=n)
    result = run_fits(s, held, known_part(truth), truth, ScoreModelConfig(steps=c["steps"]),
                      points=c["points"], n_bootstrap=c["bootstrap"], seed=seed, device=device)
    save_score_model(result["model"], result["t_scale"], out_dir / MODEL_FILE,
                     {"data": f"study --scale {scale} --seed {seed}", "steps": c["steps"],
                      "seed": seed}, overwrite=True)
    return write_report(out_dir, result, truth, known_part(truth), {"scale": scale, "seed": seed})
