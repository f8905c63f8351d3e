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


def test_dps_recovers_measured_image(problem) -> None:
    op, post_mean, y, std, prior, _ = problem
    gen = torch.Generator().manual_seed(2)
    res = dps_posterior(prior, op, y, std, n_samples=8, steps=60, zeta=1.0, generator=gen)
    assert res.samples.shape == (8, 1, 8, 8) and torch.isfinite(res.samples).all()
    assert (res.mean - post_mean).norm() < 0.9 * (0.5 - post_mean).norm()


def test_dds_recovers_measured_image(problem) -> None:
    op, post_mean, y, std, prior, _ = problem
    gen = torch.Generator().manual_seed(3)
    res = dds_posterior(prior, op, y, std, n_samples=8, steps=40, generator=gen)
    assert res.samples.shape == (8, 1, 8, 8) and torch.isfinite(res.samples).all()
    assert (res.mean - post_mean).norm() < 0.5 * (0.5 - post_mean).norm()
    assert float(res.std.mean()) > 0  # ancestral steps: the samples differ


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
