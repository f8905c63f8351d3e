"""The extrapolation check: a posterior that predicts views it was not fitted to worse than TV
falls back to TV, one that predicts them better is kept."""

import numpy as np
import pytest
import torch
from scipy.ndimage import shift
from skimage.data import shepp_logan_phantom
from skimage.transform import resize
from torch import nn

from gensci.errors import ConfigError
from gensci.inverse import Radon
from gensci.inverse.posterior import DiffusionPrior
from gensci.models.diffusion import DiffusionConfig, DiffusionModel
from gensci.tomography.study import (
    MethodSettings,
    end_views,
    extrapolation_check,
    reconstruct,
    reconstruct_checked,
    simulate,
    tv_lambda,
)

N = 24


class _Constant(nn.Module):
    """x0 prediction of a prior that holds one image: the same u whatever x_t."""

    def __init__(self, u: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("u", u)

    def forward(self, x, t, cond):
        return self.u.to(x.dtype).expand_as(x)


def point_prior(image: np.ndarray) -> DiffusionPrior:
    """A diffusion prior whose every sample is `image`: its DDS posterior mean is the image."""
    model = DiffusionModel(DiffusionConfig(data_shape=(1, N, N), net="unet", base_channels=8,
                                           channel_mults=(1,), prediction="x0"))
    model.eps_net = _Constant(torch.from_numpy(image).float()[None, None] * 2 - 1)
    return DiffusionPrior(model)


@pytest.fixture(scope="module")
def problem():
    img = resize(shepp_logan_phantom(), (N, N), anti_aliasing=True)
    op = Radon(N, np.arange(24) * 90 / 24)
    y, s = simulate(op, torch.from_numpy(img)[None, None], 0.002,
                    torch.Generator().manual_seed(0))
    return op, y, s, img


SETTINGS = MethodSettings(samples=2, dds_steps=4, tv_iterations=300)


def test_end_views_are_the_smallest_and_largest_angles_in_any_order():
    assert end_views(16).tolist() == [0, 1, 14, 15]
    angles = np.array([50.0, 0.0, 80.0, 10.0, 30.0, 70.0, 20.0, 60.0, 40.0, 5.0, 75.0, 65.0,
                       15.0, 25.0, 35.0, 45.0])
    picked = end_views(16, angles)
    assert sorted(angles[picked].tolist()) == [0.0, 5.0, 75.0, 80.0]


def test_left_out_measurements_do_not_move_the_fit(problem):
    """TV fitted with held_out does not depend on the data it was told to leave out."""
    op, y, s, _ = problem
    held = torch.zeros_like(y, dtype=torch.bool)
    held[..., :3] = True
    spoiled = y.clone()
    spoiled[held] += 5.0
    a = reconstruct("tv", op, y, s, SETTINGS, tv_lam=tv_lambda(1.0, s), held_out=held).mean
    b = reconstruct("tv", op, spoiled, s, SETTINGS, tv_lam=tv_lambda(1.0, s), held_out=held).mean
    torch.testing.assert_close(a, b)
    with pytest.raises(ConfigError, match="cannot leave"):
        reconstruct("fbp", op, y, s, SETTINGS, held_out=held)


def test_a_prior_of_the_truth_passes_and_a_prior_of_another_image_fails(problem):
    op, y, s, img = problem
    lam = tv_lambda(1.0, s)
    right = extrapolation_check("dds", op, y, s, SETTINGS, point_prior(img), lam)
    # the truth predicts the left-out views to the noise level, TV extrapolates worse
    assert right["passed"] and 0.7 < right["posterior"] < 1.4 and right["tv"] > right["posterior"]
    assert len(right["held_views"]) == 6
    moved = np.clip(shift(img, (0, 2), order=1), 0, 1)
    wrong = extrapolation_check("dds", op, y, s, SETTINGS, point_prior(moved), lam)
    assert not wrong["passed"] and wrong["ratio"] > 2


def test_the_checked_answer_falls_back_when_only_extrapolation_fails(problem):
    """With the discrepancy check out of the way (a huge threshold), a prior of another image
    is caught by the extrapolation check alone and the answer is TV's."""
    op, y, s, img = problem
    moved = np.clip(shift(img, (0, 2), order=1), 0, 1)
    res = reconstruct_checked("dds", op, y, s, SETTINGS, tv_weights=(0.5, 2.0),
                              prior=point_prior(moved), threshold=1e9, truth=img)
    chk = res.report["check"]
    assert chk["failed"] == ["extrapolation"] and chk["flag"] == "fallback-tv"
    assert res.report["final"]["source"].startswith("tv")
    assert res.report["final"]["psnr"] > res.report["posterior"]["psnr"]
    kept = reconstruct_checked("dds", op, y, s, SETTINGS, tv_weights=(0.5, 2.0),
                               prior=point_prior(img), truth=img)
    assert kept.report["check"]["flag"] == "passed" and kept.final is kept.posterior
    off = reconstruct_checked("dds", op, y, s, SETTINGS, prior=point_prior(moved),
                              threshold=1e9, extrapolation=False)
    assert "extrapolation" not in off.report["check"] and off.report["check"]["passed"]
    with pytest.raises(ConfigError, match="extrapolation-margin"):
        reconstruct_checked("dds", op, y, s, SETTINGS, prior=point_prior(img), margin=0)
