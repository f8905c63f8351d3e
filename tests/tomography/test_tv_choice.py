"""Cross-validation over rays as the truth-free choice of a TV weight."""

import numpy as np
import pytest
import torch
from skimage.data import shepp_logan_phantom
from skimage.transform import resize

from gensci.errors import ConfigError
from gensci.inverse import Radon
from gensci.tomography.study import (
    MethodSettings,
    reconstruct_checked,
    simulate,
    tv_cross_validation,
    tv_lambda,
)


@pytest.fixture(scope="module")
def problem():
    img = resize(shepp_logan_phantom(), (24, 24), anti_aliasing=True)
    op = Radon(24, np.arange(20) * 90 / 20)
    y, s = simulate(op, torch.from_numpy(img)[None, None], 0.02, torch.Generator().manual_seed(0))
    return op, y, s, img


def test_uniform_weights_give_the_gaussian_scores(problem):
    op, y, s, _ = problem
    lams = [tv_lambda(w, s) for w in (0.5, 4.0)]
    plain = tv_cross_validation(op, y, s, lams, 100, op.norm())
    weighted = tv_cross_validation(op, y, s, lams, 100, op.norm(),
                                   weights=torch.full_like(y, 1 / s**2))
    np.testing.assert_allclose(plain, weighted, rtol=1e-6)


def test_unseen_rays_score_an_oversmoothing_weight_far_worse(problem):
    """Scores near 1 for a weight that predicts unseen rays to the noise level, far above it for
    one that smooths the image away; the chosen weight's answer is returned."""
    op, y, s, img = problem
    settings = MethodSettings(tv_iterations=100)
    res = reconstruct_checked("tv", op, y, s, settings, tv_weights=(1.0, 200.0), truth=img)
    rows = res.report["tv_sweep"]
    assert 0.8 < rows[0]["cv"] < 2.5 and rows[1]["cv"] > 3 * rows[0]["cv"]
    assert res.report["tv_weight"] == 1.0 and res.report["tv_choice"] == "cv"
    with pytest.raises(ConfigError, match="tv-choice"):
        reconstruct_checked("tv", op, y, s, settings, tv_weights=(1.0, 2.0), tv_choice="oracle")
