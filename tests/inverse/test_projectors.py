"""make_projector: every geometry x implementation projects the same object alike."""

import numpy as np
import pytest
import torch

from gensci.errors import ConfigError
from gensci.inverse.projectors import astra_available, make_projector


def test_implementations_agree_on_each_geometry() -> None:
    n = 32
    x = torch.zeros((1, 1, n, n))
    x[0, 0, 10:20, 12:24] = 1.0
    kinds = ["sparse", "torch"] + (["astra"] if astra_available() else [])
    parallel = {k: make_projector(n, np.arange(0, 180, 6.0), projector=k)(x) for k in kinds}
    ref = parallel["torch"]
    torch.testing.assert_close(parallel["sparse"], ref, rtol=0, atol=1e-4)
    for y in parallel.values():
        assert y.shape == ref.shape and float((y - ref).norm() / ref.norm()) < 0.03
    fan_kinds = [k for k in kinds if k != "sparse"]
    fan = {
        k: make_projector(n, np.arange(0, 360, 12.0), "fan", k, source_distance=48.0,
                          detector_distance=86.0)(x)
        for k in fan_kinds
    }  # fmt: skip
    for y in fan.values():
        assert float((y - fan["torch"]).norm() / fan["torch"].norm()) < 0.03
    arc = make_projector(
        n, [0.0, 90.0], "fan", source_distance=48.0, detector_distance=86.0, detector="arc"
    )
    assert type(arc).__name__ == "FanBeam"  # only the torch projector has an arc detector


def test_bad_choices_are_refused() -> None:
    with pytest.raises(ConfigError, match="unknown geometry"):
        make_projector(16, [0.0], geometry="cone")
    with pytest.raises(ConfigError, match="unknown projector"):
        make_projector(16, [0.0], projector="gpu")
    with pytest.raises(ConfigError, match="needs source_distance"):
        make_projector(16, [0.0], geometry="fan", projector="torch")
    with pytest.raises(ConfigError, match="parallel beam only"):
        make_projector(16, [0.0], "fan", "sparse", source_distance=30.0, detector_distance=50.0)
    with pytest.raises(ConfigError, match="no source/detector distances"):
        make_projector(16, [0.0], "parallel", "torch", source_distance=30.0)
