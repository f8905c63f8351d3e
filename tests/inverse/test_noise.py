"""Noise models: Poisson counts and their post-log statistics, the weighted likelihood in the data
term, TV, the samplers and the discrepancy check."""

import math

import numpy as np
import pytest
import torch

from gensci.errors import ConfigError, DataError
from gensci.inverse import Radon, psnr, tv_pdhg
from gensci.inverse.discrepancy import discrepancy_ratio
from gensci.inverse.noise import (
    GaussianNoise,
    PoissonNoise,
    effective_std,
    mu_scale_for,
    weighted_data_gradient,
    weighted_data_term,
)
from gensci.inverse.posterior import (
    DiffusionPrior,
    dds_posterior,
    dps_posterior,
    score_posterior,
)
from tests.inverse.test_posterior import GaussianScore


def test_poisson_counts_have_the_beer_lambert_mean_and_post_log_variance_one_over_counts() -> None:
    noise = PoissonNoise(photons=1e4, mu_scale=0.5)
    ax = torch.linspace(0.0, 8.0, 9, dtype=torch.float64)  # line integrals p = 0 .. 4
    reps = 4000
    counts = noise.simulate(ax.expand(reps, 9), torch.Generator().manual_seed(0))
    rate = noise.expected_counts(ax)
    torch.testing.assert_close(rate, 1e4 * torch.exp(-0.5 * ax))
    # the sample mean of N Poisson draws has std sqrt(rate / N): within 4 of them
    assert ((counts.mean(0) - rate).abs() < 4 * (rate / reps).sqrt()).all()
    # post-log data in line-integral units: unbiased to O(1/I), variance 1/I (the PWLS weights)
    p_hat = noise.post_log(counts) * noise.mu_scale
    torch.testing.assert_close(p_hat.mean(0), 0.5 * ax, atol=0.01, rtol=0)
    var_ratio = p_hat.var(0) * rate  # ~1; its sampling error is about sqrt(2 / N) = 2.2 %
    assert ((var_ratio - 1).abs() < 0.1).all(), var_ratio
    # w = I mu_scale^2 is the inverse variance of y = p_hat / mu_scale
    w = noise.weights(counts)
    y_var = noise.post_log(counts).var(0)
    assert ((w.mean(0) * y_var - 1).abs() < 0.1).all()
    # the same seed draws the same counts
    again = noise.simulate(ax.expand(reps, 9), torch.Generator().manual_seed(0))
    assert torch.equal(counts, again)


def test_zero_counts_stay_finite_and_carry_no_weight() -> None:
    noise = PoissonNoise(photons=10.0, mu_scale=1.0)
    counts = torch.tensor([[0.0, 3.0, 10.0]])
    y = noise.post_log(counts)
    assert torch.isfinite(y).all() and float(y[0, 0]) == pytest.approx(math.log(20.0))
    assert noise.weights(counts).tolist() == [[0.0, 3.0, 10.0]]


@pytest.mark.parametrize("photons", [0.0, -1e4, float("nan"), float("inf")])
def test_bad_photon_counts_are_refused_in_one_line(photons: float) -> None:
    with pytest.raises(ConfigError, match="photon count I0") as info:
        PoissonNoise(photons, 0.1)
    assert "\n" not in str(info.value)


def test_bad_counts_weights_and_scales_are_refused() -> None:
    noise = PoissonNoise(1e4, 0.1)
    with pytest.raises(DataError, match=">= 0"):
        noise.post_log(torch.tensor([[5.0, -1.0]]))
    with pytest.raises(DataError, match="NaN"):
        noise.weights(torch.tensor([[5.0, float("nan")]]))
    with pytest.raises(ConfigError, match="mu_scale"):
        PoissonNoise(1e4, 0.0)
    with pytest.raises(ConfigError, match="std"):
        GaussianNoise(0.0)
    with pytest.raises(ConfigError, match="field of view"):
        mu_scale_for(64, fov_mm=-1.0)
    op = Radon(8, np.arange(6) * 30.0)
    x = torch.rand((1, 1, 8, 8), dtype=torch.float64)
    y = op(x)
    with pytest.raises(DataError, match="weights must be >= 0"):
        tv_pdhg(op, y, 0.1, 2, weights=-torch.ones_like(y))
    with pytest.raises(DataError, match="all 0"):
        discrepancy_ratio(op, x, y, 1.0, torch.zeros_like(y))


def test_mu_scale_follows_water_pixel_size_and_window_width() -> None:
    # x = 1 is water: 0.0193 / mm times 250 mm / 64 pixels
    assert mu_scale_for(64) == pytest.approx(0.0193 * 250 / 64)
    # a [-1000, 1000] HU window: x = 0.5 is water, so x = 1 attenuates twice as much
    assert mu_scale_for(64, window=(-1000.0, 1000.0)) == pytest.approx(2 * mu_scale_for(64))


def test_weighted_data_gradient_matches_autograd() -> None:
    gen = torch.Generator().manual_seed(0)
    op = Radon(10, np.arange(12) * 15.0)
    x = torch.rand((2, 1, 10, 10), generator=gen, dtype=torch.float64, requires_grad=True)
    y = op(torch.rand((2, 1, 10, 10), generator=gen, dtype=torch.float64))
    w = torch.rand(y.shape, generator=gen, dtype=torch.float64) * 5
    term = weighted_data_term(op, x, y, w)
    assert term.shape == (2,)
    (auto,) = torch.autograd.grad(term.sum(), x)
    torch.testing.assert_close(weighted_data_gradient(op, x.detach(), y, w), auto)
    # the Poisson data term in line-integral units is the same number
    noise = PoissonNoise(1e4, 0.3)
    counts = noise.simulate(op(x.detach()), torch.Generator().manual_seed(1))
    p_hat = noise.post_log(counts) * noise.mu_scale
    in_p = 0.5 * (counts * (noise.line_integral(op(x.detach())) - p_hat) ** 2).flatten(1).sum(1)
    torch.testing.assert_close(
        weighted_data_term(op, x.detach(), noise.post_log(counts), noise.weights(counts)), in_p
    )


def test_gaussian_weights_reproduce_the_unweighted_solvers() -> None:
    gen = torch.Generator().manual_seed(2)
    op = Radon(12, np.arange(10) * 9.0)
    x = torch.rand((1, 1, 12, 12), generator=gen, dtype=torch.float64)
    noise = GaussianNoise(0.05)
    y = noise.simulate(op(x), gen)
    w = noise.weights(y)
    torch.testing.assert_close(w, torch.full_like(y, 400.0))
    plain = tv_pdhg(op, y, 0.1, 100).x
    unit = tv_pdhg(op, y, 0.1, 100, weights=torch.ones_like(y)).x
    torch.testing.assert_close(plain, unit)
    torch.testing.assert_close(
        discrepancy_ratio(op, x, y, 0.05), discrepancy_ratio(op, x, y, 0.05, w)
    )
    assert effective_std(w) == pytest.approx(0.05)


def _low_dose_problem(seed: int) -> tuple[Radon, torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """A disc of soft tissue with two dense inserts, 20 x 20, 30 views, I0 = 300: the rays through
    the inserts count a few dozen photons, the rest hundreds."""
    n = 20
    yy, xx = torch.meshgrid(torch.arange(n) - 9.5, torch.arange(n) - 9.5, indexing="ij")
    x = 0.4 * (xx**2 + yy**2 < 8.5**2).double()
    x[(xx + 4) ** 2 + yy**2 < 2.5**2] = 1.0
    x[(xx - 4) ** 2 + (yy - 2) ** 2 < 2.0**2] = 1.0
    x = x[None, None]
    op = Radon(n, np.arange(30) * 6.0)
    noise = PoissonNoise(300.0, 0.2)
    counts = noise.simulate(op(x), torch.Generator().manual_seed(seed))
    y, w = noise.post_log(counts), noise.weights(counts)
    return op, x, y, w, effective_std(w)


def test_weighted_tv_beats_unweighted_tv_at_low_dose() -> None:
    grid = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
    gains = []
    for seed in (0, 1, 2):
        op, x, y, w, std = _low_dose_problem(seed)
        norm = op.norm()
        best = {}
        for name, weights in (("gaussian", None), ("weighted", w * std**2)):
            best[name] = max(
                float(psnr(tv_pdhg(op, y, g * std, 300, op_norm=norm, weights=weights).x, x)[0])
                for g in grid
            )
        gains.append(best["weighted"] - best["gaussian"])
    # dB, each likelihood at its own best weight of the grid (an oracle, fair to both)
    assert min(gains) > 0 and np.mean(gains) > 0.4, gains


def test_weighted_discrepancy_is_about_one_at_the_truth() -> None:
    op, x, y, w, std = _low_dose_problem(3)
    m = y[0].numel()
    ratio = float(discrepancy_ratio(op, x, y, std, w)[0])
    assert abs(ratio - 1.0) < 5 * (2 / m) ** 0.5, ratio  # chi-square with m degrees of freedom
    # a wrong image fails it
    assert float(discrepancy_ratio(op, x.flip(-1), y, std, w)[0]) > 2.0


def _gaussian_prior() -> DiffusionPrior:
    return DiffusionPrior(GaussianScore(torch.zeros(1), 0.5), scale=2.0, shift=-1.0)  # type: ignore[arg-type]


def test_score_posterior_with_weights_matches_the_exact_weighted_gaussian_posterior() -> None:
    gen = torch.Generator().manual_seed(0)
    n = 8
    truth = 0.5 + 0.2 * torch.randn((1, 1, n, n), generator=gen)
    op = Radon(n, np.arange(16) * 180.0 / 16)
    clean = op(truth.double()).float()
    # heteroscedastic: half the rays ten times noisier than the others
    std = (
        0.01
        * float(clean.abs().max())
        * torch.where(torch.arange(clean.shape[-1]) % 2 == 0, 1.0, math.sqrt(10.0)).expand(
            clean.shape
        )
    )
    y = clean + std * torch.randn(clean.shape, generator=gen)
    w = 1.0 / std**2
    a = op.matrix().to_dense().float()
    precision = a.T @ (w.flatten()[:, None] * a) + torch.eye(n * n) / 0.25**2
    exact = torch.linalg.solve(precision, a.T @ (w * y).flatten() + 0.5 / 0.25**2)
    exact = exact.reshape(1, 1, n, n)
    prior = _gaussian_prior()
    eff = effective_std(w)
    res = score_posterior(
        prior,
        op,
        y,
        eff,
        n_samples=16,
        steps=60,
        weights=w,
        generator=torch.Generator().manual_seed(1),
    )
    unweighted = score_posterior(
        prior, op, y, eff, n_samples=16, steps=60, generator=torch.Generator().manual_seed(1)
    )
    err_w = float((res.mean - exact).norm())
    err_u = float((unweighted.mean - exact).norm())
    assert err_w < 0.4 * float((0.5 - exact).norm())
    assert err_w < err_u, (err_w, err_u)
    # uniform weights 1 / sigma^2 give the unweighted sampler's samples
    flat = score_posterior(
        prior,
        op,
        y,
        eff,
        n_samples=4,
        steps=20,
        weights=torch.full_like(y, 1 / eff**2),
        generator=torch.Generator().manual_seed(2),
    )
    plain = score_posterior(
        prior, op, y, eff, n_samples=4, steps=20, generator=torch.Generator().manual_seed(2)
    )
    torch.testing.assert_close(flat.samples, plain.samples, rtol=1e-3, atol=1e-3)


def test_dds_single_step_with_weights_is_the_weighted_ridge_solution() -> None:
    gen = torch.Generator().manual_seed(5)
    n = 8
    op = Radon(n, np.arange(12) * 15.0)
    y = op(torch.rand((1, 1, n, n), generator=gen, dtype=torch.float64)).float()
    w = (0.5 + 4 * torch.rand(y.shape, generator=gen)) * 100.0
    eff = effective_std(w)
    prior = _gaussian_prior()
    lam, op_norm = 0.05, 3.0
    res = dds_posterior(
        prior,
        op,
        y,
        eff,
        n_samples=2,
        steps=1,
        cg_iterations=200,
        lam=lam,
        op_norm=op_norm,
        generator=torch.Generator().manual_seed(4),
        weights=w,
    )
    sde = prior.model.sde
    u_t = sde.prior_sampling((2, 1, n, n), torch.Generator().manual_seed(4)).double()
    t = torch.full((2,), sde.T, dtype=torch.float64)
    a, s = float(sde.alpha(t)[0]), float(sde.std(t)[0])
    u0 = (u_t - s**2 * u_t / (a**2 * 0.25 + s**2)) / a
    x0 = prior.to_image(u0).flatten(1)
    mat = op.matrix().to_dense()
    v = (w.double() * eff**2).flatten()
    ridge = lam * op_norm**2
    lhs = mat.T @ (v[:, None] * mat) + ridge * torch.eye(n * n, dtype=torch.float64)
    rhs = mat.T @ (v * y.double().flatten())[:, None] + ridge * x0.T
    expected = torch.linalg.solve(lhs, rhs).T
    torch.testing.assert_close(res.samples.flatten(1).double(), expected, rtol=0, atol=1e-4)


def test_dps_with_uniform_weights_is_the_unweighted_dps_and_weights_move_it() -> None:
    gen = torch.Generator().manual_seed(6)
    n = 8
    op = Radon(n, np.arange(12) * 15.0)
    y = op(0.5 + 0.1 * torch.rand((1, 1, n, n), generator=gen, dtype=torch.float64)).float()
    prior = _gaussian_prior()
    common = {"n_samples": 2, "steps": 10, "op_norm": 3.0}
    plain = dps_posterior(prior, op, y, 0.1, generator=torch.Generator().manual_seed(7), **common)
    flat = dps_posterior(
        prior,
        op,
        y,
        0.1,
        generator=torch.Generator().manual_seed(7),
        weights=torch.full_like(y, 100.0),
        **common,
    )
    torch.testing.assert_close(flat.samples, plain.samples)
    uneven = torch.full_like(y, 100.0)
    uneven[..., ::2] = 1.0
    moved = dps_posterior(
        prior, op, y, 0.1, generator=torch.Generator().manual_seed(7), weights=uneven, **common
    )
    assert float((moved.samples - plain.samples).abs().max()) > 1e-4
