"""Noise schedules as SDEs (Song et al. 2021): dx = f(x, t) dt + g(t) dw, t in [0, T]."""

from __future__ import annotations

import math

import torch


def _bcast(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Reshape a (B,) tensor to broadcast against x: (B, ...)."""
    return v.reshape(-1, *([1] * (x.dim() - 1)))


class SDE:
    """A forward noising SDE with a Gaussian transition kernel p_0t(x_t | x_0) = N(alpha x_0, std^2 I)."""

    T: float = 1.0
    eps: float = 1e-3  # smallest time the samplers go down to

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        """Return the mean coefficient alpha(t) of the transition kernel."""
        raise NotImplementedError

    def std(self, t: torch.Tensor) -> torch.Tensor:
        """Return the standard deviation std(t) of the transition kernel."""
        raise NotImplementedError

    def sde(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the drift f(x, t) and the diffusion g(t) (shape (B,))."""
        raise NotImplementedError

    def prior_std(self) -> float:
        """Return the standard deviation of p_T, the Gaussian the reverse process starts from."""
        raise NotImplementedError

    def marginal_prob(self, x0: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (mean, std) of p_0t(x_t | x_0): mean = alpha(t) x_0 (shape of x0), std (B,)."""
        return _bcast(self.alpha(t), x0) * x0, self.std(t)

    def prior_sampling(
        self,
        shape: tuple[int, ...],
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """Return a draw of x_T ~ N(0, prior_std^2 I) of the given shape."""
        z = torch.randn(shape, generator=generator)
        return (self.prior_std() * z).to(device or "cpu")


class VPSDE(SDE):
    """Variance preserving: dx = -beta(t)/2 x dt + sqrt(beta(t)) dw, beta linear in t."""

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0) -> None:
        self.beta_min, self.beta_max = beta_min, beta_max

    def beta(self, t: torch.Tensor) -> torch.Tensor:
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def _log_alpha(self, t: torch.Tensor) -> torch.Tensor:
        return -0.25 * t**2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return torch.exp(self._log_alpha(t))

    def std(self, t: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(-torch.expm1(2.0 * self._log_alpha(t)))

    def sde(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        beta = self.beta(t)
        return -0.5 * _bcast(beta, x) * x, torch.sqrt(beta)

    def prior_std(self) -> float:
        return 1.0


class VESDE(SDE):
    """Variance exploding: dx = sqrt(d sigma^2(t)/dt) dw, sigma(t) = sigma_min (sigma_max/sigma_min)^t."""

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0) -> None:
        self.sigma_min, self.sigma_max = sigma_min, sigma_max
        self.eps = 1e-5

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** t

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(t)

    def std(self, t: torch.Tensor) -> torch.Tensor:
        return self.sigma(t)

    def sde(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        g = self.sigma(t) * math.sqrt(2.0 * math.log(self.sigma_max / self.sigma_min))
        return torch.zeros_like(x), g

    def prior_std(self) -> float:
        return self.sigma_max


def make_sde(kind: str, **params: float) -> SDE:
    """Return the SDE named 'vp' or 've' built from its parameters."""
    from gensci.errors import ConfigError

    if kind == "vp":
        return VPSDE(params.get("beta_min", 0.1), params.get("beta_max", 20.0))
    if kind == "ve":
        return VESDE(params.get("sigma_min", 0.01), params.get("sigma_max", 50.0))
    raise ConfigError(f"unknown SDE {kind!r}; choose 'vp' or 've'")
