"""The renderer reproduces its factors; colour deconvolution round-trips."""

from __future__ import annotations

import numpy as np
import pytest

from gensci.errors import ShapeError
from gensci.style.data import (
    BACKGROUND,
    SHAPES,
    deconvolve,
    hue_colour,
    make_shapes,
    random_stains,
    reference_stains,
    render,
    render_stains,
    restain,
    shape_mask,
    tissue_concentrations,
    tissue_image,
    tissue_tiles,
)


def test_renderer_is_seeded_and_rerenders_from_its_factors() -> None:
    a, b = make_shapes(20, 32, seed=3), make_shapes(20, 32, seed=3)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.factors, b.factors)
    assert not np.array_equal(a.images, make_shapes(20, 32, seed=4).images)
    again = render(a.factors, a.offsets, 32)
    assert np.array_equal(again.images, a.images) and np.array_equal(again.masks, a.masks)
    with pytest.raises(ShapeError):
        render(a.factors[:, :5], a.offsets)


def test_masks_carry_position_scale_and_the_image_carries_hue() -> None:
    s = make_shapes(40, 64, seed=0)
    coords = (np.arange(64) + 0.5) / 64
    for img, m, f in zip(s.images, s.masks[:, 0], s.factors, strict=True):
        yy, xx = np.meshgrid(coords, coords, indexing="ij")
        assert abs((m * xx).sum() / m.sum() - f[1]) < 0.03  # centroid = position (symmetric shapes)
        assert abs((m * yy).sum() / m.sum() - f[2]) < 0.03 or SHAPES[int(f[0])] == "triangle"
        if SHAPES[int(f[0])] == "disk":
            assert abs(m.mean() - np.pi * f[3] ** 2) < 0.02  # area = pi r^2
        colour = img[:, m > 0].mean(1)
        ref = hue_colour(f[6])
        cos = colour @ ref / np.linalg.norm(colour) / np.linalg.norm(ref)
        assert cos > 0.99  # the foreground's colour is the hue's, scaled by the texture
        assert np.allclose(img[:, m == 0].std(0), 0, atol=1e-6)  # the background is gray
        assert img[:, m == 0].min() >= BACKGROUND - 1e-6


def test_rotation_turns_the_mask() -> None:
    m0 = shape_mask(0, 0.5, 0.5, 0.3, 0.0, 64)
    m90 = shape_mask(0, 0.5, 0.5, 0.3, np.pi / 2, 64)
    m45 = shape_mask(0, 0.5, 0.5, 0.3, np.pi / 4, 64)
    assert np.array_equal(m0, m90) and not np.array_equal(m0, m45)
    assert abs(m0.sum() - m45.sum()) / m0.sum() < 0.05


def test_colour_deconvolution_round_trip() -> None:
    from skimage.color import hed2rgb, rgb2hed

    img = tissue_image()
    conc = tissue_concentrations()
    # the same concentrations as scikit-image's rgb2hed (which divides the OD by -log10(1e-6) = 6)
    np.testing.assert_allclose(conc / 6.0, rgb2hed(img), atol=1e-10)
    np.testing.assert_allclose(render_stains(conc, reference_stains()), hed2rgb(rgb2hed(img)),
                               atol=1e-8)
    rng = np.random.default_rng(0)
    m, g = random_stains(rng)
    assert not np.allclose(m, reference_stains())
    restained = restain(conc[:64, :64], m, g)
    np.testing.assert_allclose(deconvolve(restained, m), conc[:64, :64] * g, atol=1e-6)


def test_tiles_come_from_disjoint_halves() -> None:
    conc = np.arange(8 * 8 * 3, dtype=float).reshape(8, 8, 3)
    train = tissue_tiles(conc, 20, 4, "train", 0)
    test = tissue_tiles(conc, 20, 4, "test", 0)
    assert set(np.unique(train[..., 0] % 24)).isdisjoint(set(np.unique(test[..., 0] % 24)))
