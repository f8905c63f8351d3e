"""Morozov's discrepancy principle: does a reconstruction explain the data to the noise level?

For the true image the residual y - A x is the noise, so ||A x - y||^2 / (m sigma^2) is about 1
(m measurements, std sqrt(2 / m) around it for Gaussian noise). A reconstruction whose ratio is
well above 1 leaves signal in the residual: its prior (or regulariser) disagrees with the data.
The check needs no ground truth; its threshold is calibrated on inputs the prior was not trained
on. Under a heteroscedastic model (photon counts, see gensci.inverse.noise) each residual is
weighted by its inverse variance w: the ratio sum w (A x - y)^2 / m is again about 1 at the truth.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from gensci.errors import ConfigError
from gensci.inverse.operators import LinearOperator


def discrepancy_ratio(
    op: LinearOperator,
    x: torch.Tensor,
    y: torch.Tensor,
    noise_std: float,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Return ||A x - y||^2 / (m noise_std^2) per image, shape (B,); x: (B, *in_shape),
    y: (B or 1, *out_shape), m = prod(out_shape).

    weights: (B or 1, *out_shape), the inverse variance of each measurement; given, the ratio is
    sum w (A x - y)^2 / m and noise_std is not used.
    """
    op.check_input(x, "x")
    residual = op.forward(x.to(y.dtype)) - y
    m = residual[0].numel()
    if weights is not None:
        from gensci.inverse.noise import check_weights

        check_weights(weights, y)
        return (weights.to(y) * residual.pow(2)).flatten(1).sum(dim=1) / m
    if not noise_std > 0:
        raise ConfigError(f"the discrepancy needs the noise std > 0, got {noise_std}")
    return residual.flatten(1).pow(2).sum(dim=1) / (m * noise_std**2)


@dataclass
class DiscrepancyCheck:
    """The outcome of the check on one image: ratio, the threshold it was held to, and passed."""

    ratio: float
    threshold: float
    passed: bool


def check_discrepancy(
    op: LinearOperator,
    x: torch.Tensor,
    y: torch.Tensor,
    noise_std: float,
    threshold: float,
    weights: torch.Tensor | None = None,
) -> DiscrepancyCheck:
    """Return whether x: (1, *in_shape) explains y: (1, *out_shape) to `threshold` times the
    noise level (ratio <= threshold; weights as in `discrepancy_ratio`)."""
    if threshold <= 0:
        raise ConfigError(f"discrepancy threshold {threshold} must be > 0")
    ratio = float(discrepancy_ratio(op, x, y, noise_std, weights)[0])
    return DiscrepancyCheck(ratio=ratio, threshold=threshold, passed=ratio <= threshold)


def morozov_choice(ratios: Sequence[float], target: float = 1.0) -> int:
    """Return the index of the candidate whose discrepancy ratio is nearest `target` (on a log
    scale): the discrepancy principle's choice of a regularisation weight without the truth."""
    if not ratios:
        raise ConfigError("no candidates to choose from")
    import math

    return min(range(len(ratios)), key=lambda i: abs(math.log(max(ratios[i], 1e-30) / target)))
