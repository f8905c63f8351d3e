"""The core style models: AdaIN's exact statistics, per-layer style injection, matched sizes, the
VAE loss falling under the Trainer, and the transfer net's two stages."""

from __future__ import annotations

import pytest
import torch

from gensci.errors import ConfigError, ShapeError
from gensci.models.style import (
    AdaIN,
    AdaINTransfer,
    AdaINTransferConfig,
    StyleGenerator,
    StyleGeneratorConfig,
    adain,
    adain_transfer,
    channel_stats,
    matched_entangled_config,
    n_parameters,
)
from gensci.train import TrainConfig, Trainer

TINY = StyleGeneratorConfig(
    image_size=16, widths=(8, 8, 8), w_dim=8, latent_dim=4, encoder_widths=(8, 8)
)


def test_adain_output_has_exactly_the_target_means_and_stds(gen: torch.Generator) -> None:
    x = torch.randn(3, 5, 7, 9, generator=gen) * 4 + 2
    mean = torch.randn(3, 5, generator=gen)
    std = torch.rand(3, 5, generator=gen) + 0.1
    mu, sigma = channel_stats(adain(x, mean, std))
    torch.testing.assert_close(mu[..., 0, 0], mean, atol=1e-5, rtol=0)
    torch.testing.assert_close(sigma[..., 0, 0], std, atol=1e-4, rtol=1e-4)
    y = torch.randn(3, 5, 4, 4, generator=gen) * 3 - 1
    torch.testing.assert_close(
        channel_stats(adain_transfer(x, y))[1], channel_stats(y)[1], atol=1e-4, rtol=1e-4
    )
    with pytest.raises(ShapeError):
        adain(x[0], mean, std)


def test_adain_layer_applies_the_affine_style_of_w(gen: torch.Generator) -> None:
    layer = AdaIN(4, 6)
    torch.nn.init.normal_(layer.affine.weight, generator=gen)
    w = torch.randn(2, 6, generator=gen)
    scale, bias = layer.style(w)
    mu, sigma = channel_stats(layer(torch.randn(2, 4, 8, 8, generator=gen), w))
    torch.testing.assert_close(mu[..., 0, 0], bias, atol=1e-5, rtol=0)
    torch.testing.assert_close(sigma[..., 0, 0], scale.abs(), atol=1e-4, rtol=1e-3)


def _randomise(model: torch.nn.Module, gen: torch.Generator) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen))


def test_per_layer_style_changes_only_that_layer_and_what_follows(gen: torch.Generator) -> None:
    model = StyleGenerator(TINY)
    _randomise(model, gen)
    content = (torch.rand(2, 1, 16, 16, generator=gen) > 0.5).float()
    w = torch.randn(2, 8, generator=gen).unsqueeze(1).repeat(1, 3, 1)
    noise = model.noise_inputs(2, gen)
    x0, f0 = model.synthesize(w, content, noise, return_features=True)
    w2 = w.clone()
    w2[:, 2] = torch.randn(2, 8, generator=gen)  # a new style for the last layer only
    x2, f2 = model.synthesize(w2, content, noise, return_features=True)
    for a, b in zip(f0[:2], f2[:2], strict=True):
        assert torch.equal(a, b)  # the layers before it are untouched, bit for bit
    assert (f0[2] - f2[2]).abs().max() > 1e-2 and (x0 - x2).abs().max() > 1e-2

    # in that layer only the channel statistics change: the normalised activations are the same
    def normalised(f: torch.Tensor) -> torch.Tensor:
        mu, sigma = channel_stats(f)
        return (f - mu) / sigma

    scale0 = model.blocks[2].adain.style(w[:, 2])[0]
    scale2 = model.blocks[2].adain.style(w2[:, 2])[0]
    sign = (scale0.sign() * scale2.sign())[..., None, None]
    torch.testing.assert_close(normalised(f0[2]) * sign, normalised(f2[2]), atol=1e-3, rtol=1e-3)
    # the content path never sees w: the first layer's pre-style activations ignore the style
    pre = [model.blocks[0].pre_style(content, noise[0]) for _ in range(2)]
    assert torch.equal(pre[0], pre[1])


def test_entangled_twin_has_the_same_size_and_no_per_layer_styles(gen: torch.Generator) -> None:
    twin = matched_entangled_config(TINY)
    a, e = n_parameters(StyleGenerator(TINY)), n_parameters(StyleGenerator(twin))
    assert abs(a - e) / a < 0.02
    model = StyleGenerator(twin)
    with pytest.raises(ShapeError):
        model.synthesize(torch.zeros(1, 3, 8), torch.zeros(1, 1, 16, 16))
    with pytest.raises(ConfigError):
        StyleGeneratorConfig(mode="mixed")
    with pytest.raises(ConfigError):
        StyleGeneratorConfig(image_size=18)


def test_constant_input_generator_upsamples_to_the_image_size(gen: torch.Generator) -> None:
    cfg = StyleGeneratorConfig(
        image_size=16,
        content_channels=0,
        widths=(8, 8, 8),
        w_dim=8,
        latent_dim=4,
        encoder_widths=(8,),
    )
    model = StyleGenerator(cfg)
    assert model.sample(3, generator=gen).shape == (3, 3, 16, 16)


def test_style_vae_loss_falls_under_the_trainer(gen: torch.Generator) -> None:
    from gensci.style.data import make_shapes

    s = make_shapes(64, 16, seed=0)
    model = StyleGenerator(TINY)
    data = (torch.from_numpy(s.images), torch.from_numpy(s.masks))
    before = model.loss(data).item()
    Trainer(model, data, TrainConfig(steps=60, batch_size=32, lr=3e-3, progress=False)).fit()
    torch.manual_seed(0)
    assert model.loss(data).item() < 0.6 * before
    with pytest.raises(ShapeError):
        model.loss((data[0][:, :2], data[1]))


def test_transfer_trains_autoencoder_then_decoder_with_a_frozen_encoder(
    gen: torch.Generator,
) -> None:
    x = torch.rand(32, 3, 16, 16, generator=gen)
    model = AdaINTransfer(AdaINTransferConfig(widths=(8, 8)))
    before = model.loss((x,)).item()
    Trainer(model, x, TrainConfig(steps=40, batch_size=16, lr=3e-3, progress=False)).fit()
    assert model.loss((x,)).item() < before
    model.set_stage("decoder")
    enc = [p.clone() for p in model.encoder.parameters()]
    Trainer(model, x, TrainConfig(steps=5, batch_size=16, progress=False)).fit()
    assert all(torch.equal(a, b) for a, b in zip(enc, model.encoder.parameters(), strict=True))
    assert model.transfer(x[:1], x[1:2, :, :8, :8]).shape == (1, 3, 16, 16)
    with pytest.raises(ShapeError, match="multiples of 2"):
        model.transfer(x[:1, :, :15, :15], x[1:2])


def test_generators_at_64_pixels_and_their_checkpoints_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from gensci import checkpoint
    from gensci.style import task  # noqa: F401  (registers the style models)

    for content_channels in (1, 0):
        cfg = StyleGeneratorConfig(
            image_size=64,
            content_channels=content_channels,
            widths=(8, 8, 8, 8),
            w_dim=8,
            latent_dim=4,
            encoder_widths=(8, 8, 8),
        )
        model = StyleGenerator(cfg)
        content = torch.ones(2, 1, 64, 64) if content_channels else None
        x = model.sample(2, content, torch.Generator().manual_seed(0))
        assert x.shape == (2, 3, 64, 64)
        path = checkpoint.save(model, tmp_path / f"g{content_channels}.safetensors")
        again = checkpoint.load(path)
        y = again.sample(2, content, torch.Generator().manual_seed(0))
        assert torch.equal(x, y)


def test_pooled_moments_are_those_of_the_concatenated_tiles(gen: torch.Generator) -> None:
    from gensci.errors import DataError
    from gensci.models.style import pooled_moments

    a, b = torch.randn(1, 3, 5, 4, generator=gen), torch.randn(2, 3, 5, 7, generator=gen) + 1
    mean, cov = pooled_moments([a, b])
    px = torch.cat([a.permute(0, 2, 3, 1).reshape(-1, 3), b.permute(0, 2, 3, 1).reshape(-1, 3)])
    torch.testing.assert_close(mean, px.mean(0))
    torch.testing.assert_close(cov, torch.cov(px.T, correction=0))
    # a mask keeps only its pixels: the moments of a tile with a background are its tissue's
    mask = torch.zeros(1, 1, 5, 4, dtype=torch.bool)
    mask[..., :3, :] = True
    m2, c2 = pooled_moments([a], [mask])
    torch.testing.assert_close(m2, a[..., :3, :].mean(dim=(0, 2, 3)))
    with pytest.raises(DataError, match="pixels"):
        pooled_moments([a], [torch.zeros_like(mask)])


def test_adain_covariance_moves_the_moments_and_is_adain_for_diagonal_ones(
    gen: torch.Generator,
) -> None:
    from gensci.models.style import adain_covariance, pooled_moments

    mix = torch.tensor([[1.0, 0.5, 0.0], [0.0, 1.0, -0.7], [0.3, 0.0, 1.0]])
    x = torch.einsum("bchw,cd->bdhw", torch.randn(2, 3, 16, 16, generator=gen), mix).double()
    mean_c, cov_c = pooled_moments([x])
    mean_s = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    cov_s = torch.tensor([[2.0, 0.3, 0.1], [0.3, 1.0, -0.2], [0.1, -0.2, 0.5]], dtype=torch.float64)
    y = adain_covariance(x, mean_c, cov_c, mean_s, cov_s, eps=0.0)
    m_y, c_y = pooled_moments([y])
    torch.testing.assert_close(m_y, mean_s)
    torch.testing.assert_close(c_y, cov_s)
    # with the covariances' off-diagonals dropped it is AdaIN of the channel means and stds
    xi = torch.randn(1, 3, 8, 8, generator=gen).double()
    mu, sigma = channel_stats(xi, eps=0.0)
    var_s = torch.tensor([0.5, 2.0, 1.5], dtype=torch.float64)
    z = adain_covariance(
        xi, mu.flatten(), torch.diag(sigma.flatten() ** 2), mean_s, torch.diag(var_s), eps=0.0
    )
    torch.testing.assert_close(z, adain(xi, mean_s[None], var_s.sqrt()[None], eps=0.0))
    with pytest.raises(ShapeError):
        adain_covariance(x, mean_c, cov_c[:2, :2], mean_s, cov_s)
