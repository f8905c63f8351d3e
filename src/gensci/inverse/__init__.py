"""Inverse problems: linear operators, classical solvers, posterior sampling with generative priors.

The metrics (`psnr`, `ssim`: scikit-image, which pulls in scipy.stats) load on first use, so a
command-line call that does not score pays nothing for them.
"""

from __future__ import annotations

from typing import Any

from gensci.inverse.astra import AstraFanBeam, AstraParallelBeam
from gensci.inverse.discrepancy import check_discrepancy, discrepancy_ratio, morozov_choice
from gensci.inverse.fan_beam import FanBeam, fan_fbp
from gensci.inverse.fbp import fbp
from gensci.inverse.noise import GaussianNoise, PoissonNoise
from gensci.inverse.nullspace import conjugate_gradient, pseudo_inverse, range_null_split
from gensci.inverse.operators import FiniteDifference, LinearOperator, adjointness_error
from gensci.inverse.parallel_beam import ParallelBeam
from gensci.inverse.radon import Radon, parse_angles
from gensci.inverse.tv import tv_pdhg

__all__ = [
    "AstraFanBeam",
    "AstraParallelBeam",
    "FanBeam",
    "FiniteDifference",
    "GaussianNoise",
    "LinearOperator",
    "ParallelBeam",
    "PoissonNoise",
    "Radon",
    "adjointness_error",
    "check_discrepancy",
    "conjugate_gradient",
    "discrepancy_ratio",
    "fan_fbp",
    "fbp",
    "morozov_choice",
    "parse_angles",
    "pseudo_inverse",
    "psnr",
    "range_null_split",
    "ssim",
    "tv_pdhg",
]


def __getattr__(name: str) -> Any:
    if name in ("psnr", "ssim"):
        from gensci.inverse import metrics

        return getattr(metrics, name)
    raise AttributeError(f"module 'gensci.inverse' has no attribute {name!r}")
