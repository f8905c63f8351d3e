import numpy as np
import pytest
import torch
from skimage.data import shepp_logan_phantom
from skimage.transform import radon as sk_radon
from skimage.transform import resize

from gensci.errors import ConfigError, ShapeError
from gensci.inverse import FiniteDifference, Radon, adjointness_error, parse_angles


@pytest.fixture(scope="module")
def phantom() -> np.ndarray:
    return resize(shepp_logan_phantom(), (32, 32), anti_aliasing=True)


@pytest.mark.parametrize(
    "angles, n_det",
    [(np.arange(20) * 9.0, None), (np.arange(15) * 6.0 + 0.3, 40), ([0.0, 33.0, 121.5], 17)],
)
def test_radon_adjoint_dot_product(angles, n_det) -> None:
    op = Radon(24, angles, n_det=n_det)
    assert adjointness_error(op, seed=1, dtype=torch.float64) < 1e-5
    assert adjointness_error(op, seed=2, dtype=torch.float64) < 1e-12


def test_finite_difference_adjoint() -> None:
    assert adjointness_error(FiniteDifference(7, 9)) < 1e-12
    assert FiniteDifference(16, 16).norm(iterations=200) ** 2 <= 8.0 + 1e-9


def test_radon_matches_skimage(phantom: np.ndarray) -> None:
    theta = np.arange(30) * 6.0
    ours = Radon(32, theta)(torch.from_numpy(phantom)[None, None])[0, 0].numpy()
    ref = sk_radon(phantom, theta, circle=False)
    assert ours.shape == ref.shape
    # the same bilinear ray sampling: agreement to rounding
    assert np.abs(ours - ref).max() <= 1e-6 * np.abs(ref).max()


@pytest.mark.parametrize("det_spacing", [0.5, 1.5])
def test_radon_det_spacing_sets_the_detector_coordinate(det_spacing: float) -> None:
    """A centred disc of radius r projects to the chord 2 sqrt(r^2 - s^2) at every angle, with
    s = (bin - n_det // 2) * det_spacing; the bins times their width integrate to the disc's area."""
    n, r = 48, 15.0
    # the disc about the rotation centre (pixel n // 2), each pixel's value its covered fraction
    g = (np.arange(n * 8) + 0.5) / 8 - 0.5 - n // 2
    xx, yy = np.meshgrid(g, g)
    disc = (xx**2 + yy**2 <= r**2).reshape(n, 8, n, 8).mean((1, 3))
    op = Radon(n, [0.0, 30.0, 72.5, 90.0, 135.0], n_det=81, det_spacing=det_spacing)
    sino = op(torch.from_numpy(disc)[None, None])[0, 0].numpy()
    s = (np.arange(op.n_det) - op.n_det // 2) * det_spacing
    chord = 2 * np.sqrt(np.clip(r**2 - s**2, 0.0, None))[:, None]
    inside, outside = np.abs(s) < r - 1, np.abs(s) > r + 2
    # within a fraction of a pixel inside the disc (the rim, where the chord is steep, aside)
    assert np.abs(sino - chord)[inside].max() < 0.5
    assert np.abs(sino[outside]).max() < 1e-9
    np.testing.assert_allclose(sino.sum(0) * det_spacing, np.pi * r**2, rtol=0.01)
    assert adjointness_error(op, seed=2, dtype=torch.float64) < 1e-12


def test_radon_conserves_mass_along_the_axes() -> None:
    """At 0 and 90 degrees the rays hit pixel centres: each view sums to the image's total,
    edge rows and columns included; matrix() is the operator forward() applies."""
    x = torch.rand((2, 1, 9, 9), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    op = Radon(9, [0.0, 90.0])
    sino = op(x)
    torch.testing.assert_close(sino.sum(2), x.sum((2, 3))[:, :, None].expand(2, 1, 2))
    assert op.shape == (op.out_shape, op.in_shape) == ((1, op.n_det, 2), (1, 9, 9))
    dense = op.matrix().to_dense()
    assert dense.shape == (op.n_det * 2, 81)
    torch.testing.assert_close((dense @ x.reshape(2, 81).T).T, sino.reshape(2, -1))


def test_radon_geometry_limits() -> None:
    """One detector bin is a valid geometry (the central ray); no bins or a zero spacing are not."""
    x = torch.rand((1, 1, 8, 8), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    one = Radon(8, [0.0], n_det=1)
    torch.testing.assert_close(one(x)[0, 0, 0, 0], x[0, 0, :, 4].sum())
    for kwargs in ({"n_det": 0}, {"det_spacing": 0.0}, {"det_spacing": -1.0}):
        with pytest.raises(ConfigError, match="must be positive"):
            Radon(8, [0.0], **kwargs)


def test_radon_batched_differentiable_float32() -> None:
    op = Radon(16, np.arange(10) * 18.0)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand((3, 1, 16, 16), generator=gen, requires_grad=True)
    y = op(x)
    assert y.shape == (3, 1, op.n_det, 10)
    single = torch.cat([op(x[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(y, single)
    w = torch.randn(y.shape, generator=gen)
    (y * w).sum().backward()
    torch.testing.assert_close(x.grad, op.adjoint(w), rtol=1e-5, atol=1e-5)


def test_radon_rejects_bad_shapes() -> None:
    op = Radon(16, [0.0, 90.0])
    with pytest.raises(ShapeError, match="expected"):
        op(torch.zeros(1, 1, 15, 16))
    with pytest.raises(ShapeError, match="2 angles"):
        op.adjoint(torch.zeros(1, 1, op.n_det, 3))


def test_parse_angles() -> None:
    a = parse_angles("0:90:60")
    assert a.shape == (60,) and a[0] == 0.0 and a[-1] == pytest.approx(88.5)
    assert parse_angles("0, 45,90").tolist() == [0.0, 45.0, 90.0]
    for bad in ("0:90", "90:0:10", "0:90:0", "a:b:c", ""):
        with pytest.raises(ConfigError, match="angle spec"):
            parse_angles(bad)
