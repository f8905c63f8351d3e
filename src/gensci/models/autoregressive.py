"""MADE: an autoregressive model with exact likelihood over D ordered categorical dimensions.

log p(x) = sum_d log p(x_d | x_<d), every conditional computed in one masked forward pass
(Germain et al. 2015); sampling is ancestral, one dimension at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from gensci.errors import ConfigError, DataError, ShapeError


@dataclass
class MADEConfig:
    n_dims: int = 8
    n_categories: int = 2
    hidden: tuple[int, ...] = (128, 128)
    seed: int = 0  # seeds the hidden units' connectivity degrees

    def __post_init__(self) -> None:
        self.hidden = tuple(int(h) for h in self.hidden)
        if self.n_dims < 1 or self.n_categories < 2:
            raise ConfigError(
                f"MADE needs n_dims >= 1 and n_categories >= 2, got {self.n_dims}, {self.n_categories}"
            )
        if any(h < 1 for h in self.hidden) or not self.hidden:
            raise ConfigError(
                f"MADE needs at least one hidden layer of positive width, got {self.hidden}"
            )


class MaskedLinear(nn.Linear):
    """A linear layer whose weight is multiplied by a fixed 0/1 connectivity mask."""

    mask: torch.Tensor

    def __init__(self, in_features: int, out_features: int, mask: torch.Tensor) -> None:
        super().__init__(in_features, out_features)
        self.register_buffer("mask", mask.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class MADE(nn.Module):
    """p(x) over x: (B, D) integers in [0, K); logits for x_d depend only on x_<d."""

    def __init__(self, config: MADEConfig) -> None:
        super().__init__()
        self.config = c = config
        d, k = c.n_dims, c.n_categories
        g = torch.Generator().manual_seed(c.seed)
        # degree of each unit: inputs 1..D (repeated K times), hidden in [1, D-1], outputs 1..D
        deg_in = torch.arange(1, d + 1).repeat_interleave(k)
        layers: list[nn.Module] = []
        prev = deg_in
        for h in c.hidden:
            low = 1 if d > 1 else 0
            deg = (
                torch.randint(low, max(d, 2), (h,), generator=g)
                if d > 1
                else torch.zeros(h, dtype=torch.long)
            )
            layers += [MaskedLinear(prev.numel(), h, deg[:, None] >= prev[None, :]), nn.ReLU()]
            prev = deg
        deg_out = torch.arange(1, d + 1).repeat_interleave(k)
        layers.append(MaskedLinear(prev.numel(), d * k, deg_out[:, None] > prev[None, :]))
        # the first dimension has no parents: its logits are the output layer's bias alone
        self.net = nn.Sequential(*layers)

    def _check(self, x: torch.Tensor) -> None:
        c = self.config
        if x.dim() != 2 or x.shape[1] != c.n_dims:
            raise ShapeError(f"x has shape {tuple(x.shape)}, expected (B, {c.n_dims})")
        if x.is_floating_point():
            raise DataError("MADE takes integer category indices, got floats")
        if x.numel() and (x.min() < 0 or x.max() >= c.n_categories):
            raise DataError(
                f"categories must lie in [0, {c.n_categories}), got {int(x.min())}..{int(x.max())}"
            )

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Return the conditional logits (B, D, K); row d depends only on x_<d."""
        c = self.config
        dtype = next(self.parameters()).dtype
        onehot = F.one_hot(x.long(), c.n_categories).to(dtype).reshape(x.shape[0], -1)
        return self.net(onehot).reshape(x.shape[0], c.n_dims, c.n_categories)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Return the exact log-likelihood log p(x) per example, (B,), in nats."""
        self._check(x)
        logp = F.log_softmax(self.logits(x), dim=-1)
        return logp.gather(-1, x.long().unsqueeze(-1)).squeeze(-1).sum(-1)

    def loss(self, batch: tuple[torch.Tensor, ...], step: int = 0) -> torch.Tensor:
        """Return the mean negative log-likelihood per example (nats)."""
        return -self.log_prob(batch[0]).mean()

    @torch.no_grad()
    def sample(
        self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0
    ) -> torch.Tensor:
        """Return n ancestral samples (n, D) of integers, drawing x_d from p(x_d | x_<d)^(1/T)."""
        if temperature <= 0:
            raise ConfigError(f"temperature must be > 0, got {temperature}")
        c = self.config
        device = next(self.parameters()).device
        x = torch.zeros(n, c.n_dims, dtype=torch.long, device=device)
        for d in range(c.n_dims):
            probs = F.softmax(self.logits(x)[:, d] / temperature, dim=-1)
            x[:, d] = torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(-1).to(device)
        return x
