"""Embeddings of the diffusion time (or any scalar) as a vector."""

from __future__ import annotations

import math

import torch
from torch import nn


class SinusoidalEmbedding(nn.Module):
    """t: (B,) -> (B, dim) of sin/cos features at geometrically spaced frequencies."""

    freqs: torch.Tensor

    def __init__(self, dim: int, max_period: float = 10_000.0, scale: float = 1000.0) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"embedding dim must be even, got {dim}")
        self.dim = dim
        self.scale = scale  # t lives in [0, 1]; stretch it so low frequencies still vary
        freqs = torch.exp(-math.log(max_period) * torch.arange(dim // 2) / (dim // 2))
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        args = self.scale * t.reshape(-1, 1).to(self.freqs.dtype) * self.freqs
        return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)
