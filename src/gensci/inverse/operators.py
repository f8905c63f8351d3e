"""Linear operators with an exact adjoint: the physics object every solver and sampler takes.

An operator maps x: (B, *in_shape) to y: (B, *out_shape); `adjoint` maps back. Solvers never see a
raw matrix, only `A(x)`, `A.adjoint(y)` and `A.norm()`.
"""

from __future__ import annotations

from typing import Any

import torch

from gensci.errors import ShapeError


class LinearOperator:
    """A linear map A: (B, *in_shape) -> (B, *out_shape) with its exact adjoint A^T."""

    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    device: torch.device = torch.device("cpu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return A x: (B, *out_shape)."""
        raise NotImplementedError

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """Return A^T y: (B, *in_shape)."""
        raise NotImplementedError

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)

    @property
    def shape(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Return (out_shape, in_shape), as a matrix's (rows, columns)."""
        return self.out_shape, self.in_shape

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        """Return A^T A x: (B, *in_shape)."""
        return self.adjoint(self.forward(x))

    def norm(
        self, iterations: int = 50, seed: int = 0, dtype: torch.dtype = torch.float64
    ) -> float:
        """Return the operator norm ||A||_2 estimated by power iteration on A^T A."""
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn((1, *self.in_shape), generator=gen, dtype=dtype).to(self.device)
        x = x / x.norm()
        lam = 0.0
        for _ in range(iterations):
            z = self.normal(x)
            lam = float(z.norm())
            if lam == 0.0:
                return 0.0
            x = z / lam
        return lam**0.5

    def check_input(self, x: torch.Tensor, name: str = "x") -> None:
        """Raise ShapeError unless x has shape (B, *in_shape)."""
        if tuple(x.shape[1:]) != self.in_shape:
            raise ShapeError(
                f"{name} has shape {tuple(x.shape)}, "
                f"expected (B, {', '.join(map(str, self.in_shape))})"
            )

    def check_output(self, y: torch.Tensor, name: str = "y") -> None:
        """Raise ShapeError unless y has shape (B, *out_shape)."""
        if tuple(y.shape[1:]) != self.out_shape:
            raise ShapeError(
                f"{name} has shape {tuple(y.shape)}, "
                f"expected (B, {', '.join(map(str, self.out_shape))})"
            )


class Projector(LinearOperator):
    """A tomographic projector image (B, 1, n, n) -> sinogram (B, 1, n_det, n_angles) given by
    `_apply(t, transpose)` (A t, or A^T t when transpose); forward and adjoint check the shapes
    and run it under one autograd Function whose gradient is the other direction: the exact
    transpose both ways."""

    n: int
    n_det: int

    @property
    def n_angles(self) -> int:
        return int(self.out_shape[-1])

    def _apply(self, t: torch.Tensor, transpose: bool) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the sinogram A x: (B, 1, n_det, n_angles) of x: (B, 1, n, n)."""
        if x.dim() != 4 or tuple(x.shape[1:]) != self.in_shape:
            raise ShapeError(
                f"image has shape {tuple(x.shape)}, expected (B, 1, {self.n}, {self.n})"
            )
        return _ProjectorApply.apply(x, self, False)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """Return the back-projection A^T y: (B, 1, n, n) of y: (B, 1, n_det, n_angles)."""
        check_sinogram(self, y)
        return _ProjectorApply.apply(y, self, True)


def check_sinogram(op: Any, y: torch.Tensor) -> None:
    """Raise ShapeError unless y is (B, 1, n_det, n_angles) for op's geometry (one clear line)."""
    if y.dim() != 4 or tuple(y.shape[1:]) != op.out_shape:
        raise ShapeError(
            f"sinogram has shape {tuple(y.shape)}, expected (B, 1, {op.n_det}, "
            f"{op.n_angles}) for {op.n_angles} angles and {op.n_det} detector bins"
        )


class _ProjectorApply(torch.autograd.Function):
    """y = A x (or A^T y) whose gradient is the other one."""

    @staticmethod
    def forward(ctx: Any, t: torch.Tensor, op: Projector, transpose: bool) -> torch.Tensor:
        ctx.op, ctx.transpose = op, transpose
        return op._apply(t, transpose)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        return _ProjectorApply.apply(grad.contiguous(), ctx.op, not ctx.transpose), None, None


def adjointness_error(
    op: LinearOperator, seed: int = 0, dtype: torch.dtype = torch.float64, batch: int = 2
) -> float:
    """Return |<Ax, y> - <x, A^T y>| / |<Ax, y>| for random x, y (the dot-product test)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((batch, *op.in_shape), generator=gen, dtype=dtype).to(op.device)
    y = torch.randn((batch, *op.out_shape), generator=gen, dtype=dtype).to(op.device)
    lhs = float((op.forward(x) * y).sum())
    rhs = float((x * op.adjoint(y)).sum())
    return abs(lhs - rhs) / max(abs(lhs), 1e-300)


class FiniteDifference(LinearOperator):
    """Forward differences with a zero last difference: x: (B, 1, H, W) -> (B, 2, H, W).

    ||grad||^2 <= 8, the bound used by total-variation solvers (Chambolle 2004).
    """

    def __init__(self, height: int, width: int, device: torch.device | str = "cpu") -> None:
        self.in_shape = (1, height, width)
        self.out_shape = (2, height, width)
        self.device = torch.device(device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dy = torch.zeros_like(x)
        dx = torch.zeros_like(x)
        dy[..., :-1, :] = x[..., 1:, :] - x[..., :-1, :]
        dx[..., :, :-1] = x[..., :, 1:] - x[..., :, :-1]
        return torch.cat([dy, dx], dim=1)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        # the negative divergence with the boundary terms that make it the exact transpose
        py, px = y[:, 0:1], y[:, 1:2]
        out = torch.zeros_like(py)
        out[..., :-1, :] -= py[..., :-1, :]
        out[..., 1:, :] += py[..., :-1, :]
        out[..., :, :-1] -= px[..., :, :-1]
        out[..., :, 1:] += px[..., :, :-1]
        return out
