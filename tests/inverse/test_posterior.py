import numpy as np
import pytest
import torch
from torch import nn

from gensci.errors import ConfigError
from gensci.inverse import Radon
from gensci.inverse.latent import latent_map
from gensci.inverse.posterior import (
    DiffusionPrior,
    dds_posterior,
    dps_posterior,
    score_posterior,
)
from gensci.models.diffusion import DiffusionConfig, DiffusionModel
from gensci.models.samplers import euler_maruyama
from gensci.models.sde import VPSDE, _bcast
from gensci.models.vae import VAE, VAEConfig


class GaussianScore(nn.Module):
    """Exact score of p_t when x_0 ~ N(m, s^2 I): a stand-in for a trained network."""

    def __init__(self, m: torch.Tensor, s: float) -> None:
        super().__init__()
        self.m, self.s, self.sde = m, s, VPSDE()

    def score(self, u: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a, sd = _bcast(self.sde.alpha(t), u), _bcast(self.sde.std(t), u)
        return -(u - a * self.m) / (a**2 * self.s**2 + sd**2)

    def eps(self, u: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return -_bcast(self.sde.std(t), u) * self.score(u, t)


@pytest.fixture(scope="module")
def problem():
    gen = torch.Generator().manual_seed(0)
    n = 8
    truth = 0.5 + 0.2 * torch.randn((1, 1, n, n), generator=gen)
    op = Radon(n, np.arange(16) * 180.0 / 16)
    y_clean = op(truth.double()).float()
    std = float(0.01 * y_clean.abs().max())
    y = y_clean + std * torch.randn(y_clean.shape, generator=gen)
    # prior x ~ N(0.5, 0.25^2 I), i.e. u = 2x - 1 ~ N(0, 0.5^2 I): the posterior is Gaussian too
    prior = DiffusionPrior(GaussianScore(torch.zeros(1), 0.5), scale=2.0, shift=-1.0)  # type: ignore[arg-type]
    a = op.matrix().to_dense().float()
    precision = a.T @ a / std**2 + torch.eye(n * n) / 0.25**2
    mean = torch.linalg.solve(precision, a.T @ y.flatten() / std**2 + 0.5 / 0.25**2)
    sd = torch.linalg.inv(precision).diag().sqrt().mean()
    return op, mean.reshape(1, 1, n, n), y, std, prior, float(sd)


@pytest.mark.parametrize("sampler", ["pc", "em", "langevin"])
def test_score_posterior_recovers_measured_image(problem, sampler: str) -> None:
    op, post_mean, y, std, prior, post_sd = problem
    gen = torch.Generator().manual_seed(1)
    res = score_posterior(prior, op, y, std, n_samples=16, sampler=sampler, steps=60, generator=gen)
    assert res.samples.shape == (16, 1, 8, 8) and res.mean.shape == res.std.shape == (1, 1, 8, 8)
    assert torch.isfinite(res.samples).all()
    # near the exact Gaussian posterior: mean far closer than the prior mean, std of its size
    assert (res.mean - post_mean).norm() < 0.4 * (0.5 - post_mean).norm()
    assert 0.5 * post_sd < float(res.std.mean()) < 2.5 * post_sd


def test_score_posterior_matches_exact_gaussian_posterior() -> None:
    """Linear-Gaussian problem: the samples' mean and covariance are the closed-form posterior's.

    The noise (std 1.5 on projections up to ~6) makes the likelihood's precision (up to ~55) and
    the prior's (~7) comparable, so the posterior mean and covariance both depend on noise_std:
    with the noise variance 4x too large or too small the whitened mean moves by 4.5 to 6 of its
    standard errors and the whitened variance by -25% to +45%. Annealed Langevin ends on the
    posterior itself, so its samples are exact up to the step's O(snr^2) bias (a few percent).
    """
    gen = torch.Generator().manual_seed(0)
    n, noise_std, prior_sd, k = 8, 1.5, 0.375, 256
    op = Radon(n, np.arange(16) * 180.0 / 16)
    truth = 0.5 + 0.2 * torch.randn((1, 1, n, n), generator=gen)
    y = op(truth) + noise_std * torch.randn((1, *op.out_shape), generator=gen)
    # prior x ~ N(0.5, prior_sd^2 I), i.e. u = 2x - 1 ~ N(0, (2 prior_sd)^2 I): posterior N(mean, cov)
    prior = DiffusionPrior(GaussianScore(torch.zeros(1), 2 * prior_sd), scale=2.0, shift=-1.0)  # type: ignore[arg-type]
    a = op.matrix().to_dense().double()
    precision = a.T @ a / noise_std**2 + torch.eye(n * n, dtype=torch.float64) / prior_sd**2
    cov = torch.linalg.inv(precision)
    mean = cov @ (a.T @ y.flatten().double() / noise_std**2 + 0.5 / prior_sd**2)

    res = score_posterior(prior, op, y, noise_std, n_samples=k, sampler="langevin", steps=50,
                          generator=torch.Generator().manual_seed(1))
    samples = res.samples.flatten(1).double()
    # whiten: z = L^-1 (x - mean) with cov = L L^T is N(0, I) under the exact posterior
    chol = torch.linalg.cholesky(cov)
    z = torch.linalg.solve_triangular(chol, (samples - mean).T, upper=False)
    # mean: k |z_bar|^2 / d ~ chi^2_d / d, 1 +- 0.18 for d = 64; 1.8 is 4.5 standard deviations
    mean_stat = float(k * z.mean(1).pow(2).mean())
    assert mean_stat < 1.8, mean_stat
    # covariance: E z^2 = 1 (sampling error 0.011 for k d = 16384 draws, plus the step's bias)
    var_stat = float(z.pow(2).mean())
    assert 0.92 < var_stat < 1.15, var_stat
    # per pixel, the sample variance is the posterior's
    ratio = float((samples.var(0) / cov.diag()).mean())
    assert 0.9 < ratio < 1.15, ratio


def test_dps_recovers_measured_image(problem) -> None:
    op, post_mean, y, std, prior, _ = problem
    gen = torch.Generator().manual_seed(2)
    res = dps_posterior(prior, op, y, std, n_samples=8, steps=60, zeta=1.0, generator=gen)
    assert res.samples.shape == (8, 1, 8, 8) and torch.isfinite(res.samples).all()
    assert (res.mean - post_mean).norm() < 0.9 * (0.5 - post_mean).norm()


def test_dps_step_descends_the_residual_through_tweedie(problem) -> None:
    """One DPS step is the prior's Euler-Maruyama step minus (zeta / ||A||) times the gradient of
    ||y - A x0_hat(u)||, x0_hat Tweedie's denoiser; for the Gaussian prior it is in closed form."""
    op, _, y, std, prior, _ = problem
    zeta, op_norm, shape = 1.0, 2.0, (2, 1, 8, 8)
    res = dps_posterior(prior, op, y, std, n_samples=2, steps=1, zeta=zeta, op_norm=op_norm,
                        generator=torch.Generator().manual_seed(5))
    sde = prior.model.sde
    plain = euler_maruyama(prior.model.score, sde, shape, steps=1,
                           generator=torch.Generator().manual_seed(5))
    u_t = sde.prior_sampling(shape, torch.Generator().manual_seed(5)).double()
    t = torch.full((1,), sde.T, dtype=torch.float64)
    a, s = float(sde.alpha(t)), float(sde.std(t))
    c = a * 0.25 / (a**2 * 0.25 + s**2)  # x0_hat(u) = c u in model units, N(0, 0.5^2 I) prior
    residual = y.double() - op(prior.to_image(c * u_t))
    norm = residual.flatten(1).norm(dim=1)[:, None, None, None]
    step = (zeta / op_norm) * (c / prior.scale) * op.adjoint(residual) / norm  # -step * gradient
    moved = (res.samples - prior.to_image(plain)).double()
    assert float(step.abs().max()) > 1e-4  # a move well above float32 rounding
    torch.testing.assert_close(moved, step / prior.scale, rtol=0.02, atol=2e-6)


def test_dds_recovers_measured_image(problem) -> None:
    op, post_mean, y, std, prior, _ = problem
    gen = torch.Generator().manual_seed(3)
    res = dds_posterior(prior, op, y, std, n_samples=8, steps=40, generator=gen)
    assert res.samples.shape == (8, 1, 8, 8) and torch.isfinite(res.samples).all()
    assert (res.mean - post_mean).norm() < 0.5 * (0.5 - post_mean).norm()
    assert float(res.std.mean()) > 0  # ancestral steps: the samples differ


def test_dds_single_step_is_the_ridge_solution_around_the_denoised_start(problem) -> None:
    """One DDS step: x = (A^T A + lam ||A||^2 I)^-1 (A^T y + lam ||A||^2 x0), x0 Tweedie's
    denoised estimate of the start x_T (in image units), here in closed form."""
    op, _, y, std, prior, _ = problem
    lam, op_norm = 0.05, 3.0
    res = dds_posterior(prior, op, y, std, n_samples=2, steps=1, cg_iterations=200, lam=lam,
                        op_norm=op_norm, generator=torch.Generator().manual_seed(4))
    sde = prior.model.sde
    u_t = sde.prior_sampling((2, 1, 8, 8), torch.Generator().manual_seed(4)).double()
    t = torch.full((2,), sde.T, dtype=torch.float64)
    a, s = float(sde.alpha(t)[0]), float(sde.std(t)[0])
    # Tweedie: E[u0 | u_t] = (u_t + s^2 score(u_t)) / a, score of N(0, (a^2 0.5^2 + s^2) I)
    u0 = (u_t - s**2 * u_t / (a**2 * 0.25 + s**2)) / a
    x0 = prior.to_image(u0).flatten(1)
    mat = op.matrix().to_dense()
    ridge = lam * op_norm**2
    lhs = mat.T @ mat + ridge * torch.eye(64, dtype=torch.float64)
    rhs = (mat.T @ y.double().flatten()[:, None]) + ridge * x0.T
    expected = torch.linalg.solve(lhs, rhs).T
    torch.testing.assert_close(res.samples.flatten(1).double(), expected, rtol=0, atol=1e-4)


def test_posterior_samplers_check_their_inputs(problem) -> None:
    op, _, y, std, prior, _ = problem
    with pytest.raises(ConfigError, match="one sinogram at a time"):
        score_posterior(prior, op, y.expand(2, -1, -1, -1), std, steps=2)
    with pytest.raises(ConfigError, match="zeta"):
        dps_posterior(prior, op, y, std, zeta=0.0)
    # one sample: its spread is zero, not undefined
    one = dds_posterior(prior, op, y, std, n_samples=1, steps=2)
    assert one.samples.shape == (1, 1, 8, 8) and (one.std == 0).all()
    # the default intensity map takes the model's [-1, 1] to images in [0, 1]
    default = DiffusionPrior(prior.model)
    torch.testing.assert_close(default.to_image(torch.tensor([-1.0, 0.0, 1.0])),
                               torch.tensor([0.0, 0.5, 1.0]))


def test_dds_data_consistency_fits_the_measurements() -> None:
    """With an untrained prior the data term alone decides: more CG, smaller data misfit."""
    torch.manual_seed(0)
    model = DiffusionModel(
        DiffusionConfig(data_shape=(1, 16, 16), net="unet", base_channels=8, channel_mults=(1, 2))
    )
    op = Radon(16, np.arange(8) * 11.25)
    truth = torch.rand(1, 1, 16, 16)
    y = op(truth)
    prior = DiffusionPrior(model)
    misfit = []
    for cg in (1, 20):
        res = dds_posterior(prior, op, y, 0.01, n_samples=2, steps=4, cg_iterations=cg, lam=0.0,
                            final_consistency=True, generator=torch.Generator().manual_seed(0))
        misfit.append(float((op(res.samples) - y).norm() / y.norm()))
    assert misfit[1] < 0.2 * misfit[0]
    # a single step is corrected too; a float64 sinogram is accepted
    one = dds_posterior(prior, op, y.double(), 0.01, n_samples=2, steps=1, cg_iterations=20,
                        lam=0.0, generator=torch.Generator().manual_seed(0))
    assert float((op(one.samples.double()) - y.double()).norm() / y.norm()) < misfit[0]
    with pytest.raises(ConfigError, match="eta"):
        dds_posterior(prior, op, y, 0.01, eta=2.0)


def test_posterior_with_unet_model_keeps_shapes() -> None:
    torch.manual_seed(0)
    model = DiffusionModel(
        DiffusionConfig(data_shape=(1, 16, 16), net="unet", base_channels=8, channel_mults=(1, 2))
    )
    op = Radon(16, np.arange(6) * 15.0)
    y = op(torch.rand(1, 1, 16, 16))
    prior = DiffusionPrior(model)
    gen = torch.Generator().manual_seed(0)
    for res in (
        score_posterior(prior, op, y, 0.1, n_samples=2, sampler="pc", steps=3, generator=gen),
        dps_posterior(prior, op, y, 0.1, n_samples=2, steps=3, generator=gen),
        dds_posterior(prior, op, y, 0.1, n_samples=2, steps=3, generator=gen),
    ):
        assert res.samples.shape == (2, 1, 16, 16) and torch.isfinite(res.samples).all()
    assert model.training  # the samplers restore the mode they found
    with pytest.raises(ConfigError, match="noise_std"):
        score_posterior(prior, op, y, 0.0, n_samples=2, steps=2)
    with pytest.raises(ConfigError, match="unknown sampler"):
        score_posterior(prior, op, y, 0.1, sampler="ode", steps=2)


def test_latent_map_fits_the_data() -> None:
    torch.manual_seed(0)
    vae = VAE(VAEConfig(data_dim=64, latent_dim=4, hidden=(32,), gaussian_std=0.05))
    op = Radon(8, np.arange(8) * 22.5)
    with torch.no_grad():
        target = vae.decode(torch.randn(1, 4)).reshape(1, 1, 8, 8)
    y = op(target)
    gen = torch.Generator().manual_seed(0)
    short = latent_map(lambda z: vae.decode(z), 4, op, y, 0.05, steps=2, generator=gen)
    gen = torch.Generator().manual_seed(0)
    long = latent_map(lambda z: vae.decode(z), 4, op, y, 0.05, steps=300, lr=0.05, generator=gen)
    assert long.loss < 0.1 * short.loss
    assert long.x.shape == (1, 1, 8, 8)
