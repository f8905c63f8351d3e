"""VAE / CVAE: held-out ELBO rises with training; shapes, conditions and likelihoods behave."""

import math

import pytest
import torch

from gensci.errors import ConfigError, DataError, ShapeError
from gensci.models import VAE, VAEConfig
from gensci.train import TrainConfig, Trainer


def manifold(n: int, seed: int) -> torch.Tensor:
    """Points near a 2-D surface in 8-D."""
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(n, 2, generator=g)
    a = torch.randn(2, 8, generator=torch.Generator().manual_seed(99))
    return torch.tanh(u @ a) + 0.05 * torch.randn(n, 8, generator=g)


def test_heldout_elbo_rises():
    torch.manual_seed(0)
    model = VAE(VAEConfig(data_dim=8, latent_dim=2, hidden=(64, 64), kl_warmup_steps=100))
    held = manifold(500, 1)
    g = torch.Generator().manual_seed(5)
    before = model.elbo(held, n_samples=4, generator=g).mean().item()
    cfg = TrainConfig(steps=600, batch_size=128, lr=3e-3, val_every=150, progress=False)
    history = Trainer(model, manifold(2000, 0), cfg, val_data=held).fit()
    val = [r["val_loss"] for r in history if "val_loss" in r]
    after = model.elbo(held, n_samples=4, generator=torch.Generator().manual_seed(5)).mean().item()
    assert after > before + 5.0, (before, after)
    assert val[-1] < val[0], val


def test_categorical_elbo_is_a_bound_on_one_hot_data():
    model = VAE(
        VAEConfig(data_dim=5, latent_dim=2, hidden=(16,), likelihood="categorical", n_categories=4)
    )
    x = torch.randint(0, 4, (10, 5))
    elbo = model.elbo(x)
    assert elbo.shape == (10,) and (elbo < 0).all()
    # an untrained decoder is near uniform: log-likelihood about -D log K
    assert (
        abs(model.log_likelihood(x, torch.zeros(10, 5, 4)).mean().item() + 5 * math.log(4)) < 1e-5
    )
    one_hot = torch.nn.functional.one_hot(x, 4).float()
    assert torch.allclose(model.encode(x)[0], model.encode(one_hot)[0])
    with pytest.raises(DataError, match="outside"):
        model.elbo(torch.full((2, 5), 7))


def test_conditional_vae_label_and_vector():
    lab = VAE(VAEConfig(data_dim=3, latent_dim=2, hidden=(8,), n_labels=2))
    x = torch.randn(6, 3)
    c = torch.tensor([0, 1, 0, 1, 1, 0])
    assert lab.elbo(x, c).shape == (6,)
    assert lab.sample(4, torch.tensor([1, 1, 0, 0])).shape == (4, 3)
    with pytest.raises(ShapeError, match="conditional"):
        lab.elbo(x)
    vec = VAE(VAEConfig(data_dim=3, latent_dim=2, hidden=(8,), cond_dim=2, cond_in_encoder=False))
    assert vec.reconstruct(x, torch.randn(6, 2)).shape == (6, 3)
    with pytest.raises(ShapeError, match="condition"):
        vec.elbo(x, torch.randn(6, 3))


def test_bad_input_and_config():
    model = VAE(VAEConfig(data_dim=3, latent_dim=2, hidden=(8,)))
    with pytest.raises(ShapeError, match=r"\(B, 3\)"):
        model.elbo(torch.randn(4, 5))
    bad = torch.randn(4, 3)
    bad[1, 2] = float("nan")
    with pytest.raises(DataError, match="NaN"):
        model.loss((bad,))
    with pytest.raises(ConfigError, match="likelihood"):
        VAEConfig(likelihood="poisson")
