"""Latent-space MAP with a generative decoder G as prior.

    min_z ||A G(z) - y||^2 / (2 sigma^2) + lam ||z||^2 / 2

With lam = 1 and G a VAE decoder (or GAN generator) with z ~ N(0, I), this is the MAP estimate of
z under the model, its decoded image the reconstruction (Bora et al. 2017).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from gensci.errors import ConfigError, check_finite
from gensci.inverse.operators import LinearOperator


@dataclass
class LatentMAPResult:
    """The reconstruction x = G(z): (1, 1, H, W), the latent z: (1, latent_dim), the final loss."""

    x: torch.Tensor
    z: torch.Tensor
    loss: float


def latent_map(
    decoder: Callable[[torch.Tensor], torch.Tensor],
    latent_dim: int,
    op: LinearOperator,
    y: torch.Tensor,
    noise_std: float,
    lam: float = 1.0,
    steps: int = 500,
    lr: float = 0.05,
    restarts: int = 4,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> LatentMAPResult:
    """Return the lowest-loss MAP reconstruction of y: (1, *out_shape) over `restarts` starts.

    decoder: z (R, latent_dim) -> images (R, *op.in_shape). Adam on all restarts at once.
    """
    op.check_output(y, "sinogram")
    check_finite(y, "sinogram")
    if y.shape[0] != 1:
        raise ConfigError(f"latent MAP takes one sinogram at a time, got batch {y.shape[0]}")
    best = latent_map_batch(decoder, latent_dim, op, y, noise_std, lam, steps, lr, restarts,
                            generator, progress, name="sinogram")
    return LatentMAPResult(x=best.x, z=best.z, loss=float(best.loss[0]))


@dataclass
class LatentMAPBatch:
    """Per measurement: reconstructions x = G(z): (B, *in_shape), latents z: (B, latent_dim), the
    final losses (B,) of the best restart of each."""

    x: torch.Tensor
    z: torch.Tensor
    loss: torch.Tensor


def latent_map_batch(
    decoder: Callable[[torch.Tensor], torch.Tensor],
    latent_dim: int,
    op: LinearOperator,
    y: torch.Tensor,
    noise_std: float,
    lam: float = 1.0,
    steps: int = 500,
    lr: float = 0.05,
    restarts: int = 4,
    generator: torch.Generator | None = None,
    progress: bool = False,
    name: str = "measurements",
) -> LatentMAPBatch:
    """Return, for each of the B independent measurements y: (B, *out_shape), the lowest-loss MAP
    reconstruction over `restarts` random starts (Bora et al. 2017's restarts).

    decoder: z (R * B, latent_dim) -> images (R * B, *op.in_shape). One Adam run on all restarts
    of all measurements at once (Adam is element-wise, so the problems stay independent); the best
    restart is chosen per measurement.
    """
    op.check_output(y, name)
    check_finite(y, name)
    if noise_std <= 0 or lam < 0 or steps < 1 or restarts < 1:
        raise ConfigError(
            f"need noise_std > 0, lam >= 0, steps >= 1, restarts >= 1; got {noise_std}, {lam}, "
            f"{steps}, {restarts}"
        )
    b = y.shape[0]
    z0 = torch.randn((restarts, b, latent_dim), generator=generator).to(y.device, y.dtype)
    z = z0.requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)

    def losses() -> torch.Tensor:
        x = decoder(z.reshape(restarts * b, latent_dim)).reshape(restarts * b, *op.in_shape)
        yy = y.repeat(restarts, *([1] * (y.dim() - 1)))
        data = (op.forward(x) - yy).pow(2).flatten(1).sum(1) / (2.0 * noise_std**2)
        return data.reshape(restarts, b) + 0.5 * lam * z.pow(2).sum(-1)

    for _ in tqdm(range(steps), desc="latent MAP", disable=not progress, leave=False):
        opt.zero_grad()
        losses().sum().backward()
        opt.step()
    with torch.no_grad():
        final = losses()  # (R, B)
        best = final.argmin(0)
        zb = z[best, torch.arange(b)]
        x = decoder(zb).reshape(b, *op.in_shape)
        loss = final[best, torch.arange(b)]
    return LatentMAPBatch(x=x.detach(), z=zb.detach(), loss=loss.detach())
