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
    if noise_std <= 0 or lam < 0 or steps < 1 or restarts < 1:
        raise ConfigError(
            f"need noise_std > 0, lam >= 0, steps >= 1, restarts >= 1; got {noise_std}, {lam}, "
            f"{steps}, {restarts}"
        )
    z0 = torch.randn((restarts, latent_dim), generator=generator).to(y.device, y.dtype)
    z = z0.requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)

    def losses() -> torch.Tensor:
        x = decoder(z).reshape(restarts, *op.in_shape)
        data = (op.forward(x) - y).pow(2).flatten(1).sum(1) / (2.0 * noise_std**2)
        return data + 0.5 * lam * z.pow(2).sum(1)

    for _ in tqdm(range(steps), desc="latent MAP", disable=not progress, leave=False):
        opt.zero_grad()
        losses().sum().backward()
        opt.step()
    with torch.no_grad():
        final = losses()
        best = int(final.argmin())
        x = decoder(z[best : best + 1]).reshape(1, *op.in_shape)
    return LatentMAPResult(x=x.detach(), z=z[best : best + 1].detach(), loss=float(final[best]))
