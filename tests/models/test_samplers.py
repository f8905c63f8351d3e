"""Every sampler, fed the exact score of a Gaussian, reproduces its mean and covariance."""

import math

import pytest
import torch

from gensci.errors import ConfigError
from gensci.models import VESDE, VPSDE, samplers
from gensci.models.sde import make_sde

MU = torch.tensor([0.8, -0.5], dtype=torch.float64)
SIGMA = torch.tensor([[1.0, 0.3], [0.3, 0.5]], dtype=torch.float64)
N = 10_000


def gaussian_score(sde):
    """p_t = N(alpha mu, alpha^2 Sigma + std^2 I): score = -C_t^{-1} (x - alpha mu)."""

    def score(x, t):
        a, s = sde.alpha(t[:1]).item(), sde.std(t[:1]).item()
        cov = a * a * SIGMA + s * s * torch.eye(2, dtype=torch.float64)
        return -(x - a * MU) @ torch.linalg.inv(cov)

    return score


CASES = [
    ("em", samplers.euler_maruyama, {"steps": 500}),
    ("ode", samplers.probability_flow_ode, {"steps": 100}),
    ("pc", samplers.predictor_corrector, {"steps": 300}),
    ("pc-no-corrector", samplers.predictor_corrector, {"steps": 300, "n_corrector": 0}),
    ("langevin", samplers.annealed_langevin, {"n_levels": 100, "steps_per_level": 10}),
    ("ddim", samplers.ddim, {"steps": 100}),
    ("ddim-eta1", samplers.ddim, {"steps": 300, "eta": 1.0}),
]


@pytest.mark.parametrize("sde", [VPSDE(), VESDE(0.01, 50.0)], ids=["vp", "ve"])
@pytest.mark.parametrize("name,fn,kwargs", CASES, ids=[c[0] for c in CASES])
def test_sampler_reproduces_gaussian(sde, name, fn, kwargs):
    g = torch.Generator().manual_seed(1)
    x0 = sde.prior_sampling((N, 2), generator=g).double()
    x = fn(gaussian_score(sde), sde, (N, 2), generator=g, x_init=x0, **kwargs)
    assert torch.isfinite(x).all()
    # standard errors of the sample mean and covariance of N Gaussian draws; 4.5 sigma bounds
    se_mean = torch.sqrt(torch.diag(SIGMA) / N)
    var = torch.diag(SIGMA)
    se_cov = torch.sqrt((var[:, None] * var[None, :] + SIGMA**2) / N)
    mean_err = (x.mean(0) - MU).abs()
    cov_err = (torch.cov(x.T) - SIGMA).abs()
    assert (mean_err < 4.5 * se_mean).all(), f"{name}: mean error {mean_err} vs se {se_mean}"
    assert (cov_err < 4.5 * se_cov).all(), f"{name}: cov error {cov_err} vs se {se_cov}"


def test_sdes_marginals_match_their_sde():
    """d/dt Var = 2 f' Var + g^2 for linear drift: check VP's std(t) against its SDE numerically."""
    sde = VPSDE()
    t = torch.tensor([0.3], dtype=torch.float64)
    h = 1e-5
    var = lambda s: sde.std(s) ** 2  # noqa: E731  (data variance 0: only the kernel's variance)
    dvar = (var(t + h) - var(t - h)) / (2 * h)
    beta = sde.beta(t)
    assert torch.allclose(dvar, -beta * var(t) + beta, rtol=1e-6)
    ve = VESDE(0.01, 50.0)
    _, g = ve.sde(torch.zeros(1, 1), t.float())
    dvar_ve = (ve.std(t + h) ** 2 - ve.std(t - h) ** 2) / (2 * h)
    assert math.isclose(float(dvar_ve), float(g.double() ** 2), rel_tol=1e-4)


def test_make_sde_and_marginals():
    """make_sde builds the SDE its name says, with the classes' own defaults; p_0t is N(a x0, s^2)."""
    vp, ve = make_sde("vp"), make_sde("ve", sigma_max=20.0)
    assert isinstance(vp, VPSDE) and (vp.beta_min, vp.beta_max) == (VPSDE().beta_min, VPSDE().beta_max)
    assert isinstance(ve, VESDE) and (ve.sigma_min, ve.sigma_max) == (VESDE().sigma_min, 20.0)
    assert make_sde("vp", beta_min=0.2, beta_max=10.0).beta_max == 10.0
    with pytest.raises(ConfigError, match="unknown SDE"):
        make_sde("sub-vp")
    x0 = torch.randn(3, 2, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0.1, 0.5, 0.9])
    for sde in (vp, ve):
        mean, std = sde.marginal_prob(x0, t)
        torch.testing.assert_close(mean, sde.alpha(t)[:, None] * x0)
        torch.testing.assert_close(std, sde.std(t))


@pytest.mark.parametrize("name", sorted(samplers.SAMPLERS))
def test_samplers_start_from_the_prior_with_their_generator(name):
    """Without x_init a sampler starts from sde.prior_sampling drawn with its own generator."""
    sde = VESDE(0.01, 50.0)
    score = gaussian_score(sde)
    kwargs = {"n_levels": 3, "steps_per_level": 2} if name == "langevin" else {"steps": 3}
    fn = samplers.SAMPLERS[name]
    g = torch.Generator().manual_seed(7)
    start = sde.prior_sampling((64, 2), generator=g).double()
    given = fn(score, sde, (64, 2), generator=g, x_init=start, **kwargs)
    drawn = fn(score, sde, (64, 2), generator=torch.Generator().manual_seed(7), **kwargs)
    torch.testing.assert_close(drawn.double(), given, rtol=1e-4, atol=1e-3)  # float32 start


def test_sdedit_start_part_way_keeps_shape():
    sde = VPSDE()
    x0 = torch.randn(16, 3)
    x = samplers.euler_maruyama(lambda x, t: -x, sde, (16, 3), steps=10, x_init=x0, t_start=0.5)
    assert x.shape == (16, 3) and torch.isfinite(x).all()


def test_ddim_denoised_fn_replaces_each_estimate():
    """A hook that pins x0 makes DDIM return the pinned value; it is called once per step."""
    sde = VPSDE()
    calls = []
    target = torch.full((4, 2), 0.7, dtype=torch.float64)

    def pin(x0, t):
        calls.append(float(t[0]))
        return target.clone()

    g = torch.Generator().manual_seed(0)
    x = samplers.ddim(gaussian_score(sde), sde, (4, 2), steps=7, generator=g,
                      x_init=sde.prior_sampling((4, 2), generator=g).double(), denoised_fn=pin)
    assert torch.equal(x, target)
    assert len(calls) == 7 and calls == sorted(calls, reverse=True)
    # an identity hook changes nothing; a hook that moves x0 moves every later state
    x0 = sde.prior_sampling((4, 2), generator=torch.Generator().manual_seed(3)).double()
    plain = samplers.ddim(gaussian_score(sde), sde, (4, 2), steps=7, x_init=x0)
    same = samplers.ddim(gaussian_score(sde), sde, (4, 2), steps=7, x_init=x0,
                         denoised_fn=lambda x, t: x)
    shifted = samplers.ddim(gaussian_score(sde), sde, (4, 2), steps=7, x_init=x0,
                            denoised_fn=lambda x, t: x + 0.1)
    assert torch.equal(plain, same)
    assert (shifted - plain).abs().min() > 0.05
