"""How far a surrogate answer is from the exact one and from the physics it should obey.

All functions take (..., N, N) arrays on the node grid of gensci.poisson.solver and return one
value per field (...,).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr

from gensci.errors import ShapeError
from gensci.poisson.solver import relative_residual


def _same_shape(a: np.ndarray, b: np.ndarray, names: str) -> None:
    if a.shape[-2:] != b.shape[-2:]:
        raise ShapeError(f"{names} have different grids: {a.shape} vs {b.shape}")


def relative_l2(pred: np.ndarray, exact: np.ndarray) -> np.ndarray:
    """Return ||pred - exact|| / ||exact|| over all nodes: (...,)."""
    _same_shape(pred, exact, "pred and exact")
    num = np.sqrt(((pred - exact) ** 2).sum(axis=(-2, -1)))
    den = np.sqrt((exact**2).sum(axis=(-2, -1)))
    return num / np.maximum(den, 1e-300)


def relative_discrete_residual(phi: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """Return ||L phi - rho|| / ||rho|| over inner nodes (5-point Laplacian): (...,)."""
    _same_shape(phi, rho, "phi and rho")
    return relative_residual(phi, rho)


def max_boundary_violation(phi: np.ndarray, boundary: np.ndarray) -> np.ndarray:
    """Return max over the ring of |phi - g|: (...,)."""
    _same_shape(phi, boundary, "phi and boundary")
    d = np.abs(phi - boundary)
    ring = np.concatenate(
        [d[..., 0, :], d[..., -1, :], d[..., :, 0], d[..., :, -1]], axis=-1
    )
    return ring.max(axis=-1)


def sample_spread(samples: np.ndarray) -> np.ndarray:
    """Return the spread of S samples: (S, B, N, N) -> (B,) RMS over nodes of the per-node std."""
    if samples.ndim != 4 or samples.shape[0] < 2:
        raise ShapeError(f"samples must be (S >= 2, B, N, N); got shape {samples.shape}")
    return np.sqrt((samples.std(axis=0, ddof=1) ** 2).mean(axis=(-2, -1)))


def spread_error_spearman(spread: np.ndarray, error: np.ndarray) -> float:
    """Return the Spearman rank correlation between per-example spread and actual error."""
    if spread.shape != error.shape:
        raise ShapeError(f"spread {spread.shape} and error {error.shape} differ in shape")
    return float(spearmanr(spread, error).statistic)
