"""Surrogates wired to the core: shapes, hard boundary values, guidance, warm start, checkpoints."""

import numpy as np
import pytest
import torch

from gensci.errors import ConfigError, ShapeError
from gensci.poisson.data import make_dataset
from gensci.poisson.metrics import (
    max_boundary_violation,
    relative_discrete_residual,
    relative_l2,
    sample_spread,
    spread_error_spearman,
)
from gensci.poisson.solver import poisson_cg
from gensci.poisson.study import load_surrogate, train_surrogate
from gensci.poisson.surrogate import PoissonSurrogate, SurrogateConfig, predict, training_tensors
from gensci.train import TrainConfig

TINY = {"base_channels": 8, "channel_mults": (1, 2), "time_dim": 32}


@pytest.fixture(scope="module")
def data():
    return make_dataset(48, 16, seed=0, nonzero_boundary_fraction=0.5)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data):
    """A tiny diffusion and a tiny regression surrogate, each trained a few core-Trainer steps."""
    models = {}
    for kind, steps in (("diffusion", 20), ("regression", 40)):
        out = tmp_path_factory.mktemp(kind)
        tc = TrainConfig(steps=steps, batch_size=16, lr=3e-3, progress=False, device="cpu",
                         log_every=10, checkpoint_every=10)
        torch.manual_seed(0)
        models[kind] = (train_surrogate(data, out, kind=kind, train_config=tc, **TINY), out)
    return models


def test_normalised_pairs_invert_to_the_exact_solution(data):
    cfg = SurrogateConfig(kind="regression", n=16, u_scale=0.02, **TINY)
    x, cond = training_tensors(cfg, data.rho, data.phi, data.boundary)
    assert x.shape == (48, 1, 16, 16) and cond.shape == (48, 1, 16, 16)
    assert float(x[:, 0, 0].abs().max()) < 1e-6  # u vanishes on the ring
    from gensci.poisson.surrogate import assemble, make_condition

    _, s, lift = make_condition(cfg, data.rho, data.boundary)
    phi = assemble(x[:, 0].double().numpy(), s, lift, cfg.u_scale, hard=True)
    assert relative_l2(phi, data.phi).max() < 1e-5


def test_regression_loss_falls_and_checkpoint_round_trips(trained, data):
    model, out = trained["regression"]
    rows = (out / "metrics.csv").read_text().splitlines()
    losses = [float(r.split(",")[1]) for r in rows[1:] if r.split(",")[1]]
    assert losses[-1] < losses[0]
    again = load_surrogate(out)
    a = predict(model, data.rho[:4], data.boundary[:4])
    b = predict(again, data.rho[:4], data.boundary[:4])
    assert np.allclose(a, b)


@pytest.mark.parametrize("kind", ["diffusion", "regression"])
def test_hard_constraint_gives_exact_boundary_values(trained, data, kind):
    model, _ = trained[kind]
    rho, g = data.rho[:6], data.boundary[:6]
    hard = predict(model, rho, g, steps=4, hard=True)
    soft = predict(model, rho, g, steps=4, hard=False)
    assert hard.shape == (1, 6, 16, 16) and np.isfinite(hard).all()
    assert max_boundary_violation(hard[0], g).max() == 0.0
    assert max_boundary_violation(soft[0], g).max() > 0.0


def test_diffusion_samples_spread_and_guidance_lowers_residual(trained, data):
    model, _ = trained["diffusion"]
    rho, g = data.rho[:4], data.boundary[:4]
    samples = predict(model, rho, g, sampler="em", steps=8, n_samples=3, seed=1)
    assert samples.shape == (3, 4, 16, 16)
    spread = sample_spread(samples)
    assert spread.shape == (4,) and (spread > 0).all()
    err = relative_l2(samples.mean(0), data.phi[:4])
    assert -1.0 <= spread_error_spearman(spread, err) <= 1.0
    plain = predict(model, rho, g, steps=8, seed=2)
    guided = predict(model, rho, g, steps=8, seed=2, guidance=1.0)
    r_plain = relative_discrete_residual(plain[0], rho)
    r_guided = relative_discrete_residual(guided[0], rho)
    assert np.median(r_guided) < 0.5 * np.median(r_plain)


def test_projection_removes_residual_and_keeps_the_boundary(trained, data):
    model, _ = trained["diffusion"]
    rho, g = data.rho[:4], data.boundary[:4]
    plain = predict(model, rho, g, steps=6, seed=2)[0]
    r_plain = relative_discrete_residual(plain, rho)
    previous = r_plain
    for k in (4, 16):
        proj = predict(model, rho, g, steps=6, seed=2, project=k)[0]
        r = relative_discrete_residual(proj, rho)
        assert np.median(r) < 0.5 * np.median(previous)  # more iterations, smaller residual
        assert max_boundary_violation(proj, g).max() == 0.0
        # a Krylov correction of an untrained model's answer moves it towards the solution
        assert relative_l2(proj, data.phi[:4]).mean() < relative_l2(plain, data.phi[:4]).mean()
        previous = r
    with pytest.raises(ConfigError, match="DDIM"):
        predict(model, rho, g, steps=2, sampler="em", project=2)
    with pytest.raises(ConfigError, match=">= 0"):
        predict(model, rho, g, steps=2, project=-1)


def test_cg_warm_start_from_the_surrogate_converges(trained, data):
    model, _ = trained["regression"]
    phi0 = predict(model, data.rho[:1], data.boundary[:1])[0, 0]
    warm = poisson_cg(data.rho[0], data.boundary[0], phi0=phi0, tol=1e-8)
    assert warm.converged and relative_l2(warm.x, data.phi[0]) < 1e-6


def test_bad_inputs_get_clear_errors(trained, data):
    model, _ = trained["diffusion"]
    with pytest.raises(ShapeError, match="trained at 16 x 16"):
        predict(model, np.zeros((2, 32, 32)))
    with pytest.raises(ShapeError, match="boundary"):
        predict(model, data.rho[:2], data.boundary[:3])
    with pytest.raises(ConfigError, match="guidance"):
        predict(trained["regression"][0], data.rho[:2], guidance=1.0)
    with pytest.raises(ConfigError, match="divisible"):
        PoissonSurrogate(SurrogateConfig(n=18, channel_mults=(1, 2, 2)))


def test_ddim_is_exact_for_a_point_mass_posterior():
    from gensci.models.sde import VPSDE
    from gensci.poisson.surrogate import ddim

    sde = VPSDE()
    x0 = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))

    def score(x, t):
        a, s = sde.alpha(t).reshape(-1, 1, 1, 1), sde.std(t).reshape(-1, 1, 1, 1)
        return -(x - a * x0) / s**2

    for eta in (0.0, 1.0):
        x = ddim(score, sde, (3, 1, 8, 8), steps=4, eta=eta, generator=torch.Generator())
        assert float((x - x0).abs().max()) < 1e-5


def test_refining_an_answer_starts_from_it(trained, data):
    model, _ = trained["diffusion"]
    rho, g = data.rho[:3], data.boundary[:3]
    out = predict(model, rho, g, steps=3, init=data.phi[:3], t_start=0.01, n_samples=2, eta=1.0)
    assert out.shape == (2, 3, 16, 16) and np.isfinite(out).all()
    # from t = 0.01 the answer stays near the exact solution it started from
    assert relative_l2(out[0], data.phi[:3]).max() < 0.5
