"""Rotation-equivariant VAE: a generator G with G(R z) = R G(z) for the pixel-grid rotations C4.

The latent is made of `latent_fields` regular feature fields of the cyclic group C_n (n = 4, or
n = 1 for the plain, unconstrained model): z: (B, F, n), and the rotation r acts by a cyclic
shift of the last axis. Hidden layers are group convolutions on p4 feature maps (B, C, n, H, W)
(Cohen & Welling 2016), on which r acts by rotating the plane and shifting the group axis:

    (r F)(x, g) = F(r^-1 x, g - r),        (r z)(j, g) = z(j, g - r).

Every layer commutes with this action (rot90 is a permutation of pixels, so in float32 too), so
the decoder is exactly C4-equivariant and the encoder q(z|x) too: ELBO(r x) = ELBO(x). Finer
rotations act on the latent by trigonometric interpolation of each field's n samples and on the
image by bilinear resampling; their equivariance error is measured, not assumed.

Training objective: the negative ELBO per pixel with a Gaussian likelihood of one learned
standard deviation, KL to N(0, I) (`VAE.kl`), with a linear KL warm-up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import nn
from torch.nn import functional as F

from gensci.errors import ConfigError, ShapeError, check_finite
from gensci.models.vae import VAE

GROUPS = {"C4": 4, "trivial": 1}


@dataclass
class EquivariantVAEConfig:
    image_size: int = 16  # H = W; image_size / 2**len(channels) is the seed grid of the decoder
    channels: tuple[int, ...] = (16, 8)  # fields per decoder level, coarse to fine (x n copies)
    latent_fields: int = 4  # F: latent dimension d = F * n
    group: str = "C4"  # "C4" (equivariant) | "trivial" (plain convolutions, same layout)
    kernel_size: int = 3
    kl_weight: float = 1.0
    kl_warmup_steps: int = 0
    min_std: float = 1e-3  # floor of the learned Gaussian likelihood std

    def __post_init__(self) -> None:
        self.channels = tuple(int(c) for c in self.channels)
        if self.group not in GROUPS:
            raise ConfigError(f"unknown group {self.group!r}; choose one of {tuple(GROUPS)}")
        if not self.channels or min(self.channels) < 1 or self.latent_fields < 1:
            raise ConfigError(
                f"channels and latent_fields must be >= 1, got {self.channels}, "
                f"{self.latent_fields}"
            )
        seed = self.image_size / 2 ** len(self.channels)
        if seed < 1 or seed != int(seed):
            raise ConfigError(
                f"image_size {self.image_size} must be a multiple of 2**{len(self.channels)} "
                f"(one halving per level of channels={self.channels})"
            )
        if self.kernel_size % 2 == 0 or self.kernel_size < 1:
            raise ConfigError(f"kernel_size must be odd, got {self.kernel_size}")

    @property
    def n(self) -> int:
        """Return the group order n (4 for C4, 1 for the plain model)."""
        return GROUPS[self.group]

    @property
    def latent_dim(self) -> int:
        """Return d = latent_fields * n."""
        return self.latent_fields * self.n

    @property
    def seed_size(self) -> int:
        return self.image_size // 2 ** len(self.channels)


# -- group convolutions ---------------------------------------------------------------------------
def rotate_features(f: torch.Tensor, r: int) -> torch.Tensor:
    """Return r f for p4 features f: (B, C, n, H, W): the plane rotated by r * 90 degrees, the
    group axis shifted by r."""
    shift = r if f.shape[2] > 1 else 0
    return torch.rot90(torch.roll(f, shift, dims=2), r, dims=(-2, -1))


def _stack_rotated(w: torch.Tensor, n: int, group_dim: int | None) -> torch.Tensor:
    """Return [rot_r(roll_r(w))]_r stacked on a new axis 1: rot_r turns the last two axes by r * 90
    degrees, roll_r shifts axis `group_dim` (if any) by r."""
    out = []
    for r in range(n):
        wr = torch.roll(w, r, dims=group_dim) if group_dim is not None else w
        out.append(torch.rot90(wr, r, dims=(-2, -1)))
    return torch.stack(out, 1)


class LiftingConv(nn.Module):
    """Plane -> p4: x: (B, C_in, H, W) -> (B, C_out, n, H, W); output r correlates with the filter
    turned by r."""

    def __init__(self, c_in: int, c_out: int, n: int, k: int) -> None:
        super().__init__()
        self.n, self.pad = n, k // 2
        self.weight = nn.Parameter(torch.randn(c_out, c_in, k, k) / math.sqrt(c_in * k * k))
        self.bias = nn.Parameter(torch.zeros(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        co, ci, k, _ = self.weight.shape
        w = _stack_rotated(self.weight, self.n, None).reshape(co * self.n, ci, k, k)
        y = F.conv2d(x, w, self.bias.repeat_interleave(self.n), padding=self.pad)
        return y.reshape(x.shape[0], co, self.n, *y.shape[-2:])


class GroupConv(nn.Module):
    """p4 -> p4: f: (B, C_in, n, H, W) -> (B, C_out, n, H, W),
    out[r] = sum_g f[g] * rot_r(W[g - r]) (a plain convolution when n = 1)."""

    def __init__(self, c_in: int, c_out: int, n: int, k: int) -> None:
        super().__init__()
        self.n, self.pad = n, k // 2
        scale = 1.0 / math.sqrt(c_in * n * k * k)
        self.weight = nn.Parameter(torch.randn(c_out, c_in, n, k, k) * scale)
        self.bias = nn.Parameter(torch.zeros(c_out))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        b, ci, n, h, w_ = f.shape
        co, k = self.weight.shape[0], self.weight.shape[-1]
        w = _stack_rotated(self.weight, n, 2).reshape(co * n, ci * n, k, k)
        bias = self.bias.repeat_interleave(n)  # one bias per field, shared by its n copies
        y = F.conv2d(f.reshape(b, ci * n, h, w_), w, bias, padding=self.pad)
        return y.reshape(b, co, n, h, w_)


class LatentLift(nn.Module):
    """Regular latent fields -> p4 seed map: z: (B, F, n) -> (B, C, n, s, s), equivariant:
    K(x, g, j, h) = K0(h^-1 x, g - h, j), so only K0 (C, n, s, s, F) is free."""

    def __init__(self, fields: int, c_out: int, n: int, s: int) -> None:
        super().__init__()
        self.n = n
        self.weight = nn.Parameter(torch.randn(c_out, n, s, s, fields) / math.sqrt(fields * n))
        self.bias = nn.Parameter(torch.zeros(c_out))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        k0 = self.weight.permute(0, 1, 4, 2, 3)  # (C, n, F, s, s): spatial axes last
        k = _stack_rotated(k0, self.n, 1)  # (C, n_h, n_g, F, s, s)
        out = torch.einsum("chgjxy,bjh->bcgxy", k, z)
        return out + self.bias[:, None, None, None]


class _NormAct(nn.Module):
    """GroupNorm over groups of whole fields (all n copies of a channel together, so the
    statistics are invariant), one scale and shift per field (shared by its n copies), SiLU."""

    def __init__(self, c: int, n: int) -> None:
        super().__init__()
        self.groups = math.gcd(c, 4)
        self.weight = nn.Parameter(torch.ones(c))
        self.bias = nn.Parameter(torch.zeros(c))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        b, c, n, h, w = f.shape
        f = F.group_norm(f.reshape(b, c * n, h, w), self.groups).reshape(b, c, n, h, w)
        return F.silu(f * self.weight[:, None, None, None] + self.bias[:, None, None, None])


def _up(f: torch.Tensor) -> torch.Tensor:
    b, c, n, h, w = f.shape
    return F.interpolate(f.reshape(b, c * n, h, w), scale_factor=2, mode="nearest").reshape(
        b, c, n, 2 * h, 2 * w
    )


def _down(f: torch.Tensor) -> torch.Tensor:
    b, c, n, h, w = f.shape
    return F.avg_pool2d(f.reshape(b, c * n, h, w), 2).reshape(b, c, n, h // 2, w // 2)


# -- the model ------------------------------------------------------------------------------------
class EquivariantVAE(nn.Module):
    """Encoder q(z|x) and decoder G(z) = mean of p(x|z), both C_n-equivariant.

    x: (B, 1, H, W) images; z: (B, d) or (B, F, n) latents, d = F * n.
    """

    def __init__(self, config: EquivariantVAEConfig) -> None:
        super().__init__()
        self.config = c = config
        n, k, chans = c.n, c.kernel_size, c.channels
        # decoder: seed map, then (upsample, conv, norm, act) per level, then one output field
        self.lift = LatentLift(c.latent_fields, chans[0], n, c.seed_size)
        self.dec_convs, self.dec_acts = nn.ModuleList(), nn.ModuleList()
        prev = chans[0]
        for ch in chans:
            self.dec_convs.append(GroupConv(prev, ch, n, k))
            self.dec_acts.append(_NormAct(ch, n))
            prev = ch
        self.dec_out = GroupConv(prev, 1, n, k)
        # encoder: the mirror image, ending in a spatial mean (rotation-invariant) per field
        enc = tuple(reversed(chans))
        self.enc_in = LiftingConv(1, enc[0], n, k)
        self.enc_convs, self.enc_acts = nn.ModuleList(), nn.ModuleList()
        prev = enc[0]
        for ch in enc:
            self.enc_convs.append(GroupConv(prev, ch, n, k))
            self.enc_acts.append(_NormAct(ch, n))
            prev = ch
        self.enc_out = nn.Linear(prev, 2 * c.latent_fields)  # acts on channels, per group element
        self.log_std = nn.Parameter(torch.tensor(math.log(0.1)))

    # -- shapes -----------------------------------------------------------------------------------
    def latent_fields(self, z: torch.Tensor) -> torch.Tensor:
        """Return z as fields (B, F, n) from (B, d) or (B, F, n)."""
        c = self.config
        if z.dim() == 2 and z.shape[1] == c.latent_dim:
            return z.reshape(z.shape[0], c.latent_fields, c.n)
        if z.dim() == 3 and tuple(z.shape[1:]) == (c.latent_fields, c.n):
            return z
        raise ShapeError(
            f"z has shape {tuple(z.shape)}, expected (B, {c.latent_dim}) or "
            f"(B, {c.latent_fields}, {c.n})"
        )

    def _check_x(self, x: torch.Tensor) -> None:
        s = self.config.image_size
        if x.dim() != 4 or tuple(x.shape[1:]) != (1, s, s):
            raise ShapeError(f"x has shape {tuple(x.shape)}, expected (B, 1, {s}, {s})")

    # -- the model --------------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (mu, logvar) of q(z|x), each (B, d)."""
        self._check_x(x)
        f = self.enc_in(x)
        for conv, act in zip(self.enc_convs, self.enc_acts, strict=True):
            f = _down(act(conv(f)))
        pooled = f.mean((-2, -1))  # (B, C, n)
        out = self.enc_out(pooled.transpose(1, 2)).transpose(1, 2)  # (B, 2F, n)
        mu, logvar = out.chunk(2, dim=1)
        return mu.flatten(1), logvar.clamp(-12.0, 8.0).flatten(1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Return G(z): (B, 1, H, W), the mean of p(x|z)."""
        f = self.lift(self.latent_fields(z))
        for conv, act in zip(self.dec_convs, self.dec_acts, strict=True):
            f = act(conv(_up(f)))
        return self.dec_out(f).mean(2)  # mean over the group axis: a scalar field

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.decode(z)

    def log_likelihood(self, x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        """Return log N(x; mean, sigma^2 I) per image, (B,)."""
        log_std = self.log_std.clamp(min=math.log(self.config.min_std))
        r = (x - mean) / log_std.exp()
        return (-0.5 * r.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).flatten(1).sum(1)

    def elbo(
        self, x: torch.Tensor, n_samples: int = 1, kl_weight: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Return the ELBO per image in nats, (B,), averaged over n_samples draws of z."""
        mu, logvar = self.encode(x)
        rec = torch.zeros(x.shape[0], device=x.device)
        for _ in range(n_samples):
            noise = torch.randn(mu.shape, generator=generator).to(mu)
            rec = rec + self.log_likelihood(x, self.decode(mu + (0.5 * logvar).exp() * noise))
        return rec / n_samples - kl_weight * VAE.kl(mu, logvar)

    def kl_scale(self, step: int) -> float:
        """Return the KL weight at training step `step` (linear warm-up, then kl_weight)."""
        c = self.config
        if c.kl_warmup_steps <= 0:
            return c.kl_weight
        return c.kl_weight * min(1.0, step / c.kl_warmup_steps)

    def loss(self, batch: tuple[torch.Tensor, ...], step: int = 0) -> torch.Tensor:
        """Return the negative annealed ELBO per pixel, averaged over the batch."""
        x = batch[0]
        check_finite(x, "training batch")
        return -self.elbo(x, kl_weight=self.kl_scale(step)).mean() / x[0].numel()

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Return G(z) for z ~ N(0, I): (n, 1, H, W)."""
        device = self.log_std.device
        z = torch.randn(n, self.config.latent_dim, generator=generator).to(device)
        return self.decode(z)


def n_parameters(model: nn.Module) -> int:
    """Return the number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def matched_plain_config(config: EquivariantVAEConfig) -> EquivariantVAEConfig:
    """Return the plain ("trivial" group) config with the same latent dimension d and the widths
    that bring its parameter count closest to that of `config`'s model."""
    target = n_parameters(EquivariantVAE(config))
    best: tuple[float, EquivariantVAEConfig] | None = None
    for tenths in range(5, 61):
        widths = tuple(max(1, round(c * tenths / 10)) for c in config.channels)
        cand = replace(config, group="trivial", channels=widths,
                       latent_fields=config.latent_dim)
        gap = abs(n_parameters(EquivariantVAE(cand)) - target) / target
        if best is None or gap < best[0]:
            best = (gap, cand)
    assert best is not None
    return best[1]


# -- rotations of latents and images --------------------------------------------------------------
def rotate_latent(z: torch.Tensor, angle: float, n: int) -> torch.Tensor:
    """Return R_angle z for regular C_n fields z: (B, F, n) or (B, F * n).

    A multiple of 2 pi / n is the exact cyclic shift; other angles shift each field's n samples by
    trigonometric (band-limited) interpolation, which is an approximation of the action.
    """
    shape = z.shape
    f = z.reshape(shape[0], -1, n)
    if n == 1:
        return z.clone()
    t = angle / (2 * math.pi / n)  # shift in samples
    if abs(t - round(t)) < 1e-12:
        return torch.roll(f, int(round(t)), dims=-1).reshape(shape)
    coef = torch.fft.fft(f.double(), dim=-1) / n
    g = torch.arange(n, dtype=torch.float64)
    out = coef[..., 0:1].real.expand(-1, -1, n).clone()
    for k in range(1, (n + 1) // 2):
        phase = torch.exp(2j * math.pi * k * (g - t) / n)
        out = out + 2 * (coef[..., k : k + 1] * phase).real
    if n % 2 == 0:  # the Nyquist term is real: its band-limited shift is a cosine
        out = out + coef[..., n // 2 : n // 2 + 1].real * torch.cos(math.pi * (g - t))
    return out.to(z.dtype).reshape(shape)


def rotate_image(x: torch.Tensor, angle: float) -> torch.Tensor:
    """Return x: (B, C, H, W) turned by `angle` radians about its centre, as torch.rot90(x, 1)
    turns it by pi / 2; exact (rot90) for multiples of pi / 2, bilinear otherwise, zero outside."""
    quarter = angle / (math.pi / 2)
    if abs(quarter - round(quarter)) < 1e-12:
        return torch.rot90(x, int(round(quarter)) % 4, dims=(-2, -1))
    c, s = math.cos(angle), math.sin(angle)
    # output pixel (u, v) in normalised coordinates samples input at R^-1 (u, v); rot90 by +1
    # sends [i, j] to [W-1-j, i], a turn of +90 degrees in (column, row) = (x, y) coordinates
    # with y pointing down, i.e. theta = (x, y) -> (x cos + y sin, -x sin + y cos) inverse
    theta = torch.tensor([[c, -s, 0.0], [s, c, 0.0]], dtype=x.dtype, device=x.device)
    theta = theta.unsqueeze(0).expand(x.shape[0], 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def disk_mask(size: int, margin: float = 1.0) -> torch.Tensor:
    """Return the (size, size) 0/1 mask of the inscribed disk, `margin` pixels inside its edge."""
    c = (size - 1) / 2
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    return (((yy - c) ** 2 + (xx - c) ** 2) <= (size / 2 - margin) ** 2).float()


@torch.no_grad()
def equivariance_error(
    model: EquivariantVAE, angle: float, n_latents: int = 64, generator: torch.Generator | None = None,
) -> float:
    """Return mean ||G(R z) - R G(z)|| / ||G(z)|| over z ~ N(0, I), inside the inscribed disk
    (corners leave the frame under a non-square rotation), for the C_n action of `model`'s latent.

    For the plain model (n = 1) the latent has no rotation action; the C4 action on the same
    latent numbers, read as (d / 4, 4) fields, is used as the reference.
    """
    c = model.config
    n = c.n if c.n > 1 else 4
    device = model.log_std.device
    z = torch.randn(n_latents, c.latent_dim, generator=generator).to(device)
    if c.latent_dim % n:
        raise ConfigError(f"latent_dim {c.latent_dim} is not made of C{n} fields")
    rz = rotate_latent(z, angle, n)
    mask = disk_mask(c.image_size).to(device)
    a = model.decode(rz) * mask
    b = rotate_image(model.decode(z), angle) * mask
    num = (a - b).flatten(1).norm(dim=1)
    den = (model.decode(z) * mask).flatten(1).norm(dim=1).clamp_min(1e-12)
    return float((num / den).mean())


def _register() -> None:
    from gensci.checkpoint import register_model

    register_model(EquivariantVAE, EquivariantVAEConfig)


_register()
