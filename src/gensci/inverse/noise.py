"""Measurement noise models: additive Gaussian, and photon counts of transmission CT.

Every solver and sampler in gensci.inverse takes the data y in the operator's units (y ~ A x) and,
optionally, per-measurement inverse variances w (`weights`): the likelihood is then the
heteroscedastic Gaussian

    -log p(y | x) = 1/2 sum_i w_i (A x - y)_i^2 + const.

`GaussianNoise(sigma)`: y = A x + sigma e, so w = 1 / sigma^2 everywhere (the default of every
solver: no weights given).

`PoissonNoise(photons, mu_scale)`: the transmission model of CT. The image x is in window units
([0, 1]); the attenuation per pixel is mu_scale * x, so the line integral of a ray is
p = mu_scale (A x) and the detector counts are

    I ~ Poisson(I0 exp(-p)),   I0 = photons (unattenuated counts per ray: 1e4 low dose, 1e5 normal).

The log transform gives the data in image units, y = -log(max(I, 1/2) / I0) / mu_scale (a ray that
counted nothing is read as half a photon, so the log stays finite). To first order
Var(p_hat) = 1 / I, so the inverse variance of y is w = I mu_scale^2: the penalised weighted least
squares model of transmission tomography (Sauer & Bouman 1993; Fessler 1994). In line-integral
units the data term is 1/2 sum I (mu_scale A x - p_hat)^2, which is the same number.

Choosing mu_scale (`mu_scale_for`): with a HU window [lo, hi] mapped to [0, 1] and lo = -1000 (air
= 0), x (hi - lo) / 1000 is the attenuation relative to water, so mu_scale = mu_water * pixel_mm *
(hi - lo) / 1000, mu_water = 0.0193 / mm (water near 70 keV). Without a window, x = 1 is taken as
water. A 250 mm field of view (a head) then gives line integrals of 0 to about 5, as in clinical
CT.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from gensci.errors import ConfigError, DataError, check_finite
from gensci.inverse.operators import LinearOperator

MU_WATER_PER_MM = 0.0193  # linear attenuation of water near 70 keV (NIST XCOM: 0.193 cm^2/g)
DEFAULT_FOV_MM = 250.0  # field of view of the N x N image when none is given: a head
NOISE_MODELS = ("gaussian", "poisson")


def mu_scale_for(
    n: int, fov_mm: float = DEFAULT_FOV_MM, window: tuple[float, float] | None = None
) -> float:
    """Return mu_scale, the attenuation per pixel of x = 1: mu_water * (fov_mm / n) * (hi - lo) /
    1000 for a HU window (lo, hi), mu_water * fov_mm / n without one (x = 1 is water)."""
    if not (math.isfinite(fov_mm) and fov_mm > 0):
        raise ConfigError(f"field of view {fov_mm} mm must be a finite number > 0")
    if n < 1:
        raise ConfigError(f"image size {n} must be >= 1")
    width = 1000.0 if window is None else float(window[1] - window[0])
    if not (math.isfinite(width) and width > 0):
        raise ConfigError(f"window {window} must have finite lo < hi")
    return MU_WATER_PER_MM * (fov_mm / n) * width / 1000.0


@dataclass(frozen=True)
class GaussianNoise:
    """Additive white Gaussian noise of std sigma: y = A x + sigma e, weights w = 1 / sigma^2."""

    sigma: float
    name: ClassVar[str] = "gaussian"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.sigma) and self.sigma > 0):
            raise ConfigError(f"Gaussian noise std {self.sigma} must be a finite number > 0")

    def simulate(self, clean: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Return y = clean + sigma e, e ~ N(0, I) drawn from `generator`; clean: (B, *out)."""
        e = torch.randn(clean.shape, generator=generator, dtype=clean.dtype).to(clean.device)
        return clean + self.sigma * e

    def weights(self, y: torch.Tensor) -> torch.Tensor:
        """Return the inverse variance 1 / sigma^2 of every measurement, shaped like y."""
        return torch.full_like(y, 1.0 / self.sigma**2)


@dataclass(frozen=True)
class PoissonNoise:
    """Photon counts I ~ Poisson(I0 exp(-mu_scale A x)); I0 = photons per ray (see the module)."""

    photons: float
    mu_scale: float
    name: ClassVar[str] = "poisson"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.photons) and self.photons > 0):
            raise ConfigError(
                f"photon count I0 = {self.photons} must be a finite number > 0 (1e4 low dose, "
                "1e5 normal)"
            )
        if not (math.isfinite(self.mu_scale) and self.mu_scale > 0):
            raise ConfigError(f"mu_scale {self.mu_scale} must be a finite number > 0")

    def line_integral(self, ax: torch.Tensor) -> torch.Tensor:
        """Return p = mu_scale * A x (dimensionless) of the projections ax = A x."""
        return self.mu_scale * ax

    def expected_counts(self, ax: torch.Tensor) -> torch.Tensor:
        """Return the mean counts I0 exp(-mu_scale A x) of the projections ax = A x."""
        return self.photons * torch.exp(-self.line_integral(ax))

    def simulate(self, ax: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Return counts I ~ Poisson(I0 exp(-mu_scale A x)) drawn from `generator` (float, the
        shape and dtype of ax)."""
        check_finite(ax, "projections")
        rate = self.expected_counts(ax).detach().cpu().double()
        return torch.poisson(rate, generator=generator).to(ax.device, ax.dtype)

    def check_counts(self, counts: torch.Tensor) -> None:
        """Raise DataError unless counts are finite and >= 0."""
        check_finite(counts, "photon counts")
        low = float(counts.min())
        if low < 0:
            raise DataError(f"photon counts must be >= 0, got a minimum of {low:g}")

    def post_log(self, counts: torch.Tensor) -> torch.Tensor:
        """Return y = -log(max(I, 1/2) / I0) / mu_scale, the data in image units (y ~ A x)."""
        self.check_counts(counts)
        return -torch.log(counts.clamp_min(0.5) / self.photons) / self.mu_scale

    def weights(self, counts: torch.Tensor) -> torch.Tensor:
        """Return w = I mu_scale^2, the inverse variance of the post-log data y (image units)."""
        self.check_counts(counts)
        return counts * self.mu_scale**2


def weighted_data_term(
    op: LinearOperator, x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """Return 1/2 sum_i w_i (A x - y)_i^2 per image, shape (B,); x: (B, *in), y, w: (B or 1, *out)."""
    r = op.forward(x) - y
    return 0.5 * (weights * r.pow(2)).flatten(1).sum(1)


def weighted_data_gradient(
    op: LinearOperator, x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """Return A^T (w (A x - y)), the gradient of `weighted_data_term` in x: (B, *in)."""
    return op.adjoint(weights * (op.forward(x) - y))


def check_weights(weights: torch.Tensor, y: torch.Tensor) -> None:
    """Raise DataError unless weights are finite, >= 0, not all 0 and broadcast to y's shape."""
    check_finite(weights, "likelihood weights")
    if float(weights.min()) < 0:
        raise DataError(f"likelihood weights must be >= 0, got a minimum of {float(weights.min())}")
    if float(weights.max()) <= 0:
        raise DataError("likelihood weights are all 0: no measurement carries information")
    try:
        torch.broadcast_shapes(weights.shape, y.shape)
    except RuntimeError:
        raise DataError(
            f"likelihood weights of shape {tuple(weights.shape)} do not match the data "
            f"{tuple(y.shape)}"
        ) from None


def effective_std(weights: torch.Tensor) -> float:
    """Return sqrt(mean(1 / w)) over the measurements with w > 0: the noise std of a Gaussian
    model with the same mean variance (what an unweighted solver and its TV weight are scaled
    by)."""
    w = weights[weights > 0]
    if w.numel() == 0:
        raise DataError("likelihood weights are all 0: no measurement carries information")
    return float((1.0 / w.double()).mean().sqrt())
