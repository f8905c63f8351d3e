"""Compressed sensing: the operator, the Haar basis, latent recovery in the generator's range,
the Lasso baseline and m*."""

from __future__ import annotations

import pytest
import torch

from gensci.errors import ConfigError, ShapeError
from gensci.inverse.operators import adjointness_error
from gensci.models.equivariant import EquivariantVAE, EquivariantVAEConfig
from gensci.symmetry.task import (
    GaussianMeasurement,
    haar,
    ihaar,
    lasso_haar,
    m_star,
    measure,
    recover_latent,
    relative_error,
)


def test_gaussian_operator_adjoint_and_shape_checks(gen: torch.Generator) -> None:
    op = GaussianMeasurement.gaussian(20, 8, gen)
    assert adjointness_error(op) < 1e-12
    with pytest.raises(ShapeError, match="64 pixels"):
        GaussianMeasurement(torch.zeros(5, 60), 8)
    with pytest.raises(ShapeError, match="m = 0"):
        GaussianMeasurement(torch.zeros(0, 64), 8)
    with pytest.raises(ConfigError, match="m must be"):
        GaussianMeasurement.gaussian(0, 8)


def test_haar_is_orthonormal_and_inverted(gen: torch.Generator) -> None:
    x = torch.randn(3, 1, 16, 16, generator=gen, dtype=torch.float64)
    c = haar(x)
    assert torch.allclose(ihaar(c), x, atol=1e-12)
    assert torch.allclose(c.norm(), x.norm(), atol=1e-10)
    flat = torch.ones(1, 1, 16, 16, dtype=torch.float64)
    assert (haar(flat).abs() > 1e-12).sum() == 1  # a constant image is one coefficient
    with pytest.raises(ShapeError, match="power-of-2"):
        haar(torch.zeros(1, 1, 12, 12))


def test_latent_recovery_of_an_image_in_the_range_at_m_at_least_d(gen: torch.Generator) -> None:
    model = EquivariantVAE(EquivariantVAEConfig(image_size=16, channels=(8, 4), latent_fields=2))
    model.eval()
    d = model.config.latent_dim  # 8
    z_true = torch.randn(4, d, generator=gen)
    with torch.no_grad():
        x = model.decode(z_true)
    errors = {}
    for m in (2, 2 * d):
        op, y = measure(x, m, noise_std=1e-3, seed=1)
        rec = recover_latent(model, op, y, 1e-3, steps=250, restarts=4, lr=0.05, lam=1e-3)
        errors[m] = relative_error(rec.x_hat, x)
    assert float(errors[2 * d].max()) < 0.05, errors  # recovered at m = 2 d
    assert float(errors[2].median()) > 2 * float(errors[2 * d].median())  # not at m << d


def test_lasso_recovers_a_haar_sparse_image(gen: torch.Generator) -> None:
    c = torch.zeros(2, 1, 16, 16)
    idx = torch.randperm(256, generator=gen)[:6]
    c.view(2, -1)[:, idx] = torch.randn(2, 6, generator=gen) + 2
    x = ihaar(c)
    op, y = measure(x, 100, noise_std=1e-4, seed=0)
    assert float(relative_error(lasso_haar(op, y, 0.01, iterations=500), x).max()) < 0.05
    op, y = measure(x, 10, noise_std=1e-4, seed=0)
    assert float(relative_error(lasso_haar(op, y, 0.01, iterations=500), x).min()) > 0.1


def test_m_star_is_the_smallest_m_from_which_success_holds() -> None:
    ms = [8, 16, 32, 64, 128]
    assert m_star(ms, [0.0, 0.95, 0.5, 0.9, 1.0]) == 64  # a lucky 16 does not count
    assert m_star(ms, [0.0, 0.1, 0.2, 0.3, 0.8]) is None
    assert m_star(ms, [1.0] * 5) == 8
    assert m_star(ms, [0.0, 0.0, 0.0, 0.0, float(torch.tensor(27 / 30))]) == 128  # 0.9 in float32
