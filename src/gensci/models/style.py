"""Style-based generators: AdaIN, a mapping network, a style-modulated synthesis network, and AdaIN
style transfer.

AdaIN(x, y) = sigma(y) (x - mu(x)) / sigma(x) + mu(y), statistics per sample and channel over space
(Huang & Belongie 2017). The synthesis network (Karras et al. 2019) starts from a content input (or a
learned constant), and after each convolution replaces the channel statistics by a style
(scale, bias) = A_l(w), with w = f(z) from a mapping network and optional per-pixel noise. Its
entangled twin of the same parameter count feeds w only at the input. Both are the decoder of a VAE:
q(z | x) = N(mu(x), diag exp(logvar(x))), loss = (||x - G(c, f(z))||^2 / (2 s^2) + beta KL) / pixels.

`pooled_moments` gives the channel statistics of many images taken together (a slide-level style);
`adain_covariance` is AdaIN with the channel covariance (the Gaussian optimal-transport map).

`AdaINTransfer`: encoder f, t = AdaIN(f(c), f(s)), decoder g; content loss ||f(g(t)) - t||^2 and
style loss sum_l ||mu(f_l(g(t))) - mu(f_l(s))|| + ||sigma(f_l(g(t))) - sigma(f_l(s))||.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import nn
from torch.nn import functional as F

from gensci.errors import ConfigError, DataError, ShapeError

MODES = ("adain", "entangled")
STAGES = ("autoencoder", "decoder")


def channel_stats(x: torch.Tensor, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (mu, sigma) over space per sample and channel: x (B, C, H, W) -> two (B, C, 1, 1)."""
    mu = x.mean(dim=(2, 3), keepdim=True)
    sigma = (x.var(dim=(2, 3), keepdim=True, unbiased=False) + eps).sqrt()
    return mu, sigma


def adain(
    x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, eps: float = 1e-5
) -> torch.Tensor:
    """Return std (x - mu(x)) / sigma(x) + mean: x (B, C, H, W), mean and std (B, C) or (B, C, 1, 1).

    The output's channel means are exactly `mean` and its (biased) stds are `std`, up to eps.
    """
    if x.dim() != 4:
        raise ShapeError(f"adain expects x of shape (B, C, H, W), got {tuple(x.shape)}")
    mean = mean.reshape(x.shape[0], x.shape[1], 1, 1)
    std = std.reshape(x.shape[0], x.shape[1], 1, 1)
    mu, sigma = channel_stats(x, eps)
    return std * (x - mu) / sigma + mean


def adain_transfer(content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """Return AdaIN(content, style) for feature maps (B, C, H, W) and (B, C, H', W')."""
    mu, sigma = channel_stats(style)
    return adain(content, mu, sigma)


def pooled_moments(
    feats: list[torch.Tensor], masks: list[torch.Tensor] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the channel mean (C,) and (biased) covariance (C, C) over every pixel of every
    feature map taken together: feats, each (B, C, H, W), sizes may differ; masks, each
    (B, 1, H, W) bool, keep only the pixels where they are true. The statistics of many tiles of a
    slide are those of their concatenation, not the mean of per-tile statistics."""
    if not feats:
        raise DataError("pooled_moments needs at least one feature map")
    c = feats[0].shape[1]
    rows = []
    for i, f in enumerate(feats):
        if f.dim() != 4 or f.shape[1] != c:
            raise ShapeError(f"feature map {i} has shape {tuple(f.shape)}, expected (B, {c}, H, W)")
        px = f.permute(0, 2, 3, 1).reshape(-1, c)
        if masks is not None:
            px = px[masks[i].reshape(-1).bool()]
        rows.append(px)
    pixels = torch.cat(rows)
    if pixels.shape[0] < 2:
        raise DataError(f"pooled_moments needs >= 2 pixels, got {pixels.shape[0]}")
    mean = pixels.mean(0)
    d = pixels - mean
    return mean, d.T @ d / pixels.shape[0]


def _sqrtm(s: torch.Tensor, power: float) -> torch.Tensor:
    """Return s^power of a symmetric positive-definite matrix (C, C) by its eigendecomposition."""
    w, v = torch.linalg.eigh(s)
    return (v * w.clamp(min=1e-12).pow(power)) @ v.T


def adain_covariance(
    x: torch.Tensor,
    mean_c: torch.Tensor,
    cov_c: torch.Tensor,
    mean_s: torch.Tensor,
    cov_s: torch.Tensor,
    eps: float = 1e-5,
) -> torch.Tensor:
    """Return (x - mean_c) T + mean_s per pixel, T = C^-1/2 (C^1/2 S C^1/2)^1/2 C^-1/2, with
    C = cov_c + eps I, S = cov_s + eps I: x (B, K, H, W), means (K,), covariances (K, K).

    AdaIN with the channel covariance in place of the channel variances: T is the least-displacement
    (optimal-transport) linear map from N(mean_c, C) to N(mean_s, S), the symmetric form of Li et
    al. 2017's whitening and colouring. Pixels with content statistics (mean_c, C) leave with
    (mean_s, S); with diagonal covariances T = diag(sigma_s / sigma_c) and this is adain."""
    k = x.shape[1]
    if x.dim() != 4 or cov_c.shape != (k, k) or cov_s.shape != (k, k):
        raise ShapeError(
            f"adain_covariance: x {tuple(x.shape)} needs (K, K) covariances, got "
            f"{tuple(cov_c.shape)} and {tuple(cov_s.shape)}"
        )
    eye = torch.eye(k, dtype=torch.float64, device=x.device)
    cc = cov_c.double() + eps * eye
    ss = cov_s.double() + eps * eye
    half, inv_half = _sqrtm(cc, 0.5), _sqrtm(cc, -0.5)
    t = (inv_half @ _sqrtm(half @ ss @ half, 0.5) @ inv_half).to(x.dtype)
    px = x.permute(0, 2, 3, 1) - mean_c.to(x.dtype)
    return (px @ t + mean_s.to(x.dtype)).permute(0, 3, 1, 2)


class AdaIN(nn.Module):
    """AdaIN whose style (scale, bias) = A(w) is an affine map of a style vector w (B, w_dim)."""

    def __init__(self, channels: int, w_dim: int) -> None:
        super().__init__()
        self.affine = nn.Linear(w_dim, 2 * channels)
        nn.init.zeros_(self.affine.weight)
        with torch.no_grad():  # start at the identity style: scale 1, bias 0
            self.affine.bias.copy_(torch.cat([torch.ones(channels), torch.zeros(channels)]))

    def style(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (scale, bias), each (B, C): the target channel stds and means."""
        scale, bias = self.affine(w).chunk(2, dim=1)
        return scale, bias

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        scale, bias = self.style(w)
        return adain(x, bias, scale)


class MappingNetwork(nn.Module):
    """f: z (B, latent_dim) -> w (B, w_dim); z is normalised to unit mean square first."""

    def __init__(self, latent_dim: int, w_dim: int, layers: int, hidden: int = 0) -> None:
        super().__init__()
        mods: list[nn.Module] = []
        d = latent_dim
        for i in range(layers):
            out = hidden if (hidden and i < layers - 1) else w_dim
            mods += [nn.Linear(d, out), nn.LeakyReLU(0.2)]
            d = out
        self.net = nn.Sequential(*mods) if mods else nn.Identity()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z = z * torch.rsqrt(z.pow(2).mean(dim=1, keepdim=True) + 1e-8)
        return self.net(z)


@dataclass
class StyleGeneratorConfig:
    image_size: int = 32
    channels: int = 3  # image channels
    content_channels: int = 1  # 0: a learned constant replaces the content input
    latent_dim: int = 8  # z
    w_dim: int = 32
    mapping_layers: int = 2
    widths: tuple[int, ...] = (32, 32, 32)  # synthesis layers
    noise: bool = True  # per-pixel noise inputs, scaled per channel
    mode: str = "adain"  # "adain" (per-layer styles) | "entangled" (w only at the input)
    input_channels: int = 0  # entangled: channels of a linear map of w at the input (0: w itself)
    encoder_widths: tuple[int, ...] = (16, 32)  # q(z | x): stride-2 convolutions
    recon_std: float = 0.1  # s of the Gaussian likelihood
    kl_weight: float = 1.0  # beta

    def __post_init__(self) -> None:
        self.widths = tuple(int(w) for w in self.widths)
        self.encoder_widths = tuple(int(w) for w in self.encoder_widths)
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {MODES}, got {self.mode!r}")
        if not self.widths or min(self.widths) < 1 or not self.encoder_widths:
            raise ConfigError(f"widths must be positive, got {self.widths}, {self.encoder_widths}")
        if self.latent_dim < 1 or self.w_dim < 1 or self.channels < 1:
            raise ConfigError("latent_dim, w_dim and channels must be >= 1")
        if self.recon_std <= 0 or self.kl_weight < 0:
            raise ConfigError(
                f"recon_std must be > 0 and kl_weight >= 0, got {self.recon_std}, {self.kl_weight}"
            )
        n_up = self.n_upsample
        if self.image_size % (2 ** max(n_up, len(self.encoder_widths))) != 0:
            raise ConfigError(
                f"image_size {self.image_size} must be divisible by "
                f"{2 ** max(n_up, len(self.encoder_widths))}"
            )

    @property
    def n_upsample(self) -> int:
        """Number of x2 upsamplings: none with a content input (it has the image's size)."""
        return 0 if self.content_channels > 0 else len(self.widths) - 1


class StyleBlock(nn.Module):
    """conv3x3 -> noise -> leaky ReLU -> AdaIN(w) (or instance norm with a fixed affine)."""

    def __init__(self, c_in: int, c_out: int, w_dim: int, noise: bool, styled: bool, up: bool):
        super().__init__()
        self.up = up
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.noise_scale = nn.Parameter(torch.zeros(c_out)) if noise else None
        self.adain = AdaIN(c_out, w_dim) if styled else None
        self.norm = None if styled else nn.InstanceNorm2d(c_out, affine=True)

    def pre_style(self, h: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        """Return the activations before the style is applied: (B, C_out, H, W)."""
        if self.up:
            h = F.interpolate(h, scale_factor=2.0, mode="nearest")
        h = self.conv(h)
        if self.noise_scale is not None and noise is not None:
            h = h + self.noise_scale.view(1, -1, 1, 1) * noise
        return F.leaky_relu(h, 0.2)

    def forward(self, h: torch.Tensor, w: torch.Tensor | None, noise: torch.Tensor | None):  # type: ignore[no-untyped-def]
        h = self.pre_style(h, noise)
        if self.adain is not None:
            assert w is not None
            return self.adain(h, w)
        assert self.norm is not None
        return self.norm(h)


class StyleGenerator(nn.Module):
    """VAE with a style-modulated synthesis decoder G(c, w), w = f(z), and an encoder q(z | x).

    x: (B, channels, S, S); content c: (B, content_channels, S, S) (absent with a constant input).
    """

    def __init__(self, config: StyleGeneratorConfig) -> None:
        super().__init__()
        self.config = c = config
        styled = c.mode == "adain"
        self.mapping = MappingNetwork(c.latent_dim, c.w_dim, c.mapping_layers)
        s0 = c.image_size // 2**c.n_upsample
        if c.content_channels > 0:
            self.constant = None
            c_in = c.content_channels
        else:
            self.constant = nn.Parameter(torch.randn(1, c.widths[0], s0, s0) * 0.1)
            c_in = c.widths[0]
        self.input_map: nn.Module | None = None
        if not styled:  # A(w) broadcast over space, concatenated to the input
            c_in += c.input_channels or c.w_dim
            if c.input_channels > 0:
                self.input_map = nn.Linear(c.w_dim, c.input_channels)
        blocks = []
        for i, width in enumerate(c.widths):
            up = c.content_channels == 0 and i > 0
            blocks.append(StyleBlock(c_in, width, c.w_dim, c.noise, styled, up))
            c_in = width
        self.blocks = nn.ModuleList(blocks)
        self.to_image = nn.Conv2d(c_in, c.channels, 1)
        enc: list[nn.Module] = []
        e_in = c.channels
        for width in c.encoder_widths:
            enc += [nn.Conv2d(e_in, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            e_in = width
        self.encoder = nn.Sequential(*enc)
        side = c.image_size // 2 ** len(c.encoder_widths)
        self.to_latent = nn.Linear(e_in * side * side, 2 * c.latent_dim)

    @property
    def n_layers(self) -> int:
        return len(self.blocks)

    # -- the generator -------------------------------------------------------------------------
    def _check_content(self, content: torch.Tensor | None, batch: int) -> torch.Tensor:
        c = self.config
        if c.content_channels == 0:
            assert self.constant is not None
            return self.constant.expand(batch, -1, -1, -1)
        shape = (c.content_channels, c.image_size, c.image_size)
        if content is None or content.dim() != 4 or tuple(content.shape[1:]) != shape:
            got = None if content is None else tuple(content.shape)
            raise ShapeError(f"content has shape {got}, expected (B, {', '.join(map(str, shape))})")
        return content

    def noise_inputs(
        self,
        batch: int,
        generator: torch.Generator | None = None,
        device: torch.device | None = None,
    ) -> list[torch.Tensor]:
        """Return one noise map (B, 1, H_l, W_l) per synthesis layer."""
        c = self.config
        s = c.image_size // 2**c.n_upsample
        out = []
        for i in range(self.n_layers):
            if c.content_channels == 0 and i > 0:
                s *= 2
            out.append(
                torch.randn(batch, 1, s, s, generator=generator).to(
                    device or self.to_image.weight.device
                )
            )
        return out

    def synthesize(
        self,
        w: torch.Tensor,
        content: torch.Tensor | None = None,
        noise: list[torch.Tensor] | None = None,
        return_features: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """Return G(c, w): (B, channels, S, S) (and each layer's output if asked).

        w: (B, w_dim), or (B, n_layers, w_dim) for one style per layer (AdaIN mode only).
        noise: one (B, 1, H_l, W_l) map per layer, or None for no noise.
        """
        c = self.config
        batch = w.shape[0]
        if w.dim() == 3:
            if c.mode != "adain" or w.shape[1] != self.n_layers:
                raise ShapeError(
                    f"per-layer w of shape {tuple(w.shape)} needs mode 'adain' and "
                    f"{self.n_layers} layers"
                )
            ws = [w[:, i] for i in range(self.n_layers)]
        else:
            ws = [w] * self.n_layers
        h = self._check_content(content, batch)
        if c.mode == "entangled":
            v = self.input_map(w) if self.input_map is not None else w
            h = torch.cat([h, v[:, :, None, None].expand(-1, -1, h.shape[2], h.shape[3])], dim=1)
        feats = []
        for i, block in enumerate(self.blocks):
            h = block(h, ws[i], None if noise is None else noise[i])
            feats.append(h)
        x = self.to_image(h)
        return (x, feats) if return_features else x

    def generate(
        self,
        z: torch.Tensor,
        content: torch.Tensor | None = None,
        noise: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Return G(c, f(z)): z (B, latent_dim) -> (B, channels, S, S)."""
        out = self.synthesize(self.mapping(z), content, noise)
        assert isinstance(out, torch.Tensor)
        return out

    # -- the VAE -------------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (mu, logvar) of q(z | x), each (B, latent_dim)."""
        c = self.config
        shape = (c.channels, c.image_size, c.image_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != shape:
            raise ShapeError(
                f"images have shape {tuple(x.shape)}, expected (B, {', '.join(map(str, shape))})"
            )
        mu, logvar = self.to_latent(self.encoder(x).flatten(1)).chunk(2, dim=1)
        return mu, logvar.clamp(-10.0, 10.0)

    def loss(self, batch: tuple[torch.Tensor, ...], step: int = 0) -> torch.Tensor:
        """Return the negative ELBO per pixel; batch = (x,) or (x, content)."""
        c = self.config
        x = batch[0]
        content = batch[1] if len(batch) > 1 else None
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        noise = self.noise_inputs(x.shape[0]) if c.noise else None
        x_hat = self.synthesize(self.mapping(z), content, noise)
        assert isinstance(x_hat, torch.Tensor)
        rec = (x - x_hat).pow(2).flatten(1).sum(1) / (2 * c.recon_std**2)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1)
        return (rec + c.kl_weight * kl).mean() / x[0].numel()

    @torch.no_grad()
    def sample(
        self, n: int, content: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Return n images G(c, f(z)), z ~ N(0, I): (n, channels, S, S)."""
        device = self.to_image.weight.device
        z = torch.randn(n, self.config.latent_dim, generator=generator).to(device)
        noise = self.noise_inputs(n, generator, device) if self.config.noise else None
        return self.generate(z, content, noise)


def n_parameters(model: nn.Module) -> int:
    """Return the number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def matched_entangled_config(config: StyleGeneratorConfig) -> StyleGeneratorConfig:
    """Return the entangled twin of an AdaIN config, its input map sized to the same parameter count."""
    target = n_parameters(StyleGenerator(replace(config, mode="adain")))
    one = n_parameters(StyleGenerator(replace(config, mode="entangled", input_channels=1)))
    two = n_parameters(StyleGenerator(replace(config, mode="entangled", input_channels=2)))
    k = max(1, round(1 + (target - one) / (two - one)))  # the count is affine in k
    return replace(config, mode="entangled", input_channels=k)


# -- AdaIN style transfer ------------------------------------------------------------------------
@dataclass
class AdaINTransferConfig:
    channels: int = 3
    widths: tuple[int, ...] = (32,)  # encoder levels; each after the first halves the size
    style_weight: float = 1.0  # lambda of the style loss
    stage: str = "autoencoder"  # "autoencoder": fit f and g to reconstruct; "decoder": f frozen
    # kernel 1: every convolution sees one pixel (one level only), so nothing can blur or move
    kernel: int = 3

    def __post_init__(self) -> None:
        self.widths = tuple(int(w) for w in self.widths)
        if not self.widths or min(self.widths) < 1 or self.channels < 1:
            raise ConfigError(f"widths and channels must be positive, got {self.widths}")
        if self.stage not in STAGES:
            raise ConfigError(f"stage must be one of {STAGES}, got {self.stage!r}")
        if self.style_weight < 0 or not math.isfinite(self.style_weight):
            raise ConfigError(f"style_weight must be finite and >= 0, got {self.style_weight}")
        if self.kernel not in (1, 3) or (self.kernel == 1 and len(self.widths) > 1):
            raise ConfigError(
                f"kernel must be 3, or 1 with one level; got {self.kernel} with "
                f"widths {self.widths}"
            )

    @property
    def multiple(self) -> int:
        """Image sides must be multiples of this."""
        return 2 ** (len(self.widths) - 1)


class AdaINTransfer(nn.Module):
    """Encoder f (conv levels), AdaIN on its last features, decoder g (mirror, nearest upsampling)."""

    def __init__(self, config: AdaINTransferConfig) -> None:
        super().__init__()
        self.config = c = config
        levels = []
        c_in = c.channels
        for i, width in enumerate(c.widths):
            stride = 1 if i == 0 else 2
            k, pad = c.kernel, c.kernel // 2
            levels.append(
                nn.Sequential(
                    nn.Conv2d(c_in, width, k, padding=pad)
                    if stride == 1
                    else nn.Conv2d(c_in, width, 4, stride=stride, padding=1),
                    nn.ReLU(),
                    nn.Conv2d(width, width, k, padding=pad),
                    nn.ReLU(),
                )
            )
            c_in = width
        self.encoder = nn.ModuleList(levels)
        dec: list[nn.Module] = []
        for i in reversed(range(len(c.widths))):
            out = c.widths[i - 1] if i > 0 else c.widths[0]
            dec += [nn.Conv2d(c.widths[i], out, c.kernel, padding=c.kernel // 2), nn.ReLU()]
            if i > 0:
                dec.append(nn.Upsample(scale_factor=2.0, mode="nearest"))
        dec.append(nn.Conv2d(c.widths[0], c.channels, c.kernel, padding=c.kernel // 2))
        self.decoder = nn.Sequential(*dec)
        self.set_stage(c.stage)

    def set_stage(self, stage: str) -> None:
        """Switch between fitting the autoencoder and fitting the decoder with f frozen."""
        self.config = replace(self.config, stage=stage)
        for p in self.encoder.parameters():
            p.requires_grad_(stage == "autoencoder")

    def check_image(self, x: torch.Tensor, name: str = "image") -> None:
        m = self.config.multiple
        if x.dim() != 4 or x.shape[1] != self.config.channels:
            raise ShapeError(
                f"{name} has shape {tuple(x.shape)}, expected (B, {self.config.channels}, H, W)"
            )
        if x.shape[2] % m or x.shape[3] % m or min(x.shape[2:]) < 2 * m:
            raise ShapeError(
                f"{name} is {x.shape[2]} x {x.shape[3]} pixels; the network accepts "
                f"sides that are multiples of {m} and at least {2 * m}"
            )

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Return f_l(x) for every level l: (B, widths[l], H / 2^l, W / 2^l)."""
        feats = []
        h = x
        for level in self.encoder:
            h = level(h)
            feats.append(h)
        return feats

    def transfer(
        self, content: torch.Tensor, style: torch.Tensor, alpha: float = 1.0
    ) -> torch.Tensor:
        """Return g((1 - alpha) f(c) + alpha AdaIN(f(c), f(s))): (B, channels, H, W)."""
        self.check_image(content, "content")
        self.check_image(style, "style")
        fc = self.features(content)[-1]
        t = adain_transfer(fc, self.features(style)[-1])
        return self.decoder((1 - alpha) * fc + alpha * t)

    def transfer_moments(
        self,
        content: torch.Tensor,
        mean_c: torch.Tensor,
        std_c: torch.Tensor,
        mean_s: torch.Tensor,
        std_s: torch.Tensor,
        alpha: float = 1.0,
    ) -> torch.Tensor:
        """Return g((1 - alpha) f(c) + alpha (std_s (f(c) - mean_c) / std_c + mean_s)): AdaIN with
        the content and style statistics given (each (C,) over the last level's channels, e.g.
        pooled over many tiles) instead of taken from one content and one style image."""
        self.check_image(content, "content")
        fc = self.features(content)[-1]
        shape = (1, -1, 1, 1)
        t = std_s.reshape(shape) * (fc - mean_c.reshape(shape)) / std_c.reshape(
            shape
        ) + mean_s.reshape(shape)
        return self.decoder((1 - alpha) * fc + alpha * t)

    def loss(self, batch: tuple[torch.Tensor, ...], step: int = 0) -> torch.Tensor:
        """Autoencoder: ||g(f(x)) - x||^2. Decoder: content + style_weight * style loss, the style
        image of each content image being the next one in the batch (or batch[1] if given)."""
        x = batch[0]
        self.check_image(x)
        if self.config.stage == "autoencoder":
            return (self.decoder(self.features(x)[-1]) - x).pow(2).mean()
        s = batch[1] if len(batch) > 1 else x.roll(1, dims=0)
        with torch.no_grad():
            fs = self.features(s)
            t = adain_transfer(self.features(x)[-1], fs[-1])
        out_feats = self.features(self.decoder(t))
        content_loss = (out_feats[-1] - t).pow(2).mean()
        style_loss = x.new_zeros(())
        for fo, fsl in zip(out_feats, fs, strict=True):
            mo, so = channel_stats(fo)
            ms, ss = channel_stats(fsl)
            style_loss = (
                style_loss + (mo - ms).pow(2).mean().sqrt() + (so - ss).pow(2).mean().sqrt()
            )
        return content_loss + self.config.style_weight * style_loss
