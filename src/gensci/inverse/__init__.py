"""Inverse problems: linear operators, classical solvers, posterior sampling with generative priors.
"""

from gensci.inverse.fbp import fbp
from gensci.inverse.metrics import psnr, ssim
from gensci.inverse.nullspace import conjugate_gradient, pseudo_inverse, range_null_split
from gensci.inverse.operators import FiniteDifference, LinearOperator, adjointness_error
from gensci.inverse.radon import Radon, parse_angles
from gensci.inverse.tv import tv_pdhg

__all__ = [
    "FiniteDifference",
    "LinearOperator",
    "Radon",
    "adjointness_error",
    "conjugate_gradient",
    "fbp",
    "parse_angles",
    "pseudo_inverse",
    "psnr",
    "range_null_split",
    "ssim",
    "tv_pdhg",
]
