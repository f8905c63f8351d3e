"""A small 2-D UNet with time and condition embeddings (for score models and regression)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
from torch import nn
from torch.nn import functional as F

from gensci.errors import ShapeError
from gensci.nn.embeddings import SinusoidalEmbedding


@dataclass
class UNetConfig:
    in_channels: int = 1
    out_channels: int = 1
    cond_channels: int = 0  # image-shaped condition, concatenated to the input
    base_channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 1
    time_dim: int = 128
    cond_dim: int = 0  # vector condition, added to the time embedding
    groups: int = 8


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    g = groups
    while channels % g:
        g //= 2
    return nn.GroupNorm(max(g, 1), channels)


class ResBlock(nn.Module):
    """Two 3x3 convolutions with the embedding added in between; residual connection."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, groups: int) -> None:
        super().__init__()
        self.norm1 = _norm(c_in, groups)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2 = _norm(c_out, groups)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(emb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip(x)


class UNet(nn.Module):
    """(x: (B,C,H,W), t: (B,), cond: (B,Cc,H,W) | None, cond_vec: (B,Dc) | None) -> (B,C_out,H,W).

    H and W must be divisible by 2 ** (len(channel_mults) - 1).
    """

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = c = config
        self.time_embed = nn.Sequential(
            SinusoidalEmbedding(c.time_dim),
            nn.Linear(c.time_dim, c.time_dim),
            nn.SiLU(),
            nn.Linear(c.time_dim, c.time_dim),
        )
        self.cond_embed = nn.Linear(c.cond_dim, c.time_dim) if c.cond_dim > 0 else None
        self.stem = nn.Conv2d(c.in_channels + c.cond_channels, c.base_channels, 3, padding=1)
        chans = [c.base_channels * m for m in c.channel_mults]
        self.down = nn.ModuleList()
        skips = [c.base_channels]
        width = c.base_channels
        for level, ch in enumerate(chans):
            blocks = nn.ModuleList()
            for _ in range(c.num_res_blocks):
                blocks.append(ResBlock(width, ch, c.time_dim, c.groups))
                width = ch
                skips.append(width)
            down = (
                nn.Conv2d(width, width, 3, stride=2, padding=1) if level < len(chans) - 1 else None
            )
            if down is not None:
                skips.append(width)
            self.down.append(nn.ModuleDict({"blocks": blocks, "down": down or nn.Identity()}))
        self.mid = nn.ModuleList(
            [
                ResBlock(width, width, c.time_dim, c.groups),
                ResBlock(width, width, c.time_dim, c.groups),
            ]
        )
        self.up = nn.ModuleList()
        for level, ch in reversed(list(enumerate(chans))):
            blocks = nn.ModuleList()
            for _ in range(c.num_res_blocks + 1):
                blocks.append(ResBlock(width + skips.pop(), ch, c.time_dim, c.groups))
                width = ch
            up = nn.Conv2d(width, width, 3, padding=1) if level > 0 else None
            self.up.append(nn.ModuleDict({"blocks": blocks, "up": up or nn.Identity()}))
        self.out = nn.Sequential(
            _norm(width, c.groups), nn.SiLU(), nn.Conv2d(width, c.out_channels, 3, padding=1)
        )
        self.n_levels = len(chans)

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        cond: torch.Tensor | None = None,
        cond_vec: torch.Tensor | None = None,
    ) -> torch.Tensor:
        c = self.config
        factor = 2 ** (self.n_levels - 1)
        if x.dim() != 4 or x.shape[1] != c.in_channels:
            raise ShapeError(
                f"UNet input has shape {tuple(x.shape)}, expected (B, {c.in_channels}, H, W)"
            )
        if x.shape[-1] % factor or x.shape[-2] % factor:
            raise ShapeError(f"UNet input size {tuple(x.shape[-2:])} is not divisible by {factor}")
        if c.cond_channels:
            if cond is None or cond.shape[1] != c.cond_channels or cond.shape[-2:] != x.shape[-2:]:
                got = None if cond is None else tuple(cond.shape)
                raise ShapeError(
                    f"UNet needs cond of shape (B, {c.cond_channels}, H, W), got {got}"
                )
            x = torch.cat([x, cond], dim=1)
        t = t.reshape(-1).expand(x.shape[0]) if t.numel() == 1 else t.reshape(-1)
        emb = self.time_embed(t)
        if self.cond_embed is not None:
            if cond_vec is None:
                raise ShapeError(f"UNet needs cond_vec of shape (B, {c.cond_dim})")
            emb = emb + self.cond_embed(cond_vec)
        h = self.stem(x)
        hs = [h]
        for level in self.down:
            level = cast(nn.ModuleDict, level)
            for block in cast(nn.ModuleList, level["blocks"]):
                h = block(h, emb)
                hs.append(h)
            if not isinstance(level["down"], nn.Identity):
                h = level["down"](h)
                hs.append(h)
        for block in self.mid:
            h = block(h, emb)
        for level in self.up:
            level = cast(nn.ModuleDict, level)
            for block in cast(nn.ModuleList, level["blocks"]):
                h = block(torch.cat([h, hs.pop()], dim=1), emb)
            if not isinstance(level["up"], nn.Identity):
                h = level["up"](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.out(h)
