"""The measures on answers known in advance: DCI and MIG of a perfect and of a scrambled code, IoU,
chord progress, the stain measures on the truth and on the untouched source."""

from __future__ import annotations

import numpy as np
import torch

from gensci.style.data import random_stains, restain, tissue_concentrations, tissue_tiles
from gensci.style.metrics import (
    chord_progress,
    dci,
    degrade,
    factor_labels,
    iou,
    mig,
    stain_distance,
    structure_ssim,
)
from gensci.style.task import from_od, macenko, reinhard, to_od


def test_dci_and_mig_separate_a_disentangled_code_from_a_mixed_one() -> None:
    rng = np.random.default_rng(0)
    f = rng.uniform(0, 1, (600, 3))
    labels = factor_labels(f, ("hue", "contrast", "scale"), bins=5)
    good = f + 0.01 * rng.normal(size=f.shape)
    mixed = f @ np.array([[1.0, 1.0, 1.0], [1.0, -1.0, 0.5], [0.3, 1.0, -1.0]])
    d_good = dci(good[:300], labels[:300], good[300:], labels[300:], n_estimators=10)
    d_mixed = dci(mixed[:300], labels[:300], mixed[300:], labels[300:], n_estimators=10)
    assert d_good.disentanglement > 0.8 and d_good.completeness > 0.8
    assert d_good.disentanglement > d_mixed.disentanglement + 0.2
    assert d_good.informativeness > 0.8
    assert mig(good, labels) > 0.5 > mig(mixed, labels) + 0.2


def test_iou_and_chord_progress() -> None:
    a = torch.zeros(2, 1, 4, 4)
    a[:, :, :2] = 1
    b = a.clone()
    b[1, :, 1] = 0
    assert torch.allclose(iou(a, b), torch.tensor([1.0, 0.5]))
    path = np.linspace(0, 1, 9)[:, None] * np.array([[2.0, -1.0]]) + 3.0
    np.testing.assert_allclose(chord_progress(path), np.linspace(0, 1, 9))
    x = torch.rand(5, 3, 8, 8)
    y = degrade(x, 0)
    assert y.shape == x.shape and torch.equal(y, degrade(x, 0)) and not torch.equal(x, y)


def test_stain_measures_rank_the_truth_first_and_the_anchors_run() -> None:
    conc = tissue_concentrations()
    src, ref = (tissue_tiles(conc, 1, 64, "test", s)[0] for s in (1, 2))
    rng = np.random.default_rng(0)
    (m_a, g_a), (m_b, g_b) = random_stains(rng), random_stains(rng)
    source, reference, truth = (
        restain(src, m_a, g_a),
        restain(ref, m_b, g_b),
        restain(src, m_b, g_b),
    )
    assert structure_ssim(truth, src[..., 0], m_b, g_b[0]) > 0.99
    assert stain_distance(truth, truth) == 0.0
    assert structure_ssim(source, src[..., 0], m_b, g_b[0]) < 0.99
    for method in (reinhard, macenko):
        out = method(source, reference)
        assert out.shape == source.shape and np.isfinite(out).all()
        assert 0.0 <= out.min() and out.max() <= 1.0
    np.testing.assert_allclose(from_od(to_od(truth)), np.clip(truth, 1e-3, 1), atol=1e-9)


def test_macenko_on_a_tile_without_stain_is_a_clear_data_error() -> None:
    import pytest

    from gensci.errors import DataError

    blank = np.ones((32, 32, 3)) * 0.99
    conc = tissue_concentrations()
    tissue = restain(
        tissue_tiles(conc, 1, 32, "test", 0)[0], *random_stains(np.random.default_rng(1))
    )
    with pytest.raises(DataError, match="Macenko"):
        macenko(blank, tissue)


def test_slide_statistics_adain_keeps_the_structure_one_tile_adain_loses() -> None:
    from gensci.style.study import stain_pairs
    from gensci.style.task import adain_stain, stain_moments

    pair = stain_pairs(tissue_concentrations(), "train", 1, 32, 4, seed=0)[0]
    source, refs, srcs = pair["source"], pair["references"], pair["sources"]

    def ssim(out: np.ndarray) -> float:
        return structure_ssim(out, pair["conc"][..., 0], pair["stains"], pair["gains"][0])

    pooled = adain_stain(source, stain_moments(srcs), stain_moments(refs))
    # classic AdaIN: one tile's channel means and stds onto the other's
    one_tile = adain_stain(
        source, stain_moments(source), stain_moments(refs[0]), covariance=False, about_zero=False
    )
    assert ssim(pooled) > 0.9 > 0.5 > ssim(one_tile)
    assert stain_distance(pooled, pair["truth"]) < stain_distance(one_tile, pair["truth"])
    # the same statistics on both sides leave the tile as it was
    same = stain_moments(srcs)
    np.testing.assert_allclose(adain_stain(source, same, same), np.clip(source, 1e-3, 1), atol=1e-6)


def test_pooled_anchors_with_the_tile_alone_are_torchstains_own() -> None:
    conc = tissue_concentrations()
    src, ref = (tissue_tiles(conc, 1, 32, "test", s)[0] for s in (3, 4))
    rng = np.random.default_rng(2)
    source, reference = restain(src, *random_stains(rng)), restain(ref, *random_stains(rng))
    for method in (reinhard, macenko):
        np.testing.assert_array_equal(
            method(source, reference, [source]), method(source, reference)
        )
        # a reference given as several tiles is their pixels pooled
        np.testing.assert_array_equal(
            method(source, [reference[:16], reference[16:]]), method(source, reference)
        )
