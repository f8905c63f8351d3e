"""A vector field over unordered sets of points in a periodic box: exchangeable and periodic.

For x: (B, N, d) in the box [0, L)^d the output y: (B, N, d) satisfies
    y(x[:, perm]) = y(x)[:, perm]           (permutation equivariance)
    y(x + L e_c) = y(x)                     (periodicity in every coordinate)
and is smooth in x (no minimum-image kink). It is the sum of a one-point term and a pairwise term,

    y_i = u(h_i, c_i) + sum_{j != i} w_ij v_ij,    v_ij = (L / 2 pi) sin(2 pi (x_i - x_j) / L),

where h_i encodes x_i by Fourier features, w_ij is a learned scalar of the chord distance
rho_ij = |(L / pi) sin(pi (x_i - x_j) / L)| and of h_i, h_j (symmetrically), and c_i pools the pair
messages. A gradient field of one- and two-point potentials has exactly this form.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from gensci.nn.embeddings import SinusoidalEmbedding
from gensci.nn.mlp import MLP


@dataclass
class PeriodicSetNetConfig:
    dim: int = 1  # d, coordinates per point
    period: float = 1.0  # L, the box length
    harmonics: int = 8  # Fourier features sin/cos(2 pi k x / L), k = 1..harmonics
    hidden: int = 32  # width of the point and pair features
    radial: int = 16  # radial basis functions of the chord distance
    time_dim: int = 32  # embedding of the diffusion time
    cond_dim: int = 0  # a vector condition (e.g. a physical time), shared by all points


class PeriodicSetNet(nn.Module):
    """y(x, t, cond): (B, N, d) -> (B, N, d), permutation-equivariant and periodic in x."""

    centres: torch.Tensor
    freqs: torch.Tensor

    def __init__(self, c: PeriodicSetNetConfig) -> None:
        super().__init__()
        self.config = c
        h = c.hidden
        self.embed = SinusoidalEmbedding(c.time_dim)
        ctx_in = c.time_dim + c.cond_dim
        self.context = MLP(ctx_in, h, (h,))
        self.register_buffer(
            "freqs", 2 * math.pi * torch.arange(1, c.harmonics + 1) / c.period, persistent=False
        )
        self.point = MLP(2 * c.dim * c.harmonics + h, h, (h,))
        # chord distances lie in [0, L sqrt(d) / 2]
        rho_max = c.period * math.sqrt(c.dim) / 2
        self.register_buffer("centres", torch.linspace(0, rho_max, c.radial), persistent=False)
        self.width = rho_max / max(c.radial - 1, 1)
        self.pair = MLP(c.radial + 2 + 2 * h, h, (h,))
        self.pair_weight = nn.Linear(h, 1)
        self.out = MLP(2 * h, c.dim, (h,))

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x: (B, N, d), t: (B,), cond: (B, cond_dim) or None -> (B, N, d)."""
        c = self.config
        b, n, _ = x.shape
        parts = [self.embed(t)] + ([cond] if cond is not None else [])
        ctx = self.context(torch.cat(parts, dim=-1))  # (B, h)
        phase = x.unsqueeze(-1) * self.freqs  # (B, N, d, K)
        fourier = torch.cat([torch.sin(phase), torch.cos(phase)], dim=-1).reshape(b, n, -1)
        h = self.point(torch.cat([fourier, ctx.unsqueeze(1).expand(b, n, -1)], dim=-1))
        delta = x.unsqueeze(2) - x.unsqueeze(1)  # (B, N, N, d): x_i - x_j
        v = (c.period / (2 * math.pi)) * torch.sin(2 * math.pi * delta / c.period)
        chord2 = ((c.period / math.pi) * torch.sin(math.pi * delta / c.period)).pow(2).sum(-1)
        eye = torch.eye(n, dtype=torch.bool, device=x.device)
        # the diagonal is masked out below; give it a harmless distance so sqrt/log stay finite
        rho = torch.sqrt(torch.where(eye, torch.ones_like(chord2), chord2) + 1e-12)  # (B, N, N)
        rbf = torch.exp(-(((rho.unsqueeze(-1) - self.centres) / self.width) ** 2))
        radial = torch.cat(
            [rbf, torch.log(rho / c.period).unsqueeze(-1), (c.period / rho).unsqueeze(-1) * 0.01],
            dim=-1,
        )
        hi, hj = h.unsqueeze(2).expand(b, n, n, -1), h.unsqueeze(1).expand(b, n, n, -1)
        m = self.pair(torch.cat([radial, hi + hj, hi * hj], dim=-1))  # (B, N, N, h)
        keep = (~eye).to(x.dtype).reshape(1, n, n, 1)
        m = m * keep
        w = self.pair_weight(m) * keep  # (B, N, N, 1)
        pooled = m.sum(2) / max(n - 1, 1)  # (B, N, h)
        return self.out(torch.cat([h, pooled], dim=-1)) + (w * v).sum(2)
