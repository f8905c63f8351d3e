"""The physics of interacting defects on a periodic line (or in a periodic square).

N identical defects at x: (B, N, d) in [0, L)^d. Energy

    U(x) = A sum_i sum_c sin^2(pi x_ic / a)  +  k sum_{i<j} phi(r_ij),   phi(r) = exp(-r / r0) / r

(Peierls pinning of period a and amplitude A; a screened repulsion of strength k and range r0,
r_ij the minimum-image distance). Overdamped dynamics dx = f dt + sqrt(2 D) dW with the drift
f = -grad U / gamma and D = kT / gamma. The drift is linear in (A, k) for a fixed r0:
f = A g_A + k g_k(r0), with g_A = -grad U_pin / gamma, g_k = -grad U_pair / gamma; every fit below
uses that structure.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from gensci.errors import ConfigError

MODEL_CLASSES = ("full", "no_pair", "no_pinning")


@dataclass
class DefectParams:
    """The simulator's physics: box, pinning (A, a), repulsion (k, r0), friction and temperature."""

    n: int = 8  # N, number of defects
    dim: int = 1  # d: 1 (a glide line) or 2 (a periodic square)
    box: float = 8.0  # L
    A: float = 1.0  # Peierls amplitude
    a: float = 1.0  # Peierls period (L / a must be a whole number)
    k: float = 1.0  # repulsion strength
    r0: float = 0.5  # screening length
    gamma: float = 1.0  # friction
    kT: float = 0.5  # temperature

    def __post_init__(self) -> None:
        if not 2 <= self.n <= 4096:
            raise ConfigError(f"number of defects n must lie in [2, 4096], got {self.n}")
        if self.dim not in (1, 2):
            raise ConfigError(f"dim must be 1 or 2, got {self.dim}")
        for name in ("box", "a", "r0", "gamma", "kT"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ConfigError(f"{name} must be a finite number > 0, got {v}")
        for name in ("A", "k"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ConfigError(f"{name} must be a finite number >= 0, got {v}")
        cells = self.box / self.a
        if abs(cells - round(cells)) > 1e-9 * max(cells, 1.0):
            raise ConfigError(
                f"box / a = {self.box} / {self.a} = {cells:g} must be a whole number (the "
                "pinning must be periodic in the box)"
            )

    @property
    def D(self) -> float:
        """Return the diffusion coefficient kT / gamma."""
        return self.kT / self.gamma

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def min_image(delta: torch.Tensor, box: float) -> torch.Tensor:
    """Return the minimum-image displacement of `delta` (any shape) in a box of length `box`."""
    return delta - box * torch.round(delta / box)


def pair_geometry(x: torch.Tensor, box: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return (delta (B, N, N, d), r (B, N, N), off-diagonal mask (N, N)) of x: (B, N, d).

    The diagonal of r holds 1 (not 0) so that functions of r stay finite there; mask it out.
    """
    delta = min_image(x.unsqueeze(2) - x.unsqueeze(1), box)
    n = x.shape[1]
    eye = torch.eye(n, dtype=torch.bool, device=x.device)
    r2 = delta.pow(2).sum(-1)
    r = torch.sqrt(torch.where(eye, torch.ones_like(r2), r2))
    return delta, r, ~eye


def screened(r: torch.Tensor, r0: float) -> torch.Tensor:
    """Return phi(r) = exp(-r / r0) / r, the pair potential per unit k."""
    return torch.exp(-r / r0) / r


def screened_slope(r: torch.Tensor, r0: float) -> torch.Tensor:
    """Return phi'(r) = -exp(-r / r0) (1 / r^2 + 1 / (r r0))."""
    return -torch.exp(-r / r0) * (1.0 / r**2 + 1.0 / (r * r0))


def pinning_energy(x: torch.Tensor, a: float) -> torch.Tensor:
    """Return U_pin(x) = sum_ic sin^2(pi x_ic / a) per unit A; x: (B, N, d) -> (B,)."""
    return torch.sin(math.pi * x / a).pow(2).sum((1, 2))


def pair_energy(x: torch.Tensor, box: float, r0: float) -> torch.Tensor:
    """Return U_pair(x) = sum_{i<j} phi(r_ij) per unit k; x: (B, N, d) -> (B,)."""
    _, r, off = pair_geometry(x, box)
    return 0.5 * (screened(r, r0) * off).sum((1, 2))


def energy(x: torch.Tensor, p: DefectParams) -> torch.Tensor:
    """Return U(x) = A U_pin + k U_pair; x: (B, N, d) -> (B,)."""
    return p.A * pinning_energy(x, p.a) + p.k * pair_energy(x, p.box, p.r0)


def pinning_drift(x: torch.Tensor, a: float, gamma: float = 1.0) -> torch.Tensor:
    """Return g_A = -grad U_pin / gamma = -(pi / (a gamma)) sin(2 pi x / a); (B, N, d)."""
    return -(math.pi / (a * gamma)) * torch.sin(2 * math.pi * x / a)


def pair_drift(
    x: torch.Tensor, box: float, r0: float, gamma: float = 1.0, slope=None  # type: ignore[no-untyped-def]
) -> torch.Tensor:
    """Return g_k = -grad U_pair / gamma = -sum_j phi'(r_ij) delta_ij / (r_ij gamma); (B, N, d).

    `slope(r)` replaces phi' (per unit k) when given, e.g. a learned potential's derivative.
    """
    delta, r, off = pair_geometry(x, box)
    dphi = screened_slope(r, r0) if slope is None else slope(r)
    w = torch.where(off, dphi / r, torch.zeros_like(r))
    return -(w.unsqueeze(-1) * delta).sum(2) / gamma


def drift(x: torch.Tensor, p: DefectParams) -> torch.Tensor:
    """Return f(x) = -grad U / gamma = A g_A + k g_k; x: (B, N, d) -> (B, N, d)."""
    return p.A * pinning_drift(x, p.a, p.gamma) + p.k * pair_drift(x, p.box, p.r0, p.gamma)


def drift_basis(
    x: torch.Tensor, p: DefectParams, r0: float, model: str = "full"
) -> tuple[list[str], list[torch.Tensor]]:
    """Return the names and fields g_j (each (B, N, d)) with f = sum_j theta_j g_j for `model`.

    model: 'full' (A, k), 'no_pair' (A alone) or 'no_pinning' (k alone); the wrong model classes
    that a fit must reject.
    """
    if model not in MODEL_CLASSES:
        raise ConfigError(f"unknown model class {model!r}; choose one of {MODEL_CLASSES}")
    names, fields = [], []
    if model != "no_pinning":
        names.append("A")
        fields.append(pinning_drift(x, p.a, p.gamma))
    if model != "no_pair":
        names.append("k")
        fields.append(pair_drift(x, p.box, r0, p.gamma))
    return names, fields
