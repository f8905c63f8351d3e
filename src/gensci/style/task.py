"""The tasks: fit the style generators and the AdaIN transfer net with the core Trainer, interpolate
styles with the content fixed, and normalise stains (AdaIN of slide-level optical-density
statistics, the AdaIN transfer net, Reinhard, Macenko)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gensci import checkpoint
from gensci.errors import CheckpointError, ConfigError, DataError, ShapeError
from gensci.models.style import (
    AdaINTransfer,
    AdaINTransferConfig,
    StyleGenerator,
    StyleGeneratorConfig,
    adain_covariance,
    pooled_moments,
)
from gensci.train import TrainConfig, Trainer

checkpoint.register_model(StyleGenerator, StyleGeneratorConfig)
checkpoint.register_model(AdaINTransfer, AdaINTransferConfig)

GENERATOR_FILE = "generator.safetensors"
TRANSFER_FILE = "transfer.safetensors"
INTERPOLATION_STEPS = 9


def train_generator(
    config: StyleGeneratorConfig,
    images: np.ndarray,
    masks: np.ndarray,
    tc: TrainConfig,
    val: tuple[np.ndarray, np.ndarray] | None = None,
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
            (torch.from_numpy(val[1]),) if config.content_channels > 0 else ()
        )
    history = Trainer(model, data, tc, val_data=val_data).fit()
    return model.eval(), history


def train_transfer(
    config: AdaINTransferConfig,
    images: np.ndarray,
    ae_steps: int,
    decoder_steps: int,
    tc: TrainConfig,
) -> tuple[AdaINTransfer, dict[str, Any]]:
    """Fit the AdaIN transfer net on images (N, C, H, W): the encoder and a decoder as an
    autoencoder first (no pretrained VGG here), then the decoder alone on content + style losses."""
    torch.manual_seed(tc.seed)
    model = AdaINTransfer(replace(config, stage="autoencoder"))
    x = torch.from_numpy(images)
    out = tc.out_dir
    h1 = Trainer(
        model,
        x,
        replace(
            tc, steps=ae_steps, out_dir=None if out is None else str(Path(out) / "autoencoder")
        ),
    ).fit()
    model.set_stage("decoder")
    h2 = Trainer(
        model,
        x,
        replace(
            tc,
            steps=decoder_steps,
            seed=tc.seed + 1,
            out_dir=None if out is None else str(Path(out) / "decoder"),
        ),
    ).fit()
    return model.eval(), {
        "autoencoder_loss": h1[-1]["loss"] if h1 else None,
        "decoder_loss": h2[-1]["loss"] if h2 else None,
    }


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
        raise CheckpointError(
            f"{path} holds a {type(model).__name__}, not a {kind.__name__} "
            f"(write one with `gensci style train`)"
        )
    return model.to(device).eval()


@torch.no_grad()
def interpolate(
    model: StyleGenerator,
    content: torch.Tensor,
    z_a: torch.Tensor,
    z_b: torch.Tensor,
    steps: int = INTERPOLATION_STEPS,
    seed: int = 0,
) -> torch.Tensor:
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
# Every normaliser takes the reference staining as one tile or as many tiles of the reference slide
# (their pixels pooled), and the source slide as the tile alone or as many tiles of its slide.
Tiles = np.ndarray | Sequence[np.ndarray]


def as_tiles(tiles: Tiles, what: str = "tiles") -> list[np.ndarray]:
    """Return a list of RGB tiles (H, W, 3) from one tile or a sequence of them."""
    out = [tiles] if isinstance(tiles, np.ndarray) and tiles.ndim == 3 else list(tiles)
    if not out:
        raise DataError(f"no {what} given")
    for i, t in enumerate(out):
        if t.ndim != 3 or t.shape[2] != 3:
            raise ShapeError(f"{what} {i} has shape {t.shape}; expected an RGB tile (H, W, 3)")
    return out


def pooled_pixels(tiles: Tiles) -> np.ndarray:
    """Return the pixels of all tiles as one image of one column: (P, 1, 3)."""
    return np.concatenate([t.reshape(-1, 3) for t in as_tiles(tiles)])[:, None, :]


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    return np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)


def reinhard(source: np.ndarray, target: Tiles, sources: Tiles | None = None) -> np.ndarray:
    """Return Reinhard et al. 2001 (LAB mean/std matching, torchstain's formulas): RGB in [0, 1]
    (H, W, 3). target: the reference tile(s), pixels pooled; sources: the source slide's tiles
    whose pooled statistics replace the tile's own (default: the tile alone)."""
    from torchstain.numpy.normalizers import NumpyReinhardNormalizer
    from torchstain.numpy.utils.lab2rgb import lab2rgb
    from torchstain.numpy.utils.rgb2lab import rgb2lab
    from torchstain.numpy.utils.split import lab_merge, lab_split

    norm = NumpyReinhardNormalizer()
    norm.fit(to_uint8(pooled_pixels(target)))
    if sources is None:
        out = np.asarray(norm.normalize(to_uint8(source)), np.float64) / 255.0
        return np.clip(out, 0.0, 1.0)

    def lab(rgb: np.ndarray) -> list[np.ndarray]:
        return list(lab_split(rgb2lab(to_uint8(rgb).astype("float32") / 255)))

    pool = lab(pooled_pixels(sources))
    labs = lab(source)
    result = [
        (x - p.mean()) / p.std() * st + mt
        for x, p, mt, st in zip(labs, pool, norm.target_means, norm.target_stds, strict=True)
    ]
    out = (lab2rgb(lab_merge(*result)) * 255).astype("uint8")
    return np.clip(np.asarray(out, np.float64) / 255.0, 0.0, 1.0)


MACENKO_IO, MACENKO_ALPHA, MACENKO_BETA = 240, 1, 0.15  # torchstain's defaults


def macenko(source: np.ndarray, target: Tiles, sources: Tiles | None = None) -> np.ndarray:
    """Return Macenko et al. 2009 (stain vectors from the OD plane's extreme angles, torchstain's
    estimator): RGB in [0, 1] (H, W, 3). target: the reference tile(s), pixels pooled for the
    target stain matrix; sources: the source slide's tiles on which the source stain matrix and
    concentration percentiles are estimated (default: the tile alone, torchstain's normalize)."""
    from torchstain.numpy.normalizers import NumpyMacenkoNormalizer

    norm = NumpyMacenkoNormalizer()
    try:
        with np.errstate(all="ignore"):
            norm.fit(to_uint8(pooled_pixels(target)))
            if sources is None:
                out = np.asarray(norm.normalize(to_uint8(source), stains=False)[0], np.float64)
            else:
                estimate = norm._NumpyMacenkoNormalizer__compute_matrices  # type: ignore[attr-defined]
                he, _, max_c = estimate(
                    to_uint8(pooled_pixels(sources)), MACENKO_IO, MACENKO_ALPHA, MACENKO_BETA
                )
                # the rest of torchstain's normalize, with the pooled source estimate
                od = -np.log((to_uint8(source).reshape(-1, 3).astype(float) + 1) / MACENKO_IO)
                conc = np.linalg.lstsq(he, od.T, rcond=None)[0]
                conc = conc / (max_c / norm.maxCRef)[:, None]
                out = np.minimum(MACENKO_IO * np.exp(-norm.HERef.dot(conc)), 255)
                out = out.T.reshape(source.shape).astype(np.uint8).astype(np.float64)
    except (np.linalg.LinAlgError, ValueError, IndexError) as exc:
        # too few stained pixels (OD above beta) to estimate the stain plane
        raise DataError(f"Macenko cannot estimate the stain vectors of this tile: {exc}") from None
    if not np.isfinite(out).all():
        raise DataError("Macenko gave non-finite values on this tile (too little stained tissue)")
    return np.clip(out / 255.0, 0.0, 1.0)


OD_MAX = 3.0  # optical densities are divided by this (rgb clipped at 10^-3)
TISSUE_OD = 0.15  # a pixel is tissue when its summed optical density -log10(rgb) exceeds this
MIN_TISSUE_PIXELS = 16


def to_od(rgb: np.ndarray) -> np.ndarray:
    """Return -log10(rgb) / OD_MAX in [0, 1]: stains mix linearly there (Beer-Lambert)."""
    return -np.log10(np.clip(rgb, 10.0**-OD_MAX, 1.0)) / OD_MAX


def from_od(od: np.ndarray) -> np.ndarray:
    """Return the RGB image of scaled optical densities (the inverse of to_od)."""
    return np.clip(10.0 ** (-OD_MAX * np.clip(od, 0.0, None)), 0.0, 1.0)


def _od_tensor(rgb: np.ndarray) -> torch.Tensor:
    """Return the scaled optical density of an RGB tile as a (1, 3, H, W) float64 tensor."""
    return torch.from_numpy(np.ascontiguousarray(to_od(rgb).transpose(2, 0, 1)))[None]


def tissue_mask(rgb: np.ndarray, tissue_od: float = TISSUE_OD) -> torch.Tensor:
    """Return the tissue pixels of a tile (summed optical density above tissue_od): (1, 1, H, W)."""
    return _od_tensor(rgb).sum(1, keepdim=True) * OD_MAX > tissue_od


@dataclass
class StainMoments:
    """The mean (3,) and covariance (3, 3) of the scaled optical density over the tissue pixels
    of one or many tiles taken together, and how many pixels they hold."""

    mean: torch.Tensor
    cov: torch.Tensor
    pixels: int


def stain_moments(
    tiles: Tiles, what: str = "reference", tissue_od: float = TISSUE_OD
) -> StainMoments:
    """Return the optical-density moments of the tissue pixels of all tiles pooled (a slide's
    staining rather than one tile's tissue mix); DataError if fewer than MIN_TISSUE_PIXELS."""
    ts = as_tiles(tiles, what)
    masks = [tissue_mask(t, tissue_od) for t in ts]
    n = int(sum(int(m.sum()) for m in masks))
    if n < MIN_TISSUE_PIXELS:
        raise DataError(
            f"the {what} holds {n} tissue pixels (summed optical density above "
            f"{tissue_od:g}); need at least {MIN_TISSUE_PIXELS}: give tiles with tissue"
        )
    mean, cov = pooled_moments([_od_tensor(t) for t in ts], masks)
    return StainMoments(mean, cov, n)


def adain_stain(
    source: np.ndarray,
    source_moments: StainMoments,
    reference_moments: StainMoments,
    covariance: bool = True,
    about_zero: bool = True,
) -> np.ndarray:
    """Return the source tile moved, per pixel in optical density, from the source's stain moments
    to the reference's: RGB (H, W, 3) in [0, 1]. covariance=True: AdaIN with the channel
    covariance (gensci.models.style.adain_covariance); False: AdaIN of the channel means and stds.
    about_zero=True: the second moments about zero (E[x x^T]) replace the centred ones and no mean
    is shifted, so the map is linear and white (optical density 0) stays white; a change of stain
    is such a linear map of optical densities (Beer-Lambert), and every pixel keeps its place."""
    cs, cr = source_moments.cov, reference_moments.cov
    ms, mr = source_moments.mean, reference_moments.mean
    if about_zero:
        cs, cr = cs + torch.outer(ms, ms), cr + torch.outer(mr, mr)
        ms, mr = torch.zeros_like(ms), torch.zeros_like(mr)
    if not covariance:
        cs, cr = torch.diag_embed(cs.diagonal()), torch.diag_embed(cr.diagonal())
    out = adain_covariance(_od_tensor(source), ms, cs, mr, cr)
    return from_od(out[0].numpy().transpose(1, 2, 0))


@torch.no_grad()
def net_moments(
    model: AdaINTransfer, tiles: Tiles, what: str = "reference", tissue_od: float | None = TISSUE_OD
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the channel means and stds (C,) of the net's last features over all tiles pooled
    (tissue pixels only unless tissue_od is None)."""
    ts = as_tiles(tiles, what)
    feats, masks = [], []
    dev = next(model.parameters()).device
    for t in ts:
        f = model.features(_od_tensor(t).float().to(dev))[-1].cpu()
        feats.append(f)
        if tissue_od is not None:
            m = tissue_mask(t, tissue_od).float()
            masks.append(torch.nn.functional.interpolate(m, size=f.shape[2:]) > 0.5)
    try:
        mean, cov = pooled_moments(feats, masks if tissue_od is not None else None)
    except DataError:
        raise DataError(
            f"the {what} holds too few tissue pixels for the net's statistics "
            f"(summed optical density above {tissue_od})"
        ) from None
    return mean, (cov.diagonal() + 1e-5).sqrt()


@torch.no_grad()
def adain_normalize(
    model: AdaINTransfer,
    source: np.ndarray,
    target: Tiles,
    alpha: float = 1.0,
    sources: Tiles | None = None,
    tissue_od: float | None = TISSUE_OD,
    moments: tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
    | None = None,
) -> np.ndarray:
    """Return the AdaIN transfer of the target's stain onto source: RGB (H, W, 3) in [0, 1]. The
    network works on optical densities (to_od), where a change of stain is linear per pixel.
    One target tile and no `sources`: AdaIN with the two images' own feature statistics;
    otherwise the statistics of all target tiles pooled, and of all `sources` tiles (the source's
    slide; default the tile alone), or `moments` = ((mean, std) of the source's, of the target's
    features) computed once by net_moments for a whole folder."""
    dev = next(model.parameters()).device
    x = _od_tensor(source).float().to(dev)
    if moments is None and isinstance(target, np.ndarray) and target.ndim == 3 and sources is None:
        out = model.transfer(x, _od_tensor(target).float().to(dev), alpha)
    else:
        if moments is None:
            src = source if sources is None else sources
            moments = (
                net_moments(model, src, "source", tissue_od),
                net_moments(model, target, "reference", tissue_od),
            )
        (mc, sc), (ms, ss) = moments
        out = model.transfer_moments(x, mc.to(dev), sc.to(dev), ms.to(dev), ss.to(dev), alpha)
    return from_od(out[0].cpu().numpy().transpose(1, 2, 0).astype(np.float64))
