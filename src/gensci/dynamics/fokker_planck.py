"""The Fokker-Planck equation written for the score, and the derivatives it needs.

For dx = f(x) dt + sqrt(2 D) dW the density obeys dp/dt = -div(f p) + D lap p, so the score
s = grad log p obeys

    ds/dt = grad[ -div f - f . s + D (div s + |s|^2) ]
          = -grad div f - J_f^T s - J_s^T f + D (grad div s + 2 J_s^T s),

with J_f, J_s the Jacobians (J[a, b] = d_b f_a). `fp_residual` returns ds/dt minus the right side;
it is zero for the exact score. Fields act on flattened configurations x: (B, n), n = N d.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.func import grad, jacrev, jvp, vmap

Field = Callable[[torch.Tensor], torch.Tensor]  # (n,) -> (n,), one configuration


@dataclass
class FieldDerivatives:
    """value (B, n), Jacobian J (B, n, n) with J[a, b] = d_b value_a, grad div (B, n)."""

    value: torch.Tensor
    jac: torch.Tensor
    grad_div: torch.Tensor


def field_derivatives(fn: Callable[..., torch.Tensor], x: torch.Tensor, *args: torch.Tensor
                      ) -> FieldDerivatives:
    """Return the value, Jacobian and grad(div) of fn(x_b, *args_b) for every row of x: (B, n).

    fn maps one configuration (n,) (and per-row extra arguments) to a field (n,).
    """

    def div(xi: torch.Tensor, *a: torch.Tensor) -> torch.Tensor:
        return torch.diagonal(jacrev(fn)(xi, *a)).sum()

    value = vmap(fn)(x, *args)
    jac = vmap(jacrev(fn))(x, *args)
    grad_div = vmap(grad(div))(x, *args)
    return FieldDerivatives(value.detach(), jac.detach(), grad_div.detach())


def time_derivative(
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor, t: torch.Tensor
) -> torch.Tensor:
    """Return d/dt fn(x_b, t_b) for rows x: (B, n), t: (B,), by forward-mode differentiation."""

    def one(xi: torch.Tensor, ti: torch.Tensor) -> torch.Tensor:
        return jvp(lambda tt: fn(xi, tt), (ti,), (torch.ones_like(ti),))[1]

    return vmap(one)(x, t).detach()


def _jt(jac: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Return J^T v per row: jac (B, n, n), v (B, n) -> (B, n)."""
    return torch.einsum("bij,bi->bj", jac, v)


def drift_term(f: FieldDerivatives, s: FieldDerivatives) -> torch.Tensor:
    """Return grad[-div f - f . s] = -grad div f - J_f^T s - J_s^T f; (B, n)."""
    return -f.grad_div - _jt(f.jac, s.value) - _jt(s.jac, f.value)


def diffusion_term(s: FieldDerivatives) -> torch.Tensor:
    """Return grad[div s + |s|^2] = grad div s + 2 J_s^T s; (B, n)."""
    return s.grad_div + 2 * _jt(s.jac, s.value)


def fp_residual(
    ds_dt: torch.Tensor, s: FieldDerivatives, f: FieldDerivatives, D: float
) -> torch.Tensor:
    """Return ds/dt - grad[-div f - f . s + D (div s + |s|^2)]; (B, n). Zero for the exact score."""
    return ds_dt - drift_term(f, s) - D * diffusion_term(s)
