import numpy as np
import pytest
import torch
from skimage.data import shepp_logan_phantom
from skimage.transform import iradon, resize

from gensci.errors import ConfigError
from gensci.inverse import (
    LinearOperator,
    Radon,
    fbp,
    pseudo_inverse,
    psnr,
    range_null_split,
    ssim,
    tv_pdhg,
)
from gensci.inverse.tv import tv_objective


@pytest.fixture(scope="module")
def phantom() -> torch.Tensor:
    img = resize(shepp_logan_phantom(), (32, 32), anti_aliasing=True)
    return torch.from_numpy(img)[None, None]


@pytest.mark.parametrize("name", ["ramlak", "shepp-logan", "hann"])
def test_fbp_matches_skimage_full_angle(phantom: torch.Tensor, name: str) -> None:
    theta = np.arange(64) * 180.0 / 64
    op = Radon(32, theta)
    y = op(phantom)
    ours = fbp(op, y, name)[0, 0].numpy()
    ref = iradon(
        y[0, 0].numpy(), theta, circle=False, output_size=32,
        filter_name="ramp" if name == "ramlak" else name,
    )
    # same filter and scale; back-projectors differ only in their interpolation
    assert np.abs(ours - ref).mean() < 0.02
    assert psnr(ours, phantom)[0] > 20.0


def test_fbp_rejects_unknown_filter(phantom: torch.Tensor) -> None:
    op = Radon(32, [0.0, 90.0])
    with pytest.raises(ConfigError, match="unknown FBP filter"):
        fbp(op, op(phantom), "cosine")


def test_tv_pdhg_converges_and_beats_fbp(phantom: torch.Tensor) -> None:
    op = Radon(32, np.arange(30) * 3.0)  # [0, 90): a missing wedge
    y_clean = op(phantom)
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(y_clean.shape, generator=gen, dtype=y_clean.dtype)
    y = y_clean + 0.01 * y_clean.abs().max() * noise
    res = tv_pdhg(op, y, lam=0.1, iterations=300, log_every=25)
    assert (res.x >= 0).all()
    obj = res.objective
    # the objective falls and settles: the last quarter changes < 0.5 %
    assert obj[-1] < 0.05 * obj[0]
    assert abs(obj[-4] - obj[-1]) / obj[-1] < 5e-3
    longer = tv_pdhg(op, y, lam=0.1, iterations=1200)
    assert tv_objective(op, longer.x, y, 0.1) <= obj[-1] * (1 + 1e-6)
    assert abs(tv_objective(op, longer.x, y, 0.1) - obj[-1]) / obj[-1] < 1e-2
    assert psnr(res.x, phantom)[0] > psnr(fbp(op, y), phantom)[0] + 2.0


def test_range_null_split(phantom: torch.Tensor) -> None:
    op = Radon(32, np.arange(20) * 4.5)  # [0, 90) with 20 views: a large null space
    x_range, x_null = range_null_split(op, phantom, iterations=300, tol=1e-8)
    torch.testing.assert_close(x_range + x_null, phantom)
    # the measurements do not see the null part, and the two parts are (numerically) orthogonal:
    # CG resolves small singular values slowly, so orthogonality holds to the CG's accuracy
    assert op(x_null).norm() < 1e-3 * op(phantom).norm()
    assert abs(float((x_range * x_null).sum())) < 1e-2 * float(phantom.pow(2).sum())
    assert x_null.norm() > 0.05 * phantom.norm()
    # projecting again changes nothing (idempotent)
    again, _ = range_null_split(op, x_range, iterations=300, tol=1e-8)
    assert (again - x_range).norm() < 5e-2 * x_range.norm()
    # A^+ (A x) is the range part
    pinv = pseudo_inverse(op, op(phantom), iterations=300, tol=1e-8)
    assert (pinv - x_range).norm() < 5e-2 * x_range.norm()


def test_metrics() -> None:
    gen = np.random.default_rng(0)
    truth = gen.random((2, 16, 16))
    assert np.isinf(psnr(truth, truth)).all()
    noisy = truth + 0.1
    assert psnr(noisy, truth)[0] == pytest.approx(20.0, abs=0.5)  # clipping lowers the error a bit
    assert (ssim(truth, truth) == 1.0).all()
    assert (ssim(np.clip(truth + gen.normal(0, 0.3, truth.shape), 0, 1), truth) < 0.9).all()


class _Identity(LinearOperator):
    """A = I on (1, H, W) images: TV-regularised reconstruction is TV denoising."""

    def __init__(self, height: int, width: int) -> None:
        self.in_shape = self.out_shape = (1, height, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return y


def test_tv_pdhg_solves_each_image_of_a_batch_alone(phantom: torch.Tensor) -> None:
    """The isotropic TV couples the two gradient components of a pixel, never two images."""
    op = Radon(32, np.arange(20) * 9.0)
    y = op(torch.cat([phantom, phantom.flip(-1).transpose(-1, -2)]))
    norm = op.norm()
    both = tv_pdhg(op, y, lam=0.5, iterations=30, op_norm=norm).x
    each = torch.cat([tv_pdhg(op, y[i : i + 1], lam=0.5, iterations=30, op_norm=norm).x
                      for i in range(2)])
    torch.testing.assert_close(both, each, rtol=1e-9, atol=1e-9)


def test_tv_pdhg_denoises_a_non_square_image_and_logs_as_asked() -> None:
    gen = torch.Generator().manual_seed(0)
    clean = torch.zeros((1, 1, 6, 10), dtype=torch.float64)
    clean[..., 2:5, 3:8] = 1.0
    noisy = clean + 0.2 * torch.randn(clean.shape, generator=gen, dtype=torch.float64)
    res = tv_pdhg(_Identity(6, 10), noisy, lam=0.1, iterations=10, log_every=4)
    assert len(res.objective) == 4  # iterations 0, 4, 8 and the last
    res = tv_pdhg(_Identity(6, 10), noisy, lam=0.1, iterations=300)
    assert res.x.shape == clean.shape
    assert (res.x - clean).norm() < 0.6 * (noisy - clean).norm()
    one = tv_pdhg(_Identity(6, 10), noisy, lam=0.0, iterations=1, log_every=1)
    assert len(one.objective) == 1
    # lam = 0: least squares with x >= 0 is the data clipped at zero, reached in a few steps
    torch.testing.assert_close(
        tv_pdhg(_Identity(6, 10), noisy, lam=0.0, iterations=200).x, noisy.clamp_min(0.0),
        rtol=0, atol=1e-6,
    )
    for bad in ({"lam": -0.1}, {"iterations": 0}):
        with pytest.raises(ConfigError):
            tv_pdhg(_Identity(6, 10), noisy, **{"lam": 0.3, "iterations": 10, **bad})
