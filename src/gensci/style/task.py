"""The tasks: fit the style generators and the AdaIN transfer net with the core Trainer, interpolate
styles with the content fixed, and normalise stains (AdaIN transfer, Reinhard, Macenko)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gensci import checkpoint
from gensci.errors import CheckpointError, ConfigError, DataError
from gensci.models.style import (
    AdaINTransfer,
    AdaINTransferConfig,
    StyleGenerator,
    StyleGeneratorConfig,
)
from gensci.train import TrainConfig, Trainer

checkpoint.register_model(StyleGenerator, StyleGeneratorConfig)
checkpoint.register_model(AdaINTransfer, AdaINTransferConfig)

GENERATOR_FILE = "generator.safetensors"
TRANSFER_FILE = "transfer.safetensors"
INTERPOLATION_STEPS = 9


def train_generator(config: StyleGeneratorConfig, images: np.ndarray, masks: np.ndarray,
                    tc: TrainConfig, val: tuple[np.ndarray, np.ndarray] | None = None
                    ) -> tuple[StyleGenerator, list[dict[str, float]]]:
    """Fit a StyleGenerator (VAE objective) on images (N, 3, S, S) with content masks (N, 1, S, S)."""
    torch.manual_seed(tc.seed)
    model = StyleGenerator(config)
    data: tuple[torch.Tensor, ...] = (torch.from_numpy(images),)
    if config.content_channels > 0:
        data = data + (torch.from_numpy(masks),)
    val_data = None
    if val is not None:
        val_data = (torch.from_numpy(val[0]),) + (
            (torch.from_numpy(val[1]),) if config.content_channels > 0 else ())
    history = Trainer(model, data, tc, val_data=val_data).fit()
    return model.eval(), history


def train_transfer(config: AdaINTransferConfig, images: np.ndarray, ae_steps: int,
                   decoder_steps: int, tc: TrainConfig) -> tuple[AdaINTransfer, dict[str, Any]]:
    """Fit the AdaIN transfer net on images (N, C, H, W): the encoder and a decoder as an
    autoencoder first (no pretrained VGG here), then the decoder alone on content + style losses."""
    torch.manual_seed(tc.seed)
    model = AdaINTransfer(replace(config, stage="autoencoder"))
    x = torch.from_numpy(images)
    out = tc.out_dir
    h1 = Trainer(model, x, replace(tc, steps=ae_steps, out_dir=None if out is None
                                   else str(Path(out) / "autoencoder"))).fit()
    model.set_stage("decoder")
    h2 = Trainer(model, x, replace(tc, steps=decoder_steps, seed=tc.seed + 1, out_dir=None
                                   if out is None else str(Path(out) / "decoder"))).fit()
    return model.eval(), {"autoencoder_loss": h1[-1]["loss"] if h1 else None,
                          "decoder_loss": h2[-1]["loss"] if h2 else None}


def load_model(path: str | Path, kind: type, device: str = "cpu") -> Any:
    """Load a model file (or its folder) and check that it is a `kind`."""
    p = Path(path)
    if p.is_dir():
        names = [GENERATOR_FILE, TRANSFER_FILE]
        if kind is not StyleGenerator:
            names.reverse()
        # the other kind's file, if that is what the folder holds, is loaded and then refused
        p = next((p / n for n in names if (p / n).exists()), p / names[0])
    model = checkpoint.load(p)
    if not isinstance(model, kind):
        raise CheckpointError(f"{path} holds a {type(model).__name__}, not a {kind.__name__} "
                              f"(write one with `gensci style train`)")
    return model.to(device).eval()


@torch.no_grad()
def interpolate(model: StyleGenerator, content: torch.Tensor, z_a: torch.Tensor, z_b: torch.Tensor,
                steps: int = INTERPOLATION_STEPS, seed: int = 0) -> torch.Tensor:
    """Return G(c, f(z_a + t (z_b - z_a))) for t = 0 .. 1 in `steps` steps, noise fixed:
    content (B, C, S, S), z (B, latent_dim) -> (steps, B, 3, S, S)."""
    if steps < 2:
        raise ConfigError(f"an interpolation needs >= 2 steps, got {steps}")
    g = torch.Generator().manual_seed(seed)
    b = z_a.shape[0]
    noise = model.noise_inputs(b, g, z_a.device) if model.config.noise else None
    frames = []
    for t in torch.linspace(0.0, 1.0, steps):
        frames.append(model.generate(z_a + t * (z_b - z_a), content, noise))
    return torch.stack(frames)


@torch.no_grad()
def style_code(model: StyleGenerator, images: torch.Tensor) -> torch.Tensor:
    """Return the posterior means of q(z | x): (B, latent_dim)."""
    return model.encode(images)[0]


# -- stain normalisation ---------------------------------------------------------------------------
def to_uint8(rgb: np.ndarray) -> np.ndarray:
    return np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)


def reinhard(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Return Reinhard et al. 2001 (LAB mean/std matching, torchstain): RGB in [0, 1] (H, W, 3)."""
    from torchstain.numpy.normalizers import NumpyReinhardNormalizer

    norm = NumpyReinhardNormalizer()
    norm.fit(to_uint8(target))
    return np.clip(np.asarray(norm.normalize(to_uint8(source)), np.float64) / 255.0, 0.0, 1.0)


def macenko(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Return Macenko et al. 2009 (stain vectors from the OD plane's extreme angles, torchstain)."""
    from torchstain.numpy.normalizers import NumpyMacenkoNormalizer

    norm = NumpyMacenkoNormalizer()
    try:
        with np.errstate(all="ignore"):
            norm.fit(to_uint8(target))
            out = np.asarray(norm.normalize(to_uint8(source), stains=False)[0], np.float64)
    except (np.linalg.LinAlgError, ValueError, IndexError) as exc:
        # too few stained pixels (OD above beta) to estimate the stain plane
        raise DataError(f"Macenko cannot estimate the stain vectors of this tile: {exc}") from None
    if not np.isfinite(out).all():
        raise DataError("Macenko gave non-finite values on this tile (too little stained tissue)")
    return np.clip(out / 255.0, 0.0, 1.0)


OD_MAX = 3.0  # optical densities are divided by this (rgb clipped at 10^-3)


def to_od(rgb: np.ndarray) -> np.ndarray:
    """Return -log10(rgb) / OD_MAX in [0, 1]: stains mix linearly there (Beer-Lambert)."""
    return -np.log10(np.clip(rgb, 10.0**-OD_MAX, 1.0)) / OD_MAX


def from_od(od: np.ndarray) -> np.ndarray:
    """Return the RGB image of scaled optical densities (the inverse of to_od)."""
    return np.clip(10.0 ** (-OD_MAX * np.clip(od, 0.0, None)), 0.0, 1.0)


@torch.no_grad()
def adain_normalize(model: AdaINTransfer, source: np.ndarray, target: np.ndarray,
                    alpha: float = 1.0) -> np.ndarray:
    """Return the AdaIN transfer of target's stain onto source: RGB (H, W, 3) in [0, 1]. The
    network works on optical densities (to_od), where a change of stain is linear per pixel."""
    dev = next(model.parameters()).device

    def tensor(rgb: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(to_od(rgb).transpose(2, 0, 1))).float()[
            None].to(dev)

    out = model.transfer(tensor(source), tensor(target), alpha)[0].cpu().numpy()
    return from_od(out.transpose(1, 2, 0).astype(np.float64))
