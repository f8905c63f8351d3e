"""Total-variation reconstruction with non-negativity by primal-dual splitting (Chambolle-Pock).

    min_{x >= 0} 1/2 ||A x - y||^2 + lam ||grad x||_{2,1}

or, given per-measurement weights w (e.g. inverse variances of transmission data normalised to a
mean variance of 1, see gensci.inverse.noise), the weighted data term 1/2 sum w (A x - y)^2; its
proximal map in the dual is p <- w (p + s (A x_bar - y)) / (w + s).

K = [A; mu grad] with mu = ||A|| / ||grad|| so both blocks have the same norm; steps
tau = sigma = 0.99 / ||K||, with ||A|| from power iteration and ||grad||^2 <= 8, which satisfies
the convergence condition tau sigma ||K||^2 < 1 (Chambolle & Pock 2011, Alg. 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from gensci.errors import ConfigError
from gensci.inverse.operators import FiniteDifference, LinearOperator


@dataclass
class TVResult:
    """The reconstruction x: (B, 1, H, W) and the objective after each logged iteration."""

    x: torch.Tensor
    objective: list[float] = field(default_factory=list)


def tv_objective(
    op: LinearOperator,
    x: torch.Tensor,
    y: torch.Tensor,
    lam: float,
    weights: torch.Tensor | None = None,
) -> float:
    """Return 1/2 sum w (A x - y)^2 + lam ||grad x||_{2,1} (w = 1 without weights), summed over
    the batch."""
    grad = FiniteDifference(x.shape[-2], x.shape[-1]).forward(x)
    r2 = (op.forward(x) - y).pow(2)
    data = 0.5 * (r2 if weights is None else weights * r2).sum()
    return float(data + lam * grad.pow(2).sum(1).sqrt().sum())


def tv_pdhg(
    op: LinearOperator,
    y: torch.Tensor,
    lam: float,
    iterations: int = 600,
    x_init: torch.Tensor | None = None,
    nonnegative: bool = True,
    op_norm: float | None = None,
    log_every: int = 0,
    progress: bool = False,
    weights: torch.Tensor | None = None,
) -> TVResult:
    """Return the TV-regularised reconstruction of y: (B, *out_shape) after `iterations` steps.

    weights: (B or 1, *out_shape) >= 0, the data term's per-measurement weights (None: all 1).
    """
    if lam < 0:
        raise ConfigError(f"TV weight lam={lam} must be >= 0")
    if iterations < 1:
        raise ConfigError(f"iterations={iterations} must be >= 1")
    op.check_output(y, "sinogram")
    if weights is not None:
        from gensci.inverse.noise import check_weights

        check_weights(weights, y)
        weights = weights.to(y.device, y.dtype)
    h, w = op.in_shape[-2], op.in_shape[-1]
    grad = FiniteDifference(h, w, device=y.device)
    norm_a = op_norm if op_norm is not None else op.norm()
    mu = norm_a / math.sqrt(8.0)
    step = 0.99 / math.sqrt(norm_a**2 + mu**2 * 8.0)
    tau = sigma = step
    radius = lam / mu  # the TV term is (lam / mu) ||mu grad x||_{2,1}
    b = y.shape[0]
    x = torch.zeros((b, *op.in_shape), dtype=y.dtype, device=y.device)
    if x_init is not None:
        x = x_init.clone()
    x_bar = x.clone()
    p = torch.zeros_like(y)
    q = torch.zeros((b, 2, h, w), dtype=y.dtype, device=y.device)
    result = TVResult(x=x)
    for it in tqdm(range(iterations), desc="TV-PDHG", disable=not progress, leave=False):
        if weights is None:
            p = (p + sigma * (op.forward(x_bar) - y)) / (1.0 + sigma)
        else:  # the prox of sigma F*, F = 1/2 sum w (z - y)^2; w = 0 ignores a measurement
            p = weights * (p + sigma * (op.forward(x_bar) - y)) / (weights + sigma)
        q = q + sigma * mu * grad.forward(x_bar)
        scale = (q.pow(2).sum(1, keepdim=True).sqrt() / max(radius, 1e-30)).clamp_min(1.0)
        q = q / scale
        x_new = x - tau * (op.adjoint(p) + mu * grad.adjoint(q))
        if nonnegative:
            x_new = x_new.clamp_min(0.0)
        x_bar = 2.0 * x_new - x
        x = x_new
        if log_every and (it % log_every == 0 or it == iterations - 1):
            result.objective.append(tv_objective(op, x, y, lam, weights))
    result.x = x
    return result
