"""The ASTRA-backed operators: matched adjoint (CPU), our geometry, autograd, clear errors."""

import sys

import numpy as np
import pytest
import torch

from gensci.errors import ConfigError, ShapeError
from gensci.inverse import ParallelBeam, fbp
from gensci.inverse.fan_beam import FanBeam, fan_fbp

pytest.importorskip("astra", exc_type=ImportError)

from gensci.inverse.astra import AstraFanBeam, AstraParallelBeam, import_astra  # noqa: E402


def dot_mismatch(op, seed: int = 0) -> float:
    """Return |<Ax, y> - <x, A^T y>| / |<Ax, y>|, float32 operator, float64 inner products."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((2, *op.in_shape), generator=gen)
    y = torch.randn((2, *op.out_shape), generator=gen)
    lhs = float((op(x).double() * y.double()).sum())
    rhs = float((x.double() * op.adjoint(y).double()).sum())
    return abs(lhs - rhs) / abs(lhs)


def blobs(n: int) -> torch.Tensor:
    """Return two disks (1, 1, n, n), float32."""
    yy, xx = np.mgrid[:n, :n]
    img = (((xx - n // 2 - 5) ** 2 + (yy - n // 2 + 3) ** 2) < (n // 4) ** 2).astype(float)
    img += 0.5 * (((xx - n // 2 + 10) ** 2 + (yy - n // 2 - 8) ** 2) < (n // 10) ** 2)
    return torch.from_numpy(img).float()[None, None]


@pytest.mark.parametrize("projector", ["linear", "line", "strip"])
def test_cpu_back_projection_is_the_transpose(projector) -> None:
    op = AstraParallelBeam(32, np.arange(0, 180, 7.0), projector=projector)
    assert max(dot_mismatch(op, s) for s in range(3)) < 1e-5  # float32 rounding
    fan = AstraFanBeam(32, np.arange(0, 360, 11.0), 48.0, 86.0)
    assert max(dot_mismatch(fan, s) for s in range(3)) < 1e-5


def test_parallel_geometry_is_ours() -> None:
    n = 64
    angles = np.arange(0, 180, 2.0)
    ours, astra_op = ParallelBeam(n, angles), AstraParallelBeam(n, angles)
    # a point lands in the same bin at every angle: centroids agree to a few hundredths of a bin
    # (up to a fifth near 45 degrees, where Joseph's method switches its interpolation axis)
    point = torch.zeros((1, 1, n, n))
    point[0, 0, 9, 40] = 1.0
    bins = np.arange(ours.n_det)[:, None]
    a, b = ours(point)[0, 0].numpy(), astra_op(point)[0, 0].numpy()
    centroid_a, centroid_b = (a * bins).sum(0) / a.sum(0), (b * bins).sum(0) / b.sum(0)
    gap = np.abs(centroid_a - centroid_b)
    assert np.median(gap) < 0.05 and gap.max() < 0.3
    # a phantom: sinograms and FBP images agree to the discretisation (a few per cent)
    x = blobs(n)
    ya, yb = ours(x), astra_op(x)
    assert float((ya - yb).norm() / ya.norm()) < 0.02
    ra, rb = fbp(ours, ya), fbp(astra_op, yb)
    assert float((ra - rb).norm() / ra.norm()) < 0.06


def test_fan_geometry_is_ours_and_fbp_takes_it() -> None:
    n = 64
    angles = np.arange(0, 360, 2.0)
    ours, astra_op = FanBeam(n, angles, 96.0, 172.8), AstraFanBeam(n, angles, 96.0, 172.8)
    assert (astra_op.n_det, astra_op.det_spacing) == (ours.n_det, ours.det_spacing)
    x = blobs(n)
    ya, yb = ours(x), astra_op(x)
    assert float((ya - yb).norm() / ya.norm()) < 0.03
    ra, rb = fan_fbp(ours, ya), fan_fbp(astra_op, yb)
    assert float((ra - rb).norm() / ra.norm()) < 0.06
    assert float((rb - x).norm() / x.norm()) < 0.15


def test_autograd_flows_through_both() -> None:
    op = AstraFanBeam(16, np.arange(0, 360, 30.0), 24.0, 40.0)
    x = torch.rand((2, 1, 16, 16), dtype=torch.float64, requires_grad=True)
    y = op(x)
    assert y.dtype == torch.float64 and y.shape == (2, 1, op.n_det, 12)
    target = torch.rand_like(y)
    (grad,) = torch.autograd.grad(((y - target) ** 2).sum() / 2, x)
    torch.testing.assert_close(grad, op.adjoint(y.detach() - target), rtol=1e-6, atol=1e-6)
    yy = torch.rand_like(y, requires_grad=True)
    (grad_y,) = torch.autograd.grad(op.adjoint(yy).sum(), yy)
    torch.testing.assert_close(grad_y, op(torch.ones_like(x)), rtol=1e-6, atol=1e-6)


def test_bad_input_is_refused_in_one_line(monkeypatch) -> None:
    with pytest.raises(ConfigError, match="no 'arc' detector"):
        AstraFanBeam(16, [0.0], 24.0, 40.0, detector="arc")
    with pytest.raises(ConfigError, match="unknown ASTRA parallel-beam projector"):
        AstraParallelBeam(16, [0.0], projector="cuda")
    op = AstraParallelBeam(16, [0.0, 45.0, 90.0])
    with pytest.raises(ShapeError, match="3 angles"):
        op.adjoint(torch.zeros(1, 1, op.n_det, 5))
    with pytest.raises(ShapeError, match="expected"):
        op(torch.zeros(1, 1, 16, 15))
    monkeypatch.setitem(sys.modules, "astra", None)  # as if the extra were not installed
    with pytest.raises(ConfigError, match=r"pip install 'gensci\[astra\]'"):
        import_astra()
