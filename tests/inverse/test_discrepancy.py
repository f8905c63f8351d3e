"""The discrepancy principle: ratio ~ 1 at the truth, larger for a wrong image; Morozov's choice."""

import numpy as np
import pytest
import torch

from gensci.errors import ConfigError
from gensci.inverse import Radon, tv_pdhg
from gensci.inverse.discrepancy import check_discrepancy, discrepancy_ratio, morozov_choice


def test_ratio_is_one_at_the_truth_and_flags_a_wrong_image() -> None:
    gen = torch.Generator().manual_seed(0)
    op = Radon(16, np.linspace(0, 180, 30, endpoint=False))
    x = torch.rand((1, 1, 16, 16), generator=gen, dtype=torch.float64)
    clean = op(x)
    sigma = 0.05 * float(clean.abs().max())
    y = clean + sigma * torch.randn(clean.shape, generator=gen, dtype=torch.float64)
    m = clean[0].numel()
    at_truth = float(discrepancy_ratio(op, x, y, sigma)[0])
    assert abs(at_truth - 1.0) < 4 * (2 / m) ** 0.5  # chi-square with m degrees of freedom
    wrong = x.flip(-1)  # a plausible image that is not this one
    check = check_discrepancy(op, wrong, y, sigma, threshold=1.5)
    assert check.ratio > 1.5 and not check.passed
    assert check_discrepancy(op, x, y, sigma, threshold=1.5).passed
    with pytest.raises(ConfigError, match="noise std"):
        discrepancy_ratio(op, x, y, 0.0)
    with pytest.raises(ConfigError, match="threshold"):
        check_discrepancy(op, x, y, sigma, threshold=0.0)


def test_morozov_choice_picks_the_weight_that_fits_to_the_noise() -> None:
    assert morozov_choice([0.5, 0.9, 1.6, 4.0]) == 1
    assert morozov_choice([0.2, 3.0]) == 1  # log scale: 3 is nearer 1 than 0.2 is
    with pytest.raises(ConfigError):
        morozov_choice([])
    # TV: the residual grows with the weight, so the choice is a middle weight
    gen = torch.Generator().manual_seed(1)
    op = Radon(16, np.linspace(0, 90, 20, endpoint=False))
    x = torch.zeros((1, 1, 16, 16), dtype=torch.float64)
    x[..., 4:12, 5:11] = 1.0
    clean = op(x)
    sigma = 0.02 * float(clean.abs().max())
    y = clean + sigma * torch.randn(clean.shape, generator=gen, dtype=torch.float64)
    ratios = [float(discrepancy_ratio(op, tv_pdhg(op, y, w * sigma, 150).x, y, sigma)[0])
              for w in (0.01, 2.0, 500.0)]
    assert ratios[0] < ratios[1] < ratios[2]
    assert morozov_choice(ratios) == 1
