"""Score-based diffusion model: a denoising network, its score, and denoising score matching.

With x_t = alpha(t) x_0 + std(t) eps, the network predicts (config.prediction) the noise eps, the
clean x_0, or v = alpha eps - std x_0 (VP only); all give the noise estimate eps_hat, and
score(x_t, t) = -eps_hat / std(t),  E[x_0 | x_t] = (x_t - std eps_hat) / alpha.
The loss is the squared error on the predicted quantity: eps-prediction weights all noise levels
alike in eps, x0-prediction in x_0 (what a conditional solver with a sharp posterior needs at
high noise), v-prediction in between. Gradient prediction ("grad": the network outputs the score
grad_x log p_t itself, eps_hat = -std * out) trains the same eps loss; its output stays O(1) as
std -> 0, the choice for a score wanted at small noise and differentiated in x and in a condition.
net='set' models unordered points in a periodic box, data_shape (N, d) (gensci.nn.sets).
The schedule (gensci.models.sde) and the samplers (gensci.models.samplers) know nothing of the network.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from gensci.errors import ConfigError, ShapeError, check_finite
from gensci.models.samplers import SAMPLERS
from gensci.models.sde import SDE, _bcast, make_sde
from gensci.nn import (
    MLP,
    PeriodicSetNet,
    PeriodicSetNetConfig,
    SinusoidalEmbedding,
    UNet,
    UNetConfig,
)


@dataclass
class DiffusionConfig:
    data_shape: tuple[int, ...] = (2,)
    sde: str = "vp"
    beta_min: float = 0.1
    beta_max: float = 20.0
    sigma_min: float = 0.01
    sigma_max: float = 50.0
    net: str = "mlp"  # "mlp" for vectors (data_shape (D,)), "unet" for images (C, H, W)
    hidden: tuple[int, ...] = (256, 256, 256)  # mlp widths
    time_dim: int = 64
    base_channels: int = 32  # unet
    channel_mults: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 1
    cond_channels: int = 0  # unet: image condition (B, cond_channels, H, W)
    cond_dim: int = 0  # mlp: vector condition (B, cond_dim); unet: vector condition too
    prediction: str = "eps"  # what the network outputs: "eps", "x0", "v" (VP only) or "grad"
    period: float = 1.0  # set: box length L of the periodic points
    harmonics: int = 8  # set: Fourier features per coordinate
    set_width: int = 32  # set: width of the point and pair features

    def __post_init__(self) -> None:
        self.data_shape = tuple(int(s) for s in self.data_shape)
        if self.net not in ("mlp", "unet", "set"):
            raise ConfigError(f"unknown net {self.net!r}; choose 'mlp', 'unet' or 'set'")
        if self.net == "set" and (len(self.data_shape) != 2 or self.cond_channels):
            raise ConfigError(f"net='set' needs data_shape (N, d), got {self.data_shape}")
        if self.net == "set" and not (math.isfinite(self.period) and self.period > 0):
            raise ConfigError(f"net='set' needs a period > 0, got {self.period}")
        if self.net == "mlp" and len(self.data_shape) != 1:
            raise ConfigError(f"net='mlp' needs data_shape (D,), got {self.data_shape}")
        if self.net == "unet" and len(self.data_shape) != 3:
            raise ConfigError(f"net='unet' needs data_shape (C, H, W), got {self.data_shape}")
        if self.net == "mlp" and self.cond_channels:
            raise ConfigError("cond_channels is for net='unet'; use cond_dim with net='mlp'")
        if self.sde not in ("vp", "ve"):
            raise ConfigError(f"unknown sde {self.sde!r}; choose 'vp' or 've'")
        if self.prediction not in ("eps", "x0", "v", "grad"):
            raise ConfigError(
                f"unknown prediction {self.prediction!r}; choose 'eps', 'x0', 'v' or 'grad'"
            )
        if self.prediction == "v" and self.sde != "vp":
            raise ConfigError("prediction='v' needs sde='vp' (alpha^2 + std^2 = 1)")


class _MLPEps(nn.Module):
    """eps_theta(x, t, cond) for vector data: an MLP on [x, embed(t), cond]."""

    def __init__(self, c: DiffusionConfig) -> None:
        super().__init__()
        self.embed = SinusoidalEmbedding(c.time_dim)
        self.net = MLP(c.data_shape[0] + c.time_dim + c.cond_dim, c.data_shape[0], c.hidden)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        parts = [x, self.embed(t)] + ([cond] if cond is not None else [])
        return self.net(torch.cat(parts, dim=-1))


class _UNetEps(nn.Module):
    """eps_theta(x, t, cond) for images: the shared UNet, condition as channels or as a vector."""

    def __init__(self, c: DiffusionConfig) -> None:
        super().__init__()
        ch = c.data_shape[0]
        self.cond_is_image = c.cond_channels > 0
        self.net = UNet(
            UNetConfig(
                in_channels=ch,
                out_channels=ch,
                cond_channels=c.cond_channels,
                base_channels=c.base_channels,
                channel_mults=tuple(c.channel_mults),
                num_res_blocks=c.num_res_blocks,
                time_dim=max(c.time_dim, 32),
                cond_dim=c.cond_dim,
            )
        )

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        if self.cond_is_image:
            return self.net(x, t, cond=cond)
        return self.net(x, t, cond_vec=cond)


class _SetEps(nn.Module):
    """The network for unordered points in a periodic box: x (B, N, d) -> (B, N, d)."""

    def __init__(self, c: DiffusionConfig) -> None:
        super().__init__()
        self.net = PeriodicSetNet(
            PeriodicSetNetConfig(
                dim=c.data_shape[1], period=c.period, harmonics=c.harmonics, hidden=c.set_width,
                time_dim=c.time_dim, cond_dim=c.cond_dim,
            )
        )

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        return self.net(x, t, cond)


_NETS: dict[str, type[nn.Module]] = {"mlp": _MLPEps, "unet": _UNetEps, "set": _SetEps}


class DiffusionModel(nn.Module):
    """A score model s_theta(x, t, cond) ~ grad_x log p_t(x | cond) over data of shape `data_shape`."""

    def __init__(self, config: DiffusionConfig) -> None:
        super().__init__()
        self.config = config
        self.sde: SDE = make_sde(
            config.sde,
            beta_min=config.beta_min,
            beta_max=config.beta_max,
            sigma_min=config.sigma_min,
            sigma_max=config.sigma_max,
        )
        self.eps_net: nn.Module = _NETS[config.net](config)

    # -- shapes ---------------------------------------------------------------------------------
    def _check(self, x: torch.Tensor, cond: torch.Tensor | None) -> None:
        c = self.config
        if tuple(x.shape[1:]) != c.data_shape:
            raise ShapeError(f"data has shape {tuple(x.shape)}, model expects (B, {c.data_shape})")
        needs_cond = c.cond_channels > 0 or c.cond_dim > 0
        if needs_cond and cond is None:
            raise ShapeError("this diffusion model is conditional: pass cond")
        if not needs_cond and cond is not None:
            raise ShapeError("this diffusion model is unconditional but cond was given")
        if cond is not None and cond.shape[0] != x.shape[0]:
            raise ShapeError(f"cond has batch {cond.shape[0]} but data has batch {x.shape[0]}")

    # -- the model ------------------------------------------------------------------------------
    def eps(
        self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Return eps_hat(x_t, t): the predicted noise, shape of x, whatever the network predicts."""
        t = t.reshape(-1).expand(x.shape[0])
        out = self.eps_net(x, t, cond)
        kind = self.config.prediction
        if kind == "eps":
            return out
        if kind == "grad":
            return -_bcast(self.sde.std(t), x) * out
        a, s = _bcast(self.sde.alpha(t), x), _bcast(self.sde.std(t), x)
        if kind == "x0":
            return (x - a * out) / s
        return s * x + a * out  # v: eps = std x_t + alpha v when alpha^2 + std^2 = 1

    def score(
        self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Return grad_x log p_t(x | cond) = -eps_theta(x, t) / std(t); x: (B, *data_shape), t: (B,)."""
        t = t.reshape(-1).expand(x.shape[0])
        if self.config.prediction == "grad":
            return self.eps_net(x, t, cond)  # exact at every std, small ones included
        return -self.eps(x, t, cond) / _bcast(self.sde.std(t), x)

    def denoise(
        self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Return Tweedie's E[x_0 | x_t] = (x_t - std eps_theta) / alpha."""
        t = t.reshape(-1).expand(x.shape[0])
        return (x - _bcast(self.sde.std(t), x) * self.eps(x, t, cond)) / _bcast(
            self.sde.alpha(t), x
        )

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.score(x, t, cond)

    def loss(self, batch: tuple[torch.Tensor, ...], step: int = 0) -> torch.Tensor:
        """Return the denoising score matching loss E ||eps_theta(alpha x0 + std eps, t) - eps||^2."""
        x0 = batch[0]
        cond = batch[1] if len(batch) > 1 else None
        self._check(x0, cond)
        t = torch.rand(x0.shape[0], device=x0.device) * (self.sde.T - self.sde.eps) + self.sde.eps
        noise = torch.randn_like(x0)
        mean, std = self.sde.marginal_prob(x0, t)
        xt = mean + _bcast(std, x0) * noise
        out = self.eps_net(xt, t, cond)
        kind = self.config.prediction
        if kind == "eps":
            target = noise
        elif kind == "grad":
            out = -_bcast(std, x0) * out  # eps_hat of the predicted score
            target = noise
        elif kind == "x0":
            target = x0
        else:
            target = _bcast(self.sde.alpha(t), x0) * noise - _bcast(std, x0) * x0
        err = out - target
        return err.pow(2).reshape(x0.shape[0], -1).sum(-1).mean() / math.prod(
            self.config.data_shape
        )

    @torch.no_grad()
    def sample(
        self,
        n: int,
        sampler: str = "em",
        cond: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        progress: bool = False,
        **sampler_kwargs: float,
    ) -> torch.Tensor:
        """Return n samples (n, *data_shape) drawn with the named sampler ('em', 'ode', 'pc', 'langevin')."""
        if sampler not in SAMPLERS:
            raise ConfigError(f"unknown sampler {sampler!r}; choose one of {sorted(SAMPLERS)}")
        if cond is not None:
            check_finite(cond, "cond")
            if cond.shape[0] != n:
                raise ShapeError(f"cond has batch {cond.shape[0]} but {n} samples were asked for")
        device = next(self.parameters()).device
        was_training = self.training
        self.eval()
        try:
            return SAMPLERS[sampler](
                lambda x, t: self.score(x, t, cond),
                self.sde,
                (n, *self.config.data_shape),
                generator=generator,
                device=device,
                progress=progress,
                **sampler_kwargs,
            )
        finally:
            self.train(was_training)
