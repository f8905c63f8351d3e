"""The three generators: the preprocessing inverts, each loss falls under the core Trainer, the
samples have the right shape and come back the same from a checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from gensci.calorimetry.geometry import get_geometry
from gensci.calorimetry.model import (
    CaloConfig,
    generate,
    load_model,
    make_model,
    prepare,
    save_model,
    train_model,
)
from gensci.calorimetry.simulate import simulate
from gensci.errors import ShapeError
from gensci.train import TrainConfig

GEO = get_geometry("ds1-photon")


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    s = simulate(600, GEO, seed=0)
    return s.incident, s.showers


def _config(kind: str) -> CaloConfig:
    return CaloConfig(layer_sizes=GEO.layer_sizes, hidden=(32, 32), time_dim=8,
                      sampler_steps=3)


def test_preprocessing_inverts_above_the_threshold(data) -> None:  # type: ignore[no-untyped-def]
    e, x = data
    model = make_model("parallel", _config("parallel"))
    u, c = prepare(model, e, x.copy(), fit=True)
    assert u.shape == x.shape and c.shape == (len(e), 1) and c.min() >= -1 and c.max() <= 1
    back = model.space.invert(u, torch.from_numpy(e)).numpy()
    assert np.allclose(back, x, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("kind", ["ar", "parallel", "correlated", "diffusion"])
def test_each_model_learns_and_samples(kind: str, data, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    e, x = data
    cfg = _config(kind)
    tc = TrainConfig(steps=120, batch_size=64, lr=3e-3, seed=0, progress=False, val_every=120)
    torch.manual_seed(0)
    fresh = make_model(kind, cfg)
    u_val, c_val = prepare(fresh, e[500:], x[500:].copy(), fit=True)
    torch.manual_seed(1)
    with torch.no_grad():
        before = float(fresh.loss((u_val, c_val)))
    model, record = train_model(kind, cfg, (e[:500], x[:500].copy()), (e[500:], x[500:].copy()),
                                tc)
    u_val, c_val = prepare(model, e[500:], x[500:].copy())
    torch.manual_seed(1)
    with torch.no_grad():
        assert float(model.loss((u_val, c_val))) < 0.95 * before
    out = generate(model, e[:20], seed=3)
    assert out.shape == (20, GEO.n_voxels) and (out >= 0).all() and np.isfinite(out).all()
    assert out[out > 0].min() >= cfg.threshold
    save_model(model, tmp_path / "m.safetensors", record)
    again = load_model(tmp_path / "m.safetensors")
    assert np.array_equal(generate(again, e[:20], seed=3), out)


def test_a_model_refuses_showers_of_another_geometry(data) -> None:  # type: ignore[no-untyped-def]
    e, x = data
    with pytest.raises(ShapeError, match="368"):
        train_model("parallel", _config("parallel"), (e, np.zeros((len(e), 6480), np.float32)),
                    (e, x.copy()), TrainConfig(steps=1, progress=False))
