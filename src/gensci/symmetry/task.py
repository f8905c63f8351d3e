"""Compressed sensing with a generative prior (Bora et al. 2017) and its sparsity baseline.

    y = A x + sigma eps,   A: (m, n) with entries N(0, 1 / m),   n = H * W.

Generative prior: x_hat = G(z_hat), z_hat the latent MAP of gensci.inverse.latent with restarts.
Baseline: Lasso in an orthonormal Haar wavelet basis W, c_hat = argmin 0.5 ||A W^T c - y||^2 +
lam ||c||_1 (FISTA), x_hat = W^T c_hat. Success: ||x_hat - x|| / ||x|| < 0.1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from gensci.errors import ConfigError, DataError, ShapeError, check_finite
from gensci.inverse.latent import latent_map_batch
from gensci.inverse.operators import LinearOperator

SUCCESS_THRESHOLD = 0.1


class GaussianMeasurement(LinearOperator):
    """A dense measurement matrix A: (m, H * W) acting on images x: (B, 1, H, W) -> y: (B, m)."""

    def __init__(self, matrix: torch.Tensor, size: int) -> None:
        if matrix.dim() != 2:
            raise ShapeError(f"A has shape {tuple(matrix.shape)}, expected (m, {size * size})")
        if matrix.shape[0] < 1:
            raise ShapeError("A has m = 0 rows: at least one measurement is needed")
        if matrix.shape[1] != size * size:
            raise ShapeError(
                f"A has {matrix.shape[1]} columns but the images have {size} x {size} = "
                f"{size * size} pixels"
            )
        check_finite(matrix, "A")
        self.matrix = matrix
        self.in_shape = (1, size, size)
        self.out_shape = (int(matrix.shape[0]),)
        self.device = matrix.device

    @classmethod
    def gaussian(
        cls, m: int, size: int, generator: torch.Generator | None = None
    ) -> GaussianMeasurement:
        """Return A with i.i.d. N(0, 1/m) entries (so E ||A x||^2 = ||x||^2)."""
        if m < 1:
            raise ConfigError(f"m must be >= 1 measurements, got {m}")
        a = torch.randn((m, size * size), generator=generator) / math.sqrt(m)
        return cls(a, size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.matrix.to(x.dtype).T

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return (y @ self.matrix.to(y.dtype)).reshape(y.shape[0], *self.in_shape)


def relative_error(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Return ||x_hat - x|| / ||x|| per image, (B,)."""
    return (x_hat - x).flatten(1).norm(dim=1) / x.flatten(1).norm(dim=1).clamp_min(1e-12)


# -- the generative prior -------------------------------------------------------------------------
@dataclass
class Recovery:
    """x_hat: (B, 1, H, W); seconds: wall time per image; residual: ||A x_hat - y|| / (sigma
    sqrt(m)) per image, (B,), about 1 when the fit reaches the noise level."""

    x_hat: torch.Tensor
    seconds: float
    residual: torch.Tensor


def noise_residual(
    op: GaussianMeasurement, x_hat: torch.Tensor, y: torch.Tensor, noise_std: float
) -> torch.Tensor:
    """Return ||A x_hat - y|| / (sigma sqrt(m)) per image: the truth-free check of a fit."""
    m = op.out_shape[0]
    return (op.forward(x_hat) - y).norm(dim=1) / (noise_std * math.sqrt(m))


def recover_latent(
    model: nn.Module,
    op: GaussianMeasurement,
    y: torch.Tensor,
    noise_std: float,
    steps: int = 300,
    restarts: int = 4,
    lr: float = 0.05,
    lam: float = 1.0,
    seed: int = 0,
    progress: bool = False,
) -> Recovery:
    """Return the latent-MAP recovery of each row of y: (B, m) under the generator model.decode."""
    import time

    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    best = latent_map_batch(
        model.decode, model.config.latent_dim, op, y, noise_std, lam=lam, steps=steps, lr=lr,
        restarts=restarts, generator=gen, progress=progress,
    )
    seconds = (time.perf_counter() - t0) / y.shape[0]
    return Recovery(best.x, seconds, noise_residual(op, best.x, y, noise_std))


# -- the sparsity baseline ------------------------------------------------------------------------
def haar(x: torch.Tensor) -> torch.Tensor:
    """Return the orthonormal 2-D Haar coefficients of x: (B, 1, H, W) (H = W a power of 2),
    laid out in place: the coarsest average at [0, 0]."""
    c = x.clone()
    n = x.shape[-1]
    if n & (n - 1):
        raise ShapeError(f"the Haar transform needs a power-of-2 size, got {n}")
    s = math.sqrt(0.5)
    while n > 1:
        h = n // 2
        a = c[..., :n, :n]
        rows = torch.cat([(a[..., 0::2, :] + a[..., 1::2, :]) * s,
                          (a[..., 0::2, :] - a[..., 1::2, :]) * s], dim=-2)
        cols = torch.cat([(rows[..., 0::2] + rows[..., 1::2]) * s,
                          (rows[..., 0::2] - rows[..., 1::2]) * s], dim=-1)
        c[..., :n, :n] = cols
        n = h
    return c


def ihaar(c: torch.Tensor) -> torch.Tensor:
    """Return the image whose Haar coefficients are c: (B, 1, H, W) (the inverse of `haar`)."""
    x = c.clone()
    size = c.shape[-1]
    s = math.sqrt(0.5)
    n = 2
    while n <= size:
        h = n // 2
        a = x[..., :n, :n].clone()
        cols = torch.empty_like(a)
        cols[..., 0::2] = (a[..., :h] + a[..., h:]) * s
        cols[..., 1::2] = (a[..., :h] - a[..., h:]) * s
        rows = torch.empty_like(a)
        rows[..., 0::2, :] = (cols[..., :h, :] + cols[..., h:, :]) * s
        rows[..., 1::2, :] = (cols[..., :h, :] - cols[..., h:, :]) * s
        x[..., :n, :n] = rows
        n *= 2
    return x


def lasso_haar(
    op: GaussianMeasurement, y: torch.Tensor, alpha: float, iterations: int = 300
) -> torch.Tensor:
    """Return x_hat: (B, 1, H, W) = W^T c_hat, c_hat the Lasso solution by FISTA with
    lam = alpha * ||A^T y||_inf per image (the coarsest average is not penalised)."""
    if alpha <= 0:
        raise ConfigError(f"the Lasso weight alpha must be > 0, got {alpha}")
    step = 1.0 / op.norm() ** 2
    aty = op.adjoint(y)
    lam = alpha * aty.flatten(1).abs().amax(1).view(-1, 1, 1, 1)
    free = torch.zeros_like(aty[:1])
    free[..., 0, 0] = 1.0
    c = torch.zeros_like(aty)
    v, t = c.clone(), 1.0
    for _ in range(iterations):
        grad = haar(op.adjoint(op.forward(ihaar(v)) - y))
        u = v - step * grad
        shrunk = torch.sign(u) * (u.abs() - step * lam).clamp_min(0)
        c_new = free * u + (1 - free) * shrunk
        t_new = (1 + math.sqrt(1 + 4 * t * t)) / 2
        v = c_new + (t - 1) / t_new * (c_new - c)
        c, t = c_new, t_new
    return ihaar(c)


# -- measurements and the sweep's summary ---------------------------------------------------------
def measure(
    x: torch.Tensor, m: int, noise_std: float, seed: int
) -> tuple[GaussianMeasurement, torch.Tensor]:
    """Return (A, y = A x + sigma eps) for images x: (B, 1, H, W), one seeded A for all."""
    gen = torch.Generator().manual_seed(seed)
    op = GaussianMeasurement.gaussian(m, x.shape[-1], gen)
    y = op.forward(x) + noise_std * torch.randn((x.shape[0], m), generator=gen)
    return op, y


def m_star(ms: list[int], success: list[float], level: float = 0.9) -> int | None:
    """Return the smallest m whose success rate is >= level and stays so for every larger m
    measured, or None if none is."""
    if len(ms) != len(success):
        raise DataError(f"{len(ms)} values of m but {len(success)} success rates")
    found = None
    for m, s in sorted(zip(ms, success, strict=True), reverse=True):
        if s >= level - 1e-6:  # 27 of 30 is 0.9 (stored as a float32, 0.89999998)
            found = m
        else:
            break
    return found


def as_numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy()
