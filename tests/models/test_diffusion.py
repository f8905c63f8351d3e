"""The diffusion model learns a 2-D mixture: its samples' mode weights match the truth."""

import pytest
import torch

from gensci.errors import ConfigError, ShapeError
from gensci.models import DiffusionConfig, DiffusionModel
from gensci.train import TrainConfig, Trainer

CENTERS = torch.tensor([[-2.0, 0.0], [2.0, 0.0], [0.0, 2.5]])
WEIGHTS = torch.tensor([0.5, 0.3, 0.2])


def mixture(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    k = torch.multinomial(WEIGHTS, n, replacement=True, generator=g)
    return CENTERS[k] + 0.25 * torch.randn(n, 2, generator=g)


@pytest.fixture(scope="module", params=["eps", "v", "x0"])
def trained(request) -> DiffusionModel:
    torch.manual_seed(0)
    model = DiffusionModel(
        DiffusionConfig(data_shape=(2,), hidden=(64, 64, 64), time_dim=32, prediction=request.param)
    )
    cfg = TrainConfig(steps=1500, batch_size=256, lr=2e-3, ema_decay=0.99, progress=False, seed=0)
    Trainer(model, mixture(4000, 0), cfg).fit()
    return model


@pytest.mark.parametrize("sampler,kwargs", [("ode", {"steps": 60}), ("em", {"steps": 200})])
def test_mixture_mode_weights(trained, sampler, kwargs):
    x = trained.sample(3000, sampler=sampler, generator=torch.Generator().manual_seed(1), **kwargs)
    nearest = torch.cdist(x, CENTERS).argmin(1)
    weights = torch.bincount(nearest, minlength=3).float() / len(x)
    assert (weights - WEIGHTS).abs().max() < 0.05, weights
    # samples sit on the modes, not between them
    assert torch.cdist(x, CENTERS).min(1).values.median() < 0.5


@pytest.mark.parametrize("kind", ["x0", "v"])
def test_prediction_kinds_convert_consistently(kind):
    """Whatever the network predicts, denoise() and eps() agree with x_t = alpha x0 + std eps."""
    torch.manual_seed(0)
    model = DiffusionModel(DiffusionConfig(data_shape=(3,), hidden=(16,), prediction=kind))
    x, t = torch.randn(7, 3), torch.rand(7) * 0.9 + 0.05
    out = model.eps_net(x, t, None)
    a, s = model.sde.alpha(t)[:, None], model.sde.std(t)[:, None]
    x0 = out if kind == "x0" else a * x - s * out
    assert torch.allclose(model.denoise(x, t), x0, atol=1e-5)
    assert torch.allclose(a * model.denoise(x, t) + s * model.eps(x, t), x, atol=1e-5)
    with pytest.raises(ConfigError, match="prediction"):
        DiffusionConfig(prediction="score")
    with pytest.raises(ConfigError, match="vp"):
        DiffusionConfig(prediction="v", sde="ve")


def test_score_and_denoise_shapes(trained):
    x, t = torch.randn(5, 2), torch.full((5,), 0.5)
    assert trained.score(x, t).shape == (5, 2)
    assert trained.denoise(x, t).shape == (5, 2)


def test_conditional_unet_loss_runs_and_checks_shapes():
    cfg = DiffusionConfig(
        data_shape=(1, 8, 8), net="unet", base_channels=8, channel_mults=(1, 2), cond_channels=1
    )
    model = DiffusionModel(cfg)
    x, c = torch.randn(4, 1, 8, 8), torch.randn(4, 1, 8, 8)
    loss = model.loss((x, c))
    assert torch.isfinite(loss)
    loss.backward()
    assert model.sample(2, sampler="ode", steps=3, cond=c[:2]).shape == (2, 1, 8, 8)
    with pytest.raises(ShapeError, match="conditional"):
        model.loss((x,))
    with pytest.raises(ShapeError, match="shape"):
        model.loss((torch.randn(4, 1, 6, 6), c))


def test_config_errors():
    with pytest.raises(ConfigError, match="net"):
        DiffusionConfig(net="transformer")
    with pytest.raises(ConfigError, match="data_shape"):
        DiffusionConfig(data_shape=(1, 8, 8), net="mlp")
    model = DiffusionModel(DiffusionConfig())
    with pytest.raises(ConfigError, match="sampler"):
        model.sample(2, sampler="magic")
