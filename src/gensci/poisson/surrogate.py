"""Learned solution operators rho -> phi for the 5-point Poisson problem, built on the core.

Both surrogates learn the zero-boundary part of the solution. With the harmonic lift H g of the
boundary values (gensci.poisson.solver.harmonic_lift), phi = H g + u, where u solves L u = rho
with u = 0 on the ring and does not depend on g. The networks therefore see rho only (the lift
can be added as a second condition channel), and return u in normalised units:

    u = s(rho) * c * x,    s(rho) = std of rho over the grid,  c = dataset scale of u / s(rho).

Dividing by s(rho) is exact for a linear operator (u(k rho) = k u(rho)); c standardises u per
dataset. Two outputs are offered:

- soft:  phi = H g + u                (the network's ring values are whatever it learned)
- hard:  phi = H g + m * u, m = 1 inside, 0 on the ring, so phi = g on the ring exactly.

`kind="diffusion"`: a core DiffusionModel (net="unet") over x = u / (s c), conditioned on rho / s,
trained by the core's denoising score matching and sampled by the core samplers.
`kind="regression"`: the same core UNet as a deterministic map rho / s -> x (t fixed at 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from gensci.checkpoint import register_model
from gensci.errors import ConfigError, ShapeError
from gensci.models import DiffusionConfig, DiffusionModel
from gensci.models.samplers import SAMPLERS, ddim  # noqa: F401  (re-exported)
from gensci.nn import UNet, UNetConfig
from gensci.poisson.solver import check_grid, grid_spacing, harmonic_lift, laplacian_torch


@dataclass
class SurrogateConfig:
    """Settings of a Poisson surrogate; `u_scale` and grid size are fixed by the training data."""

    kind: str = "diffusion"  # "diffusion" | "regression"
    n: int = 64  # nodes per side
    u_scale: float = 1.0  # c: dataset std of u / std(rho)
    boundary_channel: bool = False  # add the harmonic lift (normalised) as a condition channel
    coefficient_channel: bool = False  # add log a as a condition channel (div(a grad phi) = rho)
    base_channels: int = 16
    channel_mults: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 1
    time_dim: int = 64
    sde: str = "vp"
    beta_min: float = 0.1
    beta_max: float = 20.0
    prediction: str = "eps"  # what the diffusion network predicts: eps | x0 | v (core option)

    def __post_init__(self) -> None:
        self.channel_mults = tuple(int(m) for m in self.channel_mults)
        if self.kind not in ("diffusion", "regression"):
            raise ConfigError(f"unknown surrogate kind {self.kind!r}; choose diffusion|regression")
        factor = 2 ** (len(self.channel_mults) - 1)
        if self.n % factor:
            raise ConfigError(
                f"grid size N = {self.n} must be divisible by {factor} for channel_mults "
                f"{self.channel_mults}"
            )
        if self.u_scale <= 0:
            raise ConfigError(f"u_scale must be positive; got {self.u_scale}")

    @property
    def cond_channels(self) -> int:
        return 1 + int(self.boundary_channel) + int(self.coefficient_channel)


class PoissonSurrogate(nn.Module):
    """A diffusion or regression surrogate; its `loss(batch, step)` lets the core Trainer fit it.

    batch = (x, cond): x: (B, 1, N, N) normalised u, cond: (B, cond_channels, N, N).
    """

    def __init__(self, config: SurrogateConfig) -> None:
        super().__init__()
        self.config = c = config
        if c.kind == "diffusion":
            self.diffusion = DiffusionModel(
                DiffusionConfig(
                    data_shape=(1, c.n, c.n), sde=c.sde, beta_min=c.beta_min, beta_max=c.beta_max,
                    net="unet", base_channels=c.base_channels, channel_mults=c.channel_mults,
                    num_res_blocks=c.num_res_blocks, cond_channels=c.cond_channels,
                    time_dim=c.time_dim, prediction=c.prediction,
                )
            )
        else:
            # The regression net is the same UNet with the condition as its input channels.
            self.net = UNet(
                UNetConfig(
                    in_channels=c.cond_channels, out_channels=1, base_channels=c.base_channels,
                    channel_mults=c.channel_mults, num_res_blocks=c.num_res_blocks,
                    time_dim=max(c.time_dim, 32),
                )
            )

    def regress(self, cond: torch.Tensor) -> torch.Tensor:
        """Return the regression output x: (B, 1, N, N) for cond: (B, cond_channels, N, N)."""
        t = torch.zeros(cond.shape[0], device=cond.device)
        return self.net(cond, t)

    def loss(self, batch: tuple[torch.Tensor, ...], step: int = 0) -> torch.Tensor:
        """Return the training loss: the core DSM loss, or the mean squared error of regression."""
        if len(batch) != 2:
            raise ShapeError(f"a surrogate batch is (x, cond); got {len(batch)} tensors")
        x, cond = batch
        if self.config.kind == "diffusion":
            return self.diffusion.loss((x, cond), step)
        return F.mse_loss(self.regress(cond), x)


register_model(PoissonSurrogate, SurrogateConfig)


# ----------------------------------------------------------------------------------------------
# Normalisation


def rho_scale(rho: np.ndarray) -> np.ndarray:
    """Return s(rho): (B,) the std of each field over the grid (1 where a field is all zero)."""
    s = rho.reshape(rho.shape[0], -1).std(axis=1)
    return np.where(s > 0, s, 1.0)


def fit_u_scale(rho: np.ndarray, phi: np.ndarray, boundary: np.ndarray) -> float:
    """Return c = std over the dataset of (phi - H g) / s(rho): the per-dataset scale of u."""
    u = (phi - harmonic_lift(boundary)) / rho_scale(rho)[:, None, None]
    return float(u.std())


def coefficient_feature(a: np.ndarray) -> np.ndarray:
    """Return log a: (B, N, N), the condition channel of a variable-coefficient surrogate."""
    return np.log(a)


def make_condition(
    config: SurrogateConfig,
    rho: np.ndarray,
    boundary: np.ndarray | None = None,
    a: np.ndarray | None = None,
) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Return (cond (B, C, N, N) float32, s (B,), lift (B, N, N)) for a batch of rho."""
    rho = np.asarray(rho, dtype=np.float64)
    if rho.ndim == 2:
        rho = rho[None]
    check_grid(rho, "rho")
    if rho.ndim != 3:
        raise ShapeError(f"rho must be (N, N) or (B, N, N); got shape {rho.shape}")
    if rho.shape[-1] != config.n:
        raise ShapeError(
            f"rho is on a {rho.shape[-1]} x {rho.shape[-1]} grid but this model was trained at "
            f"{config.n} x {config.n}; resample rho or train a model at this size"
        )
    if boundary is None:
        lift = np.zeros_like(rho)
    else:
        boundary = np.asarray(boundary, dtype=np.float64)
        if boundary.ndim == 2:
            boundary = np.broadcast_to(boundary, rho.shape)
        check_grid(boundary, "boundary", config.n)
        if boundary.shape != rho.shape:
            raise ShapeError(f"boundary has shape {boundary.shape} but rho has {rho.shape}")
        lift = harmonic_lift(boundary)
    s = rho_scale(rho)
    chans = [rho / s[:, None, None]]
    if config.boundary_channel:
        chans.append(lift / (s[:, None, None] * config.u_scale))
    if config.coefficient_channel:
        if a is None:
            raise ShapeError("this surrogate was trained for div(a grad phi) = rho: pass a")
        a = np.asarray(a, dtype=np.float64)
        if a.ndim == 2:
            a = np.broadcast_to(a, rho.shape)
        check_grid(a, "a", config.n)
        chans.append(coefficient_feature(a))
    elif a is not None:
        raise ShapeError("this surrogate was trained for the Laplacian (a = 1); a was given")
    cond = torch.from_numpy(np.stack(chans, axis=1)).float()
    return cond, s, lift


def training_tensors(
    config: SurrogateConfig,
    rho: np.ndarray,
    phi: np.ndarray,
    boundary: np.ndarray,
    a: np.ndarray | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (x (B, 1, N, N), cond (B, C, N, N)): the normalised pairs the Trainer consumes."""
    cond, s, lift = make_condition(config, rho, boundary, a)
    u = (phi - lift) / (s[:, None, None] * config.u_scale)
    return torch.from_numpy(u[:, None]).float(), cond


def assemble(
    x: np.ndarray, s: np.ndarray, lift: np.ndarray, u_scale: float, hard: bool
) -> np.ndarray:
    """Return phi = lift + (m *) s c x: (B, N, N) from the network's x: (B, N, N)."""
    u = x * (s[:, None, None] * u_scale)
    if hard:
        u = u.copy()
        u[:, 0, :] = u[:, -1, :] = 0.0
        u[:, :, 0] = u[:, :, -1] = 0.0
    return lift + u


def apply_hard_constraint(phi: np.ndarray, boundary: np.ndarray | None) -> np.ndarray:
    """Return lift + m * (phi - lift): phi with its ring replaced by the boundary values exactly.

    For a surrogate output phi = lift + u this is the hard-constrained answer lift + m u.
    phi: (B, N, N); boundary: (B, N, N) or None (zero values).
    """
    lift = np.zeros_like(phi) if boundary is None else harmonic_lift(boundary)
    u = phi - lift
    u[..., 0, :] = u[..., -1, :] = 0.0
    u[..., :, 0] = u[..., :, -1] = 0.0
    return lift + u


# DDIM (in the core samplers) is the default: a few-step sampler, exact when p(x_0 | cond) is a
# point mass, which a solution operator nearly is.
ALL_SAMPLERS = SAMPLERS  # the core samplers, DDIM among them


# ----------------------------------------------------------------------------------------------
# Physics guidance: a residual-gradient term added to the score


def guided_score_fn(
    model: DiffusionModel,
    cond: torch.Tensor,
    rho: torch.Tensor,
    lift: torch.Tensor,
    scale: torch.Tensor,
    weight: float,
    steps: int,
    sampler: str,
    hard: bool = True,
    t_start: float | None = None,
):  # type: ignore[no-untyped-def]
    """Return score_fn(x, t) = score(x, t | rho) + (residual-gradient term) for a core sampler.

    The term moves Tweedie's estimate x0 = E[x_0 | x_t] one stable gradient step down
    R(x0) = 1/2 ||L(lift + m s c x0) - rho||^2 per sampler step:
        delta x0 = -weight / (s c lam_max^2) * m L^T r,   lam_max = 8 / h^2,
    written as a score so that the sampler's step turns it into alpha(t) * delta x0.
    rho, lift: (B, N, N) float64; scale: (B,) = s c. `steps`, `sampler` and `t_start` are those
    of the run (the sampler's time step converts the x0 step into a score).
    """
    sde = model.sde
    n = rho.shape[-1]
    lam_max = 8.0 / grid_spacing(n) ** 2
    mask = torch.zeros(n, n, dtype=torch.float64, device=rho.device)
    mask[1:-1, 1:-1] = 1.0
    if not hard:
        mask = torch.ones_like(mask)
    dt = ((sde.T if t_start is None else t_start) - sde.eps) / steps
    share = 0.5 if sampler == "ode" else 1.0  # the ODE's drift carries g^2 score / 2

    def score_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        eps = model.eps(x, t, cond)
        std = sde.std(t).reshape(-1, 1, 1, 1)
        alpha = sde.alpha(t).reshape(-1, 1, 1, 1)
        score = -eps / std
        x0 = ((x - std * eps) / alpha)[:, 0].double()
        phi = lift + mask * x0 * scale[:, None, None]
        r = torch.zeros_like(phi)
        r[:, 1:-1, 1:-1] = laplacian_torch(phi) - rho[:, 1:-1, 1:-1]
        # L^T r = L r for the symmetric operator with the ring held at zero
        ltr = torch.zeros_like(phi)
        ltr[:, 1:-1, 1:-1] = laplacian_torch(r)
        delta_x0 = (-weight / (scale[:, None, None] * lam_max**2) * mask * ltr).float()[:, None]
        if sampler == "ddim":
            # DDIM's next state is alpha' x0 + std' eps: a score term tau moves it by
            # tau std (alpha' std / alpha - std'); choose tau so that it moves by alpha' delta_x0
            t2 = (t - dt).clamp_min(sde.eps)
            a2 = sde.alpha(t2).reshape(-1, 1, 1, 1)
            s2 = sde.std(t2).reshape(-1, 1, 1, 1)
            return score + a2 * delta_x0 / (std * (a2 * std / alpha - s2))
        _, g = sde.sde(x, t)
        g2 = (g**2).reshape(-1, 1, 1, 1)
        return score + alpha * delta_x0 / (share * g2 * dt)

    return score_fn


def physics_projection(
    rho: torch.Tensor,
    lift: torch.Tensor,
    scale: torch.Tensor,
    iterations: int,
    hard: bool = True,
):  # type: ignore[no-untyped-def]
    """Return denoised_fn(x0, t) for DDIM: `iterations` CG iterations on the discrete Poisson
    equation, started from the surrogate's estimate phi = lift + m s c x0.

    With r = L phi - rho at the inner nodes, the correction d (zero on the ring) solves
    -L d = r, so phi + d moves towards L phi = rho; CG on the SPD -L removes the error's
    components along the residual's Krylov space, mid frequencies included, which one gradient
    step per sampler step does not (see `guided_score_fn`). The network's noise estimate is left
    as it is, so the next step denoises around the corrected estimate.
    rho, lift: (B, N, N) float64; scale: (B,) = s c.
    """
    from gensci.inverse.nullspace import conjugate_gradient as cg

    if iterations < 1:
        raise ConfigError(f"projection iterations must be >= 1; got {iterations}")
    n = rho.shape[-1]
    mask = torch.zeros(n, n, dtype=torch.float64, device=rho.device)
    mask[1:-1, 1:-1] = 1.0
    if not hard:
        mask = torch.ones_like(mask)

    def neg_lap(v: torch.Tensor) -> torch.Tensor:
        return -laplacian_torch(torch.nn.functional.pad(v, (1, 1, 1, 1)))

    def denoised_fn(x0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        phi = lift + mask * x0[:, 0].double() * scale[:, None, None]
        r = laplacian_torch(phi) - rho[:, 1:-1, 1:-1]
        d = cg(neg_lap, r, iterations=iterations, tol=1e-14)
        out = x0.clone()
        out[:, 0, 1:-1, 1:-1] += (d / scale[:, None, None]).to(x0.dtype)
        return out

    return denoised_fn


# ----------------------------------------------------------------------------------------------
# Prediction


@torch.no_grad()
def predict(
    model: PoissonSurrogate,
    rho: np.ndarray,
    boundary: np.ndarray | None = None,
    a: np.ndarray | None = None,
    sampler: str = "ddim",
    steps: int = 16,
    eta: float = 0.0,
    n_samples: int = 1,
    hard: bool = True,
    guidance: float = 0.0,
    seed: int = 0,
    batch_size: int = 64,
    progress: bool = False,
    init: np.ndarray | None = None,
    t_start: float = 0.3,
    project: int = 0,
) -> np.ndarray:
    """Return phi: (S, B, N, N) surrogate solutions (S = n_samples; regression repeats its answer).

    rho: (B, N, N) or (N, N); boundary: same shape or None (zero); a: coefficient, only for a
    variable-coefficient surrogate. sampler: "ddim" (eta = 0 deterministic, eta = 1 stochastic),
    or a core sampler: "ode" (probability flow, Heun), "em" (reverse SDE), "pc", "langevin".
    guidance > 0 adds the residual-gradient term (diffusion only). init: (B, N, N) solutions to
    refine (SDEdit): sampling starts at t_start from alpha(t_start) u_init + std(t_start) z.
    project > 0 (DDIM only) applies that many CG iterations on the discrete Poisson equation to
    each denoised estimate (`physics_projection`).
    """
    c = model.config
    cond, s, lift = make_condition(c, rho, boundary, a)
    if sampler not in ALL_SAMPLERS:
        raise ConfigError(f"unknown sampler {sampler!r}; choose one of {sorted(ALL_SAMPLERS)}")
    if guidance and c.kind != "diffusion":
        raise ConfigError("physics guidance needs a diffusion surrogate (it acts on the sampler)")
    if guidance < 0:
        raise ConfigError(f"guidance weight must be >= 0; got {guidance}")
    if (guidance or project) and c.coefficient_channel:
        raise ConfigError("guidance and projection are implemented for the Laplacian only (a = 1)")
    if project < 0:
        raise ConfigError(f"projection iterations must be >= 0; got {project}")
    if project and (c.kind != "diffusion" or sampler != "ddim"):
        raise ConfigError("physics projection needs a diffusion surrogate sampled with DDIM")
    device = next(model.parameters()).device
    model.eval()
    b = cond.shape[0]
    out = np.empty((n_samples, b, c.n, c.n))
    gen = torch.Generator().manual_seed(seed)
    rho_arr = np.asarray(rho, dtype=np.float64).reshape(b, c.n, c.n)
    total = n_samples * ((b + batch_size - 1) // batch_size)
    bar = tqdm(total=total, desc=f"{c.kind} solves", disable=not progress)
    for k in range(n_samples):
        for i in range(0, b, batch_size):
            sl = slice(i, i + batch_size)
            cb = cond[sl].to(device)
            if c.kind == "regression":
                x = model.regress(cb)
            else:
                dm = model.diffusion
                shape = (cb.shape[0], 1, c.n, c.n)
                if guidance:
                    fn = guided_score_fn(
                        dm, cb, torch.from_numpy(rho_arr[sl]).to(device),
                        torch.from_numpy(lift[sl]).to(device),
                        torch.from_numpy(s[sl] * c.u_scale).to(device),
                        guidance, steps, sampler, hard,
                        t_start=None if init is None else t_start,
                    )
                else:

                    def fn(
                        x: torch.Tensor,
                        t: torch.Tensor,
                        dm: DiffusionModel = dm,
                        cb: torch.Tensor = cb,
                    ) -> torch.Tensor:
                        return dm.score(x, t, cb)

                kw: dict = {"eta": eta} if sampler == "ddim" else {}
                if project:
                    kw["denoised_fn"] = physics_projection(
                        torch.from_numpy(rho_arr[sl]).to(device),
                        torch.from_numpy(lift[sl]).to(device),
                        torch.from_numpy(s[sl] * c.u_scale).to(device), project, hard,
                    )
                if init is not None:
                    u0 = (np.asarray(init, dtype=np.float64).reshape(b, c.n, c.n)[sl] - lift[sl])
                    u0 = u0 / (s[sl, None, None] * c.u_scale)
                    ts = torch.tensor([t_start])
                    z = torch.randn(shape, generator=gen)
                    kw["x_init"] = (dm.sde.alpha(ts) * torch.from_numpy(u0[:, None]).float()
                                    + dm.sde.std(ts) * z).to(device)
                    kw["t_start"] = t_start
                x = ALL_SAMPLERS[sampler](
                    fn, dm.sde, shape, steps=steps, generator=gen, device=device, **kw
                )
            out[k, sl] = assemble(x[:, 0].double().cpu().numpy(), s[sl], lift[sl], c.u_scale, hard)
            bar.update(1)
    bar.close()
    return out
