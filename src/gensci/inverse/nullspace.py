"""Range / null-space split of an image under a linear operator, by conjugate gradients on A^T A.

CG started from zero on A^T A z = A^T A x keeps its iterates in range(A^T) and converges to the
minimum-norm solution, the orthogonal projection of x onto range(A^T) (what the measurements see).
The rest, x - P_range x, is the null-space part A cannot see. With a finite tolerance the split is
the numerical one: directions with singular values too small to resolve count as null space.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from gensci.errors import ConfigError
from gensci.inverse.operators import LinearOperator


def conjugate_gradient(
    apply: Callable[[torch.Tensor], torch.Tensor],
    b: torch.Tensor,
    x0: torch.Tensor | None = None,
    iterations: int = 200,
    tol: float = 1e-6,
) -> torch.Tensor:
    """Return x solving apply(x) = b (apply symmetric PSD) to relative residual tol."""
    if iterations < 1:
        raise ConfigError(f"iterations={iterations} must be >= 1")
    dims = tuple(range(1, b.dim()))
    x = torch.zeros_like(b) if x0 is None else x0.clone()
    r = b - apply(x) if x0 is not None else b.clone()
    p = r.clone()
    rs = r.pow(2).sum(dims, keepdim=True)
    b_norm = b.pow(2).sum(dims, keepdim=True).sqrt().clamp_min(1e-30)
    for _ in range(iterations):
        if bool((rs.sqrt() <= tol * b_norm).all()):
            break
        ap = apply(p)
        alpha = rs / (p * ap).sum(dims, keepdim=True).clamp_min(1e-30)
        x = x + alpha * p
        r = r - alpha * ap
        rs_new = r.pow(2).sum(dims, keepdim=True)
        p = r + (rs_new / rs.clamp_min(1e-30)) * p
        rs = rs_new
    return x


def range_null_split(
    op: LinearOperator, x: torch.Tensor, iterations: int = 200, tol: float = 1e-6
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (x_range, x_null), both (B, *in_shape), with x = x_range + x_null and A x_null ~ 0."""
    op.check_input(x)
    x_range = conjugate_gradient(op.normal, op.normal(x), iterations=iterations, tol=tol)
    return x_range, x - x_range


def pseudo_inverse(
    op: LinearOperator, y: torch.Tensor, iterations: int = 200, tol: float = 1e-6
) -> torch.Tensor:
    """Return the minimum-norm least-squares solution A^+ y: (B, *in_shape), by CG."""
    op.check_output(y)
    return conjugate_gradient(op.normal, op.adjoint(y), iterations=iterations, tol=tol)
