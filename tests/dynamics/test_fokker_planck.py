"""The score Fokker-Planck identity on an Ornstein-Uhlenbeck process known in closed form."""

from __future__ import annotations

import math

import torch

from gensci.dynamics.fokker_planck import field_derivatives, fp_residual, time_derivative

# dx = -theta (x - mu) dt + sqrt(2 D) dW, x_0 ~ N(m0, v0) per coordinate:
# p(x, t) = N(m(t), v(t)), m = mu + (m0 - mu) e^{-theta t}, v = D/theta + (v0 - D/theta) e^{-2 theta t}
THETA, MU, D, M0, V0 = 1.3, 0.4, 0.7, torch.tensor([2.0, -1.0, 0.5], dtype=torch.float64), 0.05


def ou_score(x: torch.Tensor, t: torch.Tensor, d: float = D) -> torch.Tensor:
    m = MU + (M0 - MU) * torch.exp(-THETA * t)
    v = d / THETA + (V0 - d / THETA) * torch.exp(-2 * THETA * t)
    return -(x - m) / v


def ou_drift(x: torch.Tensor) -> torch.Tensor:
    return -THETA * (x - MU) + 0.0 * x**2  # the zero term keeps the Hessian path exercised


def residual(score, drift, d: float) -> torch.Tensor:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    t = torch.rand(64, dtype=torch.float64) * 2 + 0.05
    x = torch.randn(64, 3, dtype=torch.float64) + 0.5
    ds_dt = time_derivative(score, x, t)
    s = field_derivatives(score, x, t)
    f = field_derivatives(drift, x)
    return fp_residual(ds_dt, s, f, d)


def test_exact_ou_score_satisfies_the_score_fokker_planck_equation() -> None:
    r = residual(ou_score, ou_drift, D)
    ds_scale = time_derivative(ou_score, torch.randn(64, 3, dtype=torch.float64),
                               torch.rand(64, dtype=torch.float64) + 0.05).abs().mean()
    assert r.abs().max() < 1e-9 * max(1.0, float(ds_scale))


def test_wrong_diffusion_or_drift_leaves_a_residual() -> None:
    exact = residual(ou_score, ou_drift, D).abs().mean()
    wrong_d = residual(ou_score, ou_drift, 1.5 * D).abs().mean()
    wrong_f = residual(ou_score, lambda x: -2 * THETA * (x - MU), D).abs().mean()
    # the score of another process (D' = 2 D) against the true physics
    wrong_s = residual(lambda x, t: ou_score(x, t, 2 * D), ou_drift, D).abs().mean()
    for bad in (wrong_d, wrong_f, wrong_s):
        assert bad > 0.05 and bad > 1e6 * exact
    assert math.isfinite(float(exact))
