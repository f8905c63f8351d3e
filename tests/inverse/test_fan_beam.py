"""The matrix-free fan-beam projector: exact adjoint, the geometry's detector positions,
gradients, its FBP (full and short scan) and TV on top."""

import math

import numpy as np
import pytest
import torch

from gensci.errors import ConfigError, ShapeError
from gensci.inverse import ParallelBeam, fbp, psnr, tv_pdhg
from gensci.inverse.fan_beam import FanBeam, fan_fbp, parker_weights


def phantom(n: int) -> torch.Tensor:
    """Return a small Shepp-Logan-like image (1, 1, n, n) in [0, 1]: ellipses of known values."""
    yy, xx = np.mgrid[:n, :n]
    u, v = (xx - n / 2 + 0.5) / (n / 2), (yy - n / 2 + 0.5) / (n / 2)
    img = np.zeros((n, n))
    for cx, cy, a, b, val in [
        (0, 0, 0.69, 0.92, 1.0),
        (0, -0.02, 0.62, 0.85, -0.6),
        (0.22, 0, 0.11, 0.31, -0.2),
        (-0.22, 0, 0.16, 0.41, -0.2),
        (0, 0.35, 0.21, 0.25, 0.3),
        (0, -0.6, 0.1, 0.1, 0.4),
    ]:
        img += val * (((u - cx) / a) ** 2 + ((v - cy) / b) ** 2 <= 1)
    return torch.from_numpy(np.clip(img, 0, 1))[None, None]


@pytest.mark.parametrize("detector", ["flat", "arc"])
def test_dot_test_to_rounding(detector) -> None:
    op = FanBeam(16, np.arange(0, 360, 25.0), 20.0, 35.0, detector=detector, chunk=4)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((2, *op.in_shape), generator=gen, dtype=torch.float64)
    y = torch.randn((2, *op.out_shape), generator=gen, dtype=torch.float64)
    lhs, rhs = float((op(x) * y).sum()), float((x * op.adjoint(y)).sum())
    assert abs(lhs - rhs) <= 1e-12 * abs(lhs)
    # batched: each image is projected alone
    torch.testing.assert_close(op(x)[1:], op(x[1:]))


@pytest.mark.parametrize("detector", ["flat", "arc"])
def test_a_point_projects_where_the_geometry_says(detector) -> None:
    n, r, d = 24, 40.0, 70.0
    op = FanBeam(n, np.arange(0, 360, 30.0), r, d, detector=detector)
    x = torch.zeros((1, 1, n, n), dtype=torch.float64)
    row, col = 5, 17
    x[0, 0, row, col] = 1.0
    sino = op(x)[0, 0].numpy()
    point = np.array([col - n // 2, n // 2 - row])
    for a, beta in enumerate(np.deg2rad(op.angles)):
        e, u = np.array([np.sin(beta), -np.cos(beta)]), np.array([np.cos(beta), np.sin(beta)])
        depth, offset = r + point @ e, point @ u
        s = d * offset / depth if detector == "flat" else d * math.atan2(offset, depth)
        predicted = op.n_det // 2 + s / op.det_spacing
        column = sino[:, a]
        centroid = float((column * np.arange(op.n_det)).sum() / column.sum())
        assert abs(centroid - predicted) < 0.3, (a, centroid, predicted)


def test_gradients_are_the_adjoint() -> None:
    op = FanBeam(12, np.arange(0, 360, 40.0), 16.0, 30.0)
    x = torch.rand((3, 1, 12, 12), requires_grad=True)
    y = op(x)
    assert y.dtype == torch.float32 and y.shape == (3, 1, op.n_det, 9)
    target = torch.rand_like(y)
    (grad,) = torch.autograd.grad(((y - target) ** 2).sum() / 2, x)
    torch.testing.assert_close(grad, op.adjoint(y.detach() - target), rtol=1e-5, atol=1e-5)
    # and through the adjoint: d/dy 1/2 ||A^T y - z||^2 = A (A^T y - z)
    yy = torch.rand_like(y, requires_grad=True)
    z = torch.rand_like(x)
    back = op.adjoint(yy)
    (grad_y,) = torch.autograd.grad(((back - z) ** 2).sum() / 2, yy)
    torch.testing.assert_close(grad_y, op(back.detach() - z), rtol=1e-5, atol=1e-5)
    # second order (the gradient is itself differentiable), checked numerically in float64
    small = FanBeam(6, [0.0, 120.0, 240.0], 8.0, 14.0)
    x64 = torch.rand((1, 1, 6, 6), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: small.adjoint(small(v)), (x64,))


def test_bad_geometry_and_bad_sinograms_are_refused() -> None:
    with pytest.raises(ConfigError, match="bounding radius"):
        FanBeam(32, [0.0], 10.0, 40.0)
    with pytest.raises(ConfigError, match="must exceed source_distance"):
        FanBeam(32, [0.0], 40.0, 40.0)
    with pytest.raises(ConfigError, match="unknown detector"):
        FanBeam(32, [0.0], 40.0, 80.0, detector="curved")
    op = FanBeam(16, [0.0, 90.0, 180.0], 20.0, 35.0)
    with pytest.raises(ShapeError, match="3 angles"):
        op.adjoint(torch.zeros(1, 1, op.n_det, 4))
    with pytest.raises(ShapeError, match="expected"):
        op(torch.zeros(1, 1, 15, 16))
    with pytest.raises(ShapeError, match="detector bins"):
        fan_fbp(op, torch.zeros(1, 1, op.n_det + 1, 3))


def test_parker_weights_sum_to_one_over_conjugate_rays() -> None:
    half_fan = math.radians(20.0)
    gamma = np.linspace(-half_fan, half_fan, 41)
    span = math.pi + 2 * half_fan
    angles = np.degrees(np.linspace(0.0, span, 721))
    w = parker_weights(angles, gamma)
    beta = np.deg2rad(angles)
    # the ray (beta, gamma) is (beta + pi + 2 gamma, -gamma) seen from the other side
    for j, g in enumerate(gamma):
        for k in range(0, len(beta), 37):
            other = beta[k] + math.pi + 2 * g
            if other <= span:
                w_other = np.interp(other, beta, w[len(gamma) - 1 - j])
                assert abs(w[j, k] + w_other - 1.0) < 2e-2
    with pytest.raises(ConfigError, match="short scan spans"):
        parker_weights(np.linspace(0, 180, 100), gamma)


@pytest.mark.parametrize("detector", ["flat", "arc"])
def test_fbp_reconstructs_from_a_full_and_a_short_scan(detector) -> None:
    n = 64
    truth = phantom(n)
    r, d = 1.5 * n, 2.7 * n
    full = FanBeam(n, np.arange(360) * 1.0, r, d, detector=detector)
    half_fan = math.degrees(float(np.abs(full.fan_angles()).max()))
    span = 180.0 + 2 * half_fan
    views = int(round(span))
    short = FanBeam(n, np.arange(views + 1) * span / views, r, d, detector=detector)
    # the bar: parallel-beam FBP of the same sharp-edged phantom from 180 views (about 23.4 dB)
    parallel = ParallelBeam(n, np.arange(180) * 1.0)
    reference = float(psnr(fbp(parallel, parallel(truth)), truth)[0])
    for op in (full, short):
        rec = fan_fbp(op, op(truth))
        assert rec.shape == truth.shape
        value = float(psnr(rec, truth)[0])
        assert value > 23.0 and value > reference - 0.5, (value, reference)
    # a short scan read as a full one is refused
    with pytest.raises(ConfigError, match="360 degrees"):
        fan_fbp(short, short(truth), short_scan=False)


def test_tv_beats_fbp_with_few_views() -> None:
    n = 32
    truth = phantom(n).float()
    op = FanBeam(n, np.arange(0, 360, 15.0), 1.5 * n, 2.7 * n)  # 24 views
    gen = torch.Generator().manual_seed(0)
    y = op(truth)
    y = y + 0.01 * float(y.abs().max()) * torch.randn(y.shape, generator=gen)
    rec_fbp = fan_fbp(op, y)
    rec_tv = tv_pdhg(op, y, lam=1.0, iterations=300).x
    p_fbp, p_tv = float(psnr(rec_fbp, truth)[0]), float(psnr(rec_tv, truth)[0])
    assert p_tv > p_fbp + 3.0, (p_tv, p_fbp)
