"""WGAN-GP: a generator G(z) and a critic D(x) trained on the Wasserstein loss with gradient penalty.

critic loss = E[D(G(z))] - E[D(x)] + gp_weight E[(||grad D(x_hat)|| - 1)^2],  generator loss = -E[D(G(z))]
(Gulrajani et al. 2017). `loss(batch, step)` alternates: n_critic critic steps, then one
generator step. The other player is kept out of the graph, so its gradients stay None and the
shared Trainer's optimizer leaves it untouched on that step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from gensci.errors import ConfigError, ShapeError
from gensci.nn import MLP


@dataclass
class WGANGPConfig:
    data_dim: int = 2
    latent_dim: int = 8
    hidden: tuple[int, ...] = (128, 128)
    gp_weight: float = 10.0
    n_critic: int = 5  # critic steps per generator step

    def __post_init__(self) -> None:
        self.hidden = tuple(int(h) for h in self.hidden)
        if self.data_dim < 1 or self.latent_dim < 1:
            raise ConfigError(
                f"data_dim and latent_dim must be >= 1, got {self.data_dim}, {self.latent_dim}"
            )


class WGANGP(nn.Module):
    """Generator (B, latent_dim) -> (B, data_dim) and critic (B, data_dim) -> (B,)."""

    def __init__(self, config: WGANGPConfig) -> None:
        super().__init__()
        self.config = c = config
        self.generator = MLP(c.latent_dim, c.data_dim, c.hidden, "relu")
        self.critic = MLP(c.data_dim, 1, c.hidden, "leaky_relu")

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """Return G(z): (B, data_dim)."""
        return self.generator(z)

    def critic_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """Return E[D(fake)] - E[D(real)] + gp_weight * gradient penalty on random interpolates."""
        eps = torch.rand(real.shape[0], 1, device=real.device)
        x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
        d_hat = self.critic(x_hat)
        grad = torch.autograd.grad(d_hat.sum(), x_hat, create_graph=True)[0]
        penalty = (grad.norm(dim=-1) - 1.0).pow(2).mean()
        return self.critic(fake).mean() - self.critic(real).mean() + self.config.gp_weight * penalty

    has_unused_parameters = True  # each step trains one player only (DDP must know)

    def loss(self, batch: tuple[torch.Tensor, ...], step: int = 0) -> torch.Tensor:
        """Return the critic loss (fakes detached) or, every n_critic+1-th step, the generator loss."""
        real = batch[0]
        if real.dim() != 2 or real.shape[1] != self.config.data_dim:
            raise ShapeError(
                f"data has shape {tuple(real.shape)}, expected (B, {self.config.data_dim})"
            )
        z = torch.randn(real.shape[0], self.config.latent_dim, device=real.device)
        if step % (self.config.n_critic + 1) < self.config.n_critic:
            with torch.no_grad():
                fake = self.generate(z)
            return self.critic_loss(real, fake)
        frozen = {k: v.detach() for k, v in self.critic.named_parameters()}
        return -functional_call(self.critic, frozen, (self.generate(z),)).mean()

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Return n samples G(z), z ~ N(0, I): (n, data_dim)."""
        device = next(self.parameters()).device
        z = torch.randn(n, self.config.latent_dim, generator=generator).to(device)
        return self.generate(z)
