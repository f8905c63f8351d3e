"""The CaloChallenge metrics: AUC about 0.5 for two truth samples and about 1 for a clearly wrong
sample; separation power and correlation distance identities."""

from __future__ import annotations

import numpy as np

from gensci.calorimetry.geometry import get_geometry
from gensci.calorimetry.metrics import (
    ClassifierSettings,
    auc,
    classifier_auc,
    correlation_distance,
    evaluate,
    separation_power,
)
from gensci.calorimetry.simulate import simulate

FAST = ClassifierSettings(hidden=(32, 32), steps=400, val_every=50, patience=3)


def test_auc_and_separation_power_identities() -> None:
    rng = np.random.default_rng(0)
    s, y = rng.normal(size=300), rng.integers(0, 2, 300)
    brute = np.mean([(a > b) + 0.5 * (a == b) for a in s[y == 1] for b in s[y == 0]])
    assert abs(auc(s, y) - brute) < 1e-12
    assert auc(y.astype(float), y) == 1.0
    x = rng.normal(size=5000)
    assert separation_power(x, x) == 0.0
    assert separation_power(x, x + 100.0) > 0.95  # disjoint histograms: S close to 1
    assert 0.0 < separation_power(x, x + 0.3) < 0.1


def test_two_truth_samples_are_indistinguishable_and_a_wrong_one_is_not() -> None:
    geo = get_geometry("ds1-photon")
    a, b = simulate(2500, geo, seed=0), simulate(2500, geo, seed=1)
    same = evaluate((a.incident, a.showers), (b.incident, b.showers), geo, FAST)
    assert abs(same["auc_low_level"] - 0.5) < 0.08 and abs(same["auc_high_level"] - 0.5) < 0.08
    wrong = b.showers.copy()
    sl = geo.layer_slices()
    wrong[:, sl[1]], wrong[:, sl[2]] = 1.3 * wrong[:, sl[1]], 0.85 * wrong[:, sl[2]]
    bad = evaluate((a.incident, a.showers), (b.incident, wrong), geo, FAST)
    assert bad["auc_low_level"] > 0.9 and bad["auc_high_level"] > 0.95
    key = "log10 E layer 1"
    assert bad["separation_power"][key] > 5 * same["separation_power"][key]
    # voxels shuffled between showers of similar energy keep every marginal, lose correlations
    order = np.argsort(b.incident)
    shuffled = b.showers[order].copy()
    rng = np.random.default_rng(2)
    for v in range(geo.n_voxels):
        blocks = shuffled[:, v].reshape(-1, 50)
        shuffled[:, v] = rng.permuted(blocks, axis=1).ravel()
    assert (correlation_distance(a.showers, shuffled, geo)
            > 3 * correlation_distance(a.showers, b.showers, geo))
    assert classifier_auc(np.ones((10, 2)) * [[0, 1]], np.ones((10, 2)) * [[5, 1]], FAST) > 0.99
