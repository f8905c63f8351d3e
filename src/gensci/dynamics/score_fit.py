"""The score method: a time-conditioned score model of the snapshots, then physics by least squares.

1. Train the core's DiffusionModel (net='set': exchangeable and periodic; prediction='grad';
   a VE schedule kept at small noise) by denoising score matching on (x, t) pairs, t the
   observation time as the condition. s(x, t) = model.score(x, tau=0 (sigma_min), cond=t).
2. At sample points of every snapshot take ds/dt through the network (forward mode), the
   Jacobian of s and grad div s (gensci.dynamics.fokker_planck).
3. The score Fokker-Planck residual is linear in (A, k, D) for a fixed r0:
       ds/dt = A b_A + k b_k(r0) + D b_D,   b_j = grad[-div g_j - g_j . s],  b_D = grad[div s + |s|^2]
   solved by least squares, r0 profiled; intervals by bootstrap over the sample points of each
   snapshot (the network held fixed).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gensci import checkpoint
from gensci.dynamics.baselines import ParamFit, _values, intervals, lstsq, profile_r0
from gensci.dynamics.fokker_planck import (
    FieldDerivatives,
    diffusion_term,
    drift_term,
    field_derivatives,
    time_derivative,
)
from gensci.dynamics.io import Snapshots
from gensci.dynamics.physics import DefectParams, drift_basis, pair_drift, pinning_drift
from gensci.errors import CheckpointError, ConfigError, DataError, ShapeError
from gensci.models import DiffusionConfig, DiffusionModel
from gensci.train import TrainConfig, Trainer

MODEL_FILE = "score.safetensors"


@dataclass
class ScoreModelConfig:
    width: int = 32
    harmonics: int = 16
    sigma_min: float = 0.02
    sigma_max: float = 0.15
    steps: int = 3000
    batch_size: int = 256
    lr: float = 2e-3


def build_score_model(s: Snapshots, c: ScoreModelConfig) -> DiffusionModel:
    """Return an untrained score model for configurations of shape (N, d) in the box of `s`."""
    cfg = DiffusionConfig(
        data_shape=(s.n, s.dim), sde="ve", sigma_min=c.sigma_min, sigma_max=c.sigma_max,
        net="set", prediction="grad", cond_dim=1, period=s.box, harmonics=c.harmonics,
        set_width=c.width, time_dim=16,
    )
    return DiffusionModel(cfg)


def training_pairs(s: Snapshots, t_scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (x (M_total, N, d), t / t_scale (M_total, 1)) over all snapshots, float32."""
    xs = [torch.as_tensor(x, dtype=torch.float32) for x in s.positions]
    ts = [torch.full((len(x), 1), t / t_scale, dtype=torch.float32)
          for x, t in zip(s.positions, s.times, strict=True)]
    return torch.cat(xs), torch.cat(ts)


def train_score_model(
    s: Snapshots,
    c: ScoreModelConfig,
    seed: int = 0,
    device: str = "auto",
    out_dir: str | Path | None = None,
    progress: bool = True,
    accumulate: int = 1,
) -> tuple[DiffusionModel, float, float]:
    """Return (model, t_scale, seconds): the score model trained by the core Trainer."""
    torch.manual_seed(seed)
    model = build_score_model(s, c)
    t_scale = float(max(s.times[-1], 1e-12))
    x, t = training_pairs(s, t_scale)
    tc = TrainConfig(
        steps=c.steps, batch_size=c.batch_size, lr=c.lr, lr_schedule="cosine",
        warmup_steps=min(100, c.steps // 10), ema_decay=0.99, seed=seed, device=device,
        out_dir=None if out_dir is None else str(out_dir), progress=progress,
        log_every=max(1, min(200, c.steps)), accumulate=accumulate,
    )
    start = time.perf_counter()
    Trainer(model, (x, t), tc).fit()
    return model.eval(), t_scale, time.perf_counter() - start


def save_score_model(
    model: DiffusionModel, t_scale: float, path: Path, meta: dict[str, object],
    overwrite: bool = False,
) -> Path:
    """Write the model with its time scale and provenance; return the path."""
    return checkpoint.save(model, path, overwrite=overwrite,
                           metadata={"t_scale": t_scale, **meta})


def load_score_model(path: str | Path, s: Snapshots) -> tuple[DiffusionModel, float]:
    """Return (model, t_scale) stored at `path`, refusing one trained on another N, d or box."""
    p = Path(path)
    if p.is_dir():
        p = p / MODEL_FILE
    model = checkpoint.load(p, device="cpu")
    if not isinstance(model, DiffusionModel) or model.config.net != "set":
        raise CheckpointError(f"{p} does not hold a score model of defect configurations")
    shape = tuple(model.config.data_shape)
    if shape != (s.n, s.dim):
        raise ShapeError(
            f"{p} was trained on N = {shape[0]} defects in {shape[1]}-D, but the snapshots hold "
            f"N = {s.n} in {s.dim}-D"
        )
    if not math.isclose(model.config.period, s.box):
        raise ShapeError(f"{p} was trained in a box of {model.config.period}, snapshots: {s.box}")
    meta = checkpoint.load_metadata(p)
    t_scale = meta.get("t_scale")
    if not isinstance(t_scale, (int, float)) or not t_scale > 0:
        raise CheckpointError(f"{p} lacks the time scale it was trained with (t_scale)")
    return model, float(t_scale)


@dataclass
class ScorePoints:
    """Sample points and the learned score's derivatives there, per snapshot time."""

    x: list[torch.Tensor]  # (P, N, d) per time, float64
    s: list[FieldDerivatives]
    ds_dt: list[torch.Tensor]  # (P, n)
    times: np.ndarray


def score_points(
    model: DiffusionModel,
    t_scale: float,
    s: Snapshots,
    per_time: int = 200,
    seed: int = 0,
    times: list[int] | None = None,
) -> ScorePoints:
    """Return the learned score and its derivatives at `per_time` configurations per snapshot."""
    m = _double_copy(model)
    n_, d = s.n, s.dim
    tau = torch.zeros(1, dtype=torch.float64)

    def score(xf: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        cond = (t / t_scale).reshape(1, 1)
        return m.score(xf.reshape(1, n_, d), tau, cond=cond).reshape(n_ * d)

    rng = np.random.default_rng(seed)
    xs, ss, dts = [], [], []
    idx = range(len(s.times)) if times is None else times
    for i in idx:
        pos = s.positions[i]
        pick = rng.choice(len(pos), size=min(per_time, len(pos)), replace=False)
        x = torch.as_tensor(pos[pick], dtype=torch.float64)
        xf = x.reshape(len(x), -1)
        t = torch.full((len(x),), float(s.times[i]), dtype=torch.float64)
        xs.append(x)
        ss.append(field_derivatives(score, xf, t))
        dts.append(time_derivative(score, xf, t))
    return ScorePoints(xs, ss, dts, np.asarray(s.times)[list(idx)])


def _double_copy(model: DiffusionModel) -> DiffusionModel:
    import copy

    m = copy.deepcopy(model).double().eval()
    for prm in m.parameters():
        prm.requires_grad_(False)
    return m


def _drift_derivatives(fields_fn, x: torch.Tensor) -> list[FieldDerivatives]:  # type: ignore[no-untyped-def]
    """Return the derivatives of each basis field g_j at x: (P, N, d)."""
    shape = x.shape[1:]
    n_fields = len(fields_fn(x[:1]))
    out = []
    for j in range(n_fields):
        def g(xf: torch.Tensor, j: int = j) -> torch.Tensor:
            return fields_fn(xf.reshape(1, *shape))[j].reshape(-1)

        out.append(field_derivatives(g, x.reshape(len(x), -1)))
    return out


def score_design(
    pts: ScorePoints, p: DefectParams, r0: float, model: str, rows: list[np.ndarray] | None = None,
    basis=None,  # type: ignore[no-untyped-def]
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Return (names, X (rows, J + 1), y (rows,)): ds/dt = X [theta, D] at every sample point.

    basis(z) -> (names, fields) replaces the parametric drift basis of `model` when given.
    """
    if basis is None:
        def basis(z: torch.Tensor) -> tuple[list[str], list[torch.Tensor]]:
            return drift_basis(z, p, r0, model)
    Xs, ys, names = [], [], []
    for i, (x, sd, dsdt) in enumerate(zip(pts.x, pts.s, pts.ds_dt, strict=True)):
        sel = slice(None) if rows is None else torch.as_tensor(rows[i])
        x_i = x[sel]
        s_i = FieldDerivatives(sd.value[sel], sd.jac[sel], sd.grad_div[sel])
        names, _ = basis(x_i[:1])
        derivs = _drift_derivatives(lambda z: basis(z)[1], x_i)
        cols = [drift_term(g, s_i) for g in derivs] + [diffusion_term(s_i)]
        Xs.append(torch.stack(cols, -1).reshape(-1, len(cols)).numpy())
        ys.append(dsdt[sel].reshape(-1).numpy())
    return names, np.concatenate(Xs), np.concatenate(ys)


def score_fit(
    pts: ScorePoints,
    p: DefectParams,
    model: str = "full",
    r0_range: tuple[float, float] = (0.15, 2.0),
    n_bootstrap: int = 0,
    seed: int = 0,
) -> ParamFit:
    """Return (A, k, r0, D) from the score Fokker-Planck residual; bootstrap over sample points."""
    if len(pts.times) < 2:
        raise DataError(
            f"D is separable from the drift only when the density changes: the score method "
            f"needs snapshots at two or more times, got {len(pts.times)}"
        )
    start = time.perf_counter()
    fit = _score_once(pts, p, model, r0_range, None)
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_bootstrap):
        rows = [rng.integers(0, len(x), len(x)) for x in pts.x]
        draws.append(_score_once(pts, p, model, r0_range, rows).values)
    fit.intervals = intervals(draws)
    fit.seconds = time.perf_counter() - start
    return fit


def _score_once(
    pts: ScorePoints, p: DefectParams, model: str, r0_range: tuple[float, float],
    rows: list[np.ndarray] | None,
) -> ParamFit:
    cache: dict[float, tuple[list[str], np.ndarray, np.ndarray]] = {}

    def design(r0: float) -> tuple[list[str], np.ndarray, np.ndarray]:
        if r0 not in cache:
            cache[r0] = score_design(pts, p, r0, model, rows)
        return cache[r0]

    def solve(r0: float) -> tuple[np.ndarray, float]:
        _, X, y = design(r0)
        return lstsq(X, y)

    if model == "no_pair":
        r0: float | None = None
        theta, rss = solve(1.0)
    else:
        r0, theta, rss = profile_r0(solve, *r0_range, grid=9, refine=10)
    names, _, y = design(r0 or 1.0)
    values = _values(names, theta[:-1], r0, float(theta[-1]))
    return ParamFit("score", model, values, math.sqrt(rss / max(float(np.sum(y**2)), 1e-300)))


def equilibrium_directions(pts: ScorePoints, p: DefectParams, r0: float) -> dict[str, object]:
    """Return the singular values of the (A, k, D) design and its flattest direction.

    At equilibrium ds/dt = 0 and the residual cannot fix the scale of (A, k, D): the design's
    smallest singular vector lies along the truth (A, k, kT) / gamma, only U / kT is identified.
    """
    _, X, y = score_design(pts, p, r0, "full")
    _, sv, vt = np.linalg.svd(X / np.linalg.norm(X, axis=0), full_matrices=False)
    v = vt[-1] / np.linalg.norm(X, axis=0)
    v = v / v[-1]
    return {"singular_values": sv.tolist(), "flat_direction_over_D": v.tolist(),
            "ds_dt_rms": float(np.sqrt(np.mean(y**2)))}


def fitted_drift(x: torch.Tensor, p: DefectParams, values: dict[str, float]) -> torch.Tensor:
    """Return the drift of the fitted parameters at x: (B, N, d)."""
    f = values["A"] * pinning_drift(x, p.a, p.gamma)
    if values.get("k", 0.0) and math.isfinite(values.get("r0", math.nan)):
        f = f + values["k"] * pair_drift(x, p.box, values["r0"], p.gamma)
    return f


def check_model_matches(model: DiffusionModel, s: Snapshots, where: str) -> None:
    """Raise ShapeError naming `where` if the model was built for other configurations."""
    if tuple(model.config.data_shape) != (s.n, s.dim):
        raise ShapeError(f"{where}: model is for (N, d) = {model.config.data_shape}, data "
                         f"({s.n}, {s.dim})")
    if model.config.cond_dim != 1:
        raise ConfigError(f"{where}: the score model must be conditioned on time (cond_dim 1)")
