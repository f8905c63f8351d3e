"""The matrix-free parallel-beam projector equals the sparse Radon matrix and has its adjoint."""

import numpy as np
import pytest
import torch

from gensci.errors import ShapeError
from gensci.inverse import ParallelBeam, Radon


@pytest.mark.parametrize(("n", "views", "n_det", "chunk"), [(16, 12, None, 5), (21, 7, 25, None)])
def test_matches_the_sparse_matrix_and_its_transpose(n, views, n_det, chunk) -> None:
    gen = torch.Generator().manual_seed(0)
    angles = np.linspace(0, 90, views, endpoint=False) + 3.0
    free, sparse = ParallelBeam(n, angles, n_det=n_det, chunk=chunk), Radon(n, angles, n_det=n_det)
    x = torch.rand((2, 1, n, n), generator=gen, dtype=torch.float64)
    y = torch.rand((2, *free.out_shape), generator=gen, dtype=torch.float64)
    ax = free(x)
    assert ax.shape == (2, *sparse.out_shape)
    torch.testing.assert_close(ax, sparse(x), rtol=0, atol=1e-12 * float(ax.abs().max()))
    torch.testing.assert_close(free.adjoint(y), sparse.adjoint(y), rtol=0, atol=1e-11)
    # dot test: <Ax, y> = <x, A^T y> to rounding
    lhs, rhs = float((ax * y).sum()), float((x * free.adjoint(y)).sum())
    assert abs(lhs - rhs) <= 1e-12 * abs(lhs)


def test_float32_batched_and_differentiable() -> None:
    op = ParallelBeam(12, [0.0, 30.0, 60.0])
    x = torch.rand((3, 1, 12, 12), requires_grad=True)
    y = op(x)
    assert y.dtype == torch.float32 and y.shape == (3, 1, op.n_det, 3)
    target = torch.rand_like(y)
    (grad,) = torch.autograd.grad(((y - target) ** 2).sum() / 2, x)
    # the gradient of the data term is A^T (A x - y)
    torch.testing.assert_close(grad, op.adjoint(y.detach() - target), rtol=1e-5, atol=1e-5)
    with pytest.raises(ShapeError, match="expected"):
        op(torch.zeros(1, 1, 11, 12))
    with pytest.raises(ShapeError, match="3 angles"):
        op.adjoint(torch.zeros(1, 1, op.n_det, 4))
