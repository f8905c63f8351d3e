"""The simulator reaches the Gibbs density; the estimators recover free diffusion."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gensci.dynamics.baselines import oracle_fit, weak_form_fit
from gensci.dynamics.physics import DefectParams, drift, energy
from gensci.dynamics.simulate import gibbs_grid, simulate
from gensci.errors import ConfigError

P2 = DefectParams(n=2, box=2.0, A=1.0, a=1.0, k=0.5, r0=0.5, kT=0.5)


def chi2_per_bin(counts: np.ndarray, probs: np.ndarray) -> float:
    expected = probs * counts.sum()
    keep = expected > 5
    return float(np.sum((counts[keep] - expected[keep]) ** 2 / expected[keep]) / keep.sum())


def gibbs_marginals(p: DefectParams, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Return the Gibbs marginals of x_1 and of the pair distance r on `bins` bins."""
    c, w = gibbs_grid(p, 8 * bins)
    px = w.sum(1).reshape(bins, 8).sum(1)
    d = np.abs(c[:, None] - c[None, :])
    r = np.minimum(d, p.box - d)
    pr, _ = np.histogram(r, bins=bins // 2, range=(0, p.box / 2), weights=w)
    return px, pr / pr.sum()


def sampled_marginals(x: np.ndarray, p: DefectParams, bins: int) -> tuple[np.ndarray, ...]:
    hx, _ = np.histogram(x[:, 0, 0], bins=bins, range=(0, p.box))
    d = np.abs(x[:, 0, 0] - x[:, 1, 0])
    hr, _ = np.histogram(np.minimum(d, p.box - d), bins=bins // 2, range=(0, p.box / 2))
    return hx, hr


def test_drift_is_minus_the_energy_gradient() -> None:
    p = DefectParams(n=5, dim=2, box=4.0, A=0.7, k=1.3, r0=0.4)
    x = torch.rand(3, 5, 2, dtype=torch.float64) * 4
    x.requires_grad_(True)
    (g,) = torch.autograd.grad(energy(x, p).sum(), x)
    assert torch.allclose(drift(x, p), -g / p.gamma, atol=1e-10)


def test_stationary_histogram_matches_the_gibbs_density_at_n2() -> None:
    bins = 16
    s = simulate(P2, [0.0], n_configs=3000, init="equilibrium", burn_in=3.0, dt=2e-3, seed=1)
    px, pr = gibbs_marginals(P2, bins)
    hx, hr = sampled_marginals(s.positions[0], P2, bins)
    # chi^2 per bin is about 1 for a sample of the Gibbs density
    assert chi2_per_bin(hx, px) < 2.0
    assert chi2_per_bin(hr, pr) < 2.0
    # and the check has power: the cluster start, before it relaxes, is far from it
    early = simulate(P2, [0.05], n_configs=3000, init="cluster", spread=0.3, dt=2e-3, seed=1)
    hx, hr = sampled_marginals(early.positions[0], P2, bins)
    assert chi2_per_bin(hr, pr) > 10.0


def test_free_diffusion_d_is_recovered() -> None:
    p = DefectParams(n=4, box=4.0, A=0.0, k=0.0, kT=0.3)
    s = simulate(p, np.linspace(0.02, 0.3, 15), n_configs=600, spread=0.5, track=True,
                 frame_dt=0.01, seed=0)
    s.tracks = s.tracks[:100]
    known = DefectParams(n=4, box=4.0)
    o = oracle_fit(s, known, "no_pair")
    assert abs(o.values["D"] - 0.3) / 0.3 < 0.05
    assert abs(o.values["A"]) < 0.1
    # the weak form sees D (well above 0) but is diluted by its noisy test functions
    w = weak_form_fit(s, known, "no_pair")
    assert 0.05 < w.values["D"] < 0.35


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ConfigError, match="whole number"):
        DefectParams(box=8.0, a=3.0)
    with pytest.raises(ConfigError, match="kT"):
        DefectParams(kT=-1.0)
    with pytest.raises(ConfigError, match="increasing"):
        simulate(DefectParams(n=2, box=2.0), [0.2, 0.1], n_configs=2)
