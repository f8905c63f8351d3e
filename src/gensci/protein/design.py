"""Design: pick latent points, decode aligned sequences, strip gaps, remove duplicates.

Latent points come from the prior N(0, I), from around a natural sequence's posterior
q(z | x) (scaled), or along the line between two sequences' posterior means. Decoding takes the
argmax letter at each position (temperature 0) or samples each position from
softmax(logits / temperature).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from gensci.errors import ConfigError, DataError
from gensci.models.vae import VAE
from gensci.protein.io import decode


@dataclass
class Designs:
    """Designed sequences: aligned rows, ungapped sequences, latent points, names."""

    ids: list[str]
    aligned: list[str]
    sequences: list[str]
    z: np.ndarray  # (N, latent_dim)
    codes: np.ndarray  # (N, L) int

    def __len__(self) -> int:
        return len(self.ids)


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def prior_points(model: VAE, n: int, generator: torch.Generator) -> torch.Tensor:
    """Return n latent points from the prior N(0, I): (n, latent_dim)."""
    return torch.randn(n, model.config.latent_dim, generator=generator)


@torch.no_grad()
def posterior(model: VAE, codes: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (mu, std) of q(z | x) for aligned rows `codes` (N, L): each (N, latent_dim), CPU."""
    x = torch.as_tensor(np.asarray(codes), dtype=torch.long, device=_device(model))
    mu, logvar = model.encode(x)
    return mu.cpu(), (0.5 * logvar).exp().cpu()


def near_points(
    model: VAE, codes: np.ndarray, n: int, generator: torch.Generator, scale: float = 1.0
) -> torch.Tensor:
    """Return n points mu + scale * std * eps around one row's posterior: (n, latent_dim).

    codes: (L,) or (1, L) aligned row of the seed sequence.
    """
    mu, std = posterior(model, np.atleast_2d(codes))
    eps = torch.randn(n, model.config.latent_dim, generator=generator)
    return mu + scale * std * eps


def line_points(model: VAE, codes_a: np.ndarray, codes_b: np.ndarray, n: int) -> torch.Tensor:
    """Return n points evenly spaced on the line between two posterior means: (n, latent_dim)."""
    mu, _ = posterior(model, np.stack([np.asarray(codes_a), np.asarray(codes_b)]))
    t = torch.linspace(0.0, 1.0, n)[:, None]
    return (1 - t) * mu[0] + t * mu[1]


@torch.no_grad()
def decode_points(
    model: VAE,
    z: torch.Tensor,
    temperature: float = 0.0,
    generator: torch.Generator | None = None,
    batch_size: int = 4096,
) -> np.ndarray:
    """Return aligned integer rows decoded from `z` (N, latent_dim): (N, L).

    temperature 0 takes the argmax letter; > 0 samples each position from softmax(logits / T).
    """
    if temperature < 0:
        raise ConfigError(f"temperature must be >= 0, got {temperature}")
    out = []
    dev = _device(model)
    for s in range(0, z.shape[0], batch_size):
        logits = model.decode(z[s : s + batch_size].to(dev)).float().cpu()  # (B, L, K)
        if temperature == 0:
            out.append(logits.argmax(-1))
        else:
            probs = torch.softmax(logits / temperature, dim=-1)
            flat = probs.reshape(-1, probs.shape[-1])
            draws = torch.multinomial(flat, 1, generator=generator).reshape(probs.shape[:2])
            out.append(draws)
    return torch.cat(out).numpy().astype(np.int64)


def finish(
    codes: np.ndarray, z: np.ndarray, prefix: str = "design", dedupe: bool = True
) -> Designs:
    """Return Designs from decoded rows: gaps stripped, empty and repeated sequences removed.

    Duplicates are judged on the ungapped sequence; the first occurrence is kept.
    """
    aligned = decode(codes)
    seqs = [a.replace("-", "") for a in aligned]
    keep, seen = [], set()
    for i, s in enumerate(seqs):
        if not s or (dedupe and s in seen):
            continue
        seen.add(s)
        keep.append(i)
    return Designs(
        ids=[f"{prefix}_{k:05d}" for k in range(len(keep))],
        aligned=[aligned[i] for i in keep],
        sequences=[seqs[i] for i in keep],
        z=np.asarray(z)[keep],
        codes=codes[keep],
    )


def select(designs: Designs, index: Sequence[int]) -> Designs:
    """Return the designs at `index`, in that order."""
    idx = list(index)
    return Designs(ids=[designs.ids[i] for i in idx], aligned=[designs.aligned[i] for i in idx],
                   sequences=[designs.sequences[i] for i in idx], z=designs.z[idx],
                   codes=designs.codes[idx])


def concat(parts: Sequence[Designs], latent_dim: int, length: int) -> Designs:
    """Return the designs of `parts` one after another."""
    return Designs(ids=[i for p in parts for i in p.ids],
                   aligned=[a for p in parts for a in p.aligned],
                   sequences=[q for p in parts for q in p.sequences],
                   z=np.concatenate([p.z for p in parts]) if parts else np.zeros((0, latent_dim)),
                   codes=(np.concatenate([p.codes for p in parts]) if parts
                          else np.zeros((0, length), dtype=np.int64)))


def design(
    model: VAE,
    n: int,
    mode: str = "prior",
    temperature: float = 0.0,
    seed: int = 0,
    seed_codes: Sequence[np.ndarray] = (),
    scale: float = 1.0,
    dedupe: bool = True,
    prefix: str = "design",
) -> Designs:
    """Return up to `n` designs (fewer after deduplication).

    mode: "prior" | "near" (seed_codes: one aligned row) | "line" (seed_codes: two rows).
    """
    if n < 1:
        raise ConfigError(f"number of designs must be >= 1, got {n}")
    gen = torch.Generator().manual_seed(seed)
    if mode == "prior":
        z = prior_points(model, n, gen)
    elif mode == "near":
        if len(seed_codes) != 1:
            raise DataError("mode 'near' needs exactly one seed sequence")
        z = near_points(model, seed_codes[0], n, gen, scale)
    elif mode == "line":
        if len(seed_codes) != 2:
            raise DataError("mode 'line' needs exactly two seed sequences")
        z = line_points(model, seed_codes[0], seed_codes[1], n)
    else:
        raise ConfigError(f"unknown design mode {mode!r}; choose prior, near or line")
    codes = decode_points(model, z, temperature, gen)
    return finish(codes, z.numpy(), prefix=prefix, dedupe=dedupe)
