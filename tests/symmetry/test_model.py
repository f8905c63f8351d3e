"""The core EquivariantVAE: exact C4 equivariance, measured finer-rotation error, training."""

from __future__ import annotations

import math

import pytest
import torch

from gensci import checkpoint
from gensci.errors import ConfigError, ShapeError
from gensci.models.equivariant import (
    EquivariantVAE,
    EquivariantVAEConfig,
    GroupConv,
    LiftingConv,
    equivariance_error,
    matched_plain_config,
    n_parameters,
    rotate_features,
    rotate_image,
    rotate_latent,
)
from gensci.train import TrainConfig, Trainer

TINY = EquivariantVAEConfig(image_size=16, channels=(8, 4), latent_fields=3)


def test_group_convolutions_commute_with_quarter_turns(gen: torch.Generator) -> None:
    x = torch.randn(2, 1, 12, 12, generator=gen)
    lift, conv = LiftingConv(1, 5, 4, 3), GroupConv(5, 3, 4, 3)
    for r in (1, 2, 3):
        rx = torch.rot90(x, r, dims=(-2, -1))
        assert torch.allclose(lift(rx), rotate_features(lift(x), r), atol=1e-5)
        f = lift(x)
        assert torch.allclose(conv(rotate_features(f, r)), rotate_features(conv(f), r), atol=1e-5)
    # a plain convolution (n = 1) does not: the check can fail
    plain = GroupConv(1, 1, 1, 3)
    f = x[:, :, None]
    assert not torch.allclose(plain(rotate_features(f, 1)), rotate_features(plain(f), 1),
                              atol=1e-3)


def test_untrained_c4_generator_is_exactly_equivariant(gen: torch.Generator) -> None:
    model = EquivariantVAE(TINY).eval()
    for r in (1, 2, 3):
        err = equivariance_error(model, r * math.pi / 2, n_latents=16, generator=gen)
        assert err <= 1e-5, (r, err)
    # without the disk mask too: rot90 of the whole frame
    z = torch.randn(4, TINY.latent_dim, generator=gen)
    with torch.no_grad():
        a = model.decode(rotate_latent(z, math.pi / 2, 4))
        b = torch.rot90(model.decode(z), 1, dims=(-2, -1))
    assert (a - b).abs().max() <= 1e-5 * b.abs().max()
    plain = EquivariantVAE(matched_plain_config(TINY)).eval()
    assert equivariance_error(plain, math.pi / 2, n_latents=16, generator=gen) > 0.1


def test_trained_generator_stays_equivariant_and_its_loss_falls(gen: torch.Generator) -> None:
    x = torch.rand(64, 1, 16, 16, generator=gen) * torch.linspace(0, 1, 16)  # an oriented ramp
    model = EquivariantVAE(TINY)
    history = Trainer(model, x, TrainConfig(steps=40, batch_size=16, lr=3e-3, log_every=10,
                                            progress=False)).fit()
    assert history[-1]["loss"] < history[0]["loss"]
    assert equivariance_error(model, math.pi / 2, n_latents=16, generator=gen) <= 1e-5
    # the encoder too: ELBO(rot x) = ELBO(x) with the same (permuted) noise
    mu, logvar = model.encode(x[:8])
    mu_r, logvar_r = model.encode(torch.rot90(x[:8], 1, dims=(-2, -1)))
    assert torch.allclose(rotate_latent(mu, math.pi / 2, 4), mu_r, atol=1e-5)
    assert torch.allclose(rotate_latent(logvar, math.pi / 2, 4), logvar_r, atol=1e-5)


def test_latent_and_image_rotations(gen: torch.Generator) -> None:
    z = torch.randn(3, 8, generator=gen)
    assert torch.equal(rotate_latent(z, math.pi / 2, 4).reshape(3, 2, 4),
                       torch.roll(z.reshape(3, 2, 4), 1, dims=-1))
    # the interpolated shift is continuous in the angle and exact at the samples
    near = rotate_latent(z, math.pi / 2 - 1e-6, 4)
    assert torch.allclose(near, rotate_latent(z, math.pi / 2, 4), atol=1e-5)
    x = torch.rand(2, 1, 10, 10, generator=gen)
    assert torch.allclose(rotate_image(x, math.pi / 2 + 1e-7), torch.rot90(x, 1, dims=(-2, -1)),
                          atol=1e-4)
    # a centred round blob is unchanged by any turn, up to bilinear resampling
    c = torch.arange(16) - 7.5
    blob = torch.exp(-(c[:, None] ** 2 + c[None, :] ** 2) / 8.0)[None, None]
    for angle in (0.3, 1.0, 2.5):
        assert (rotate_image(blob, angle) - blob).abs().max() < 0.06  # a half-pixel shift: 0.15


def test_plain_twin_has_the_same_size_and_latent() -> None:
    plain = matched_plain_config(TINY)
    a, b = n_parameters(EquivariantVAE(TINY)), n_parameters(EquivariantVAE(plain))
    assert abs(a - b) / a < 0.05 and plain.latent_dim == TINY.latent_dim == 12


def test_checkpoint_round_trip(tmp_path, gen: torch.Generator) -> None:
    model = EquivariantVAE(TINY).eval()
    path = checkpoint.save(model, tmp_path / "g.safetensors")
    again = checkpoint.load(path)
    z = torch.randn(2, 12, generator=gen)
    assert torch.equal(model.decode(z), again.decode(z))


def test_bad_configs_and_shapes() -> None:
    with pytest.raises(ConfigError, match="multiple of"):
        EquivariantVAEConfig(image_size=10, channels=(4, 4))
    with pytest.raises(ConfigError, match="group"):
        EquivariantVAEConfig(group="C5")
    model = EquivariantVAE(TINY)
    with pytest.raises(ShapeError, match="expected"):
        model.decode(torch.zeros(2, 5))
    with pytest.raises(ShapeError, match="expected"):
        model.encode(torch.zeros(2, 1, 8, 8))
