"""Parallel-beam Radon transform as a sparse system matrix, with its exact transpose as adjoint.

Geometry (the one of skimage.transform.radon with circle=False): an n x n image is placed in the
centre of a P x P square, P = n + ceil(sqrt(2) n - n) (the padded diagonal), rotated by each angle
theta, and summed along columns. The ray through detector bin c at angle theta samples the image at

    x = centre + cos(theta) s + sin(theta) t,   y = centre - sin(theta) s + cos(theta) t,

s = (c - n_det // 2) * det_spacing, t = -P//2, ..., P - 1 - P//2 (one sample per pixel), with
bilinear interpolation. The weights of every (ray, pixel) pair form a sparse matrix A, built once
per geometry; `forward` is A x and `adjoint` is A^T y, so <Ax, y> = <x, A^T y> holds to rounding.
Sinograms are laid out (B, 1, n_det, n_angles), as skimage and DeepInverse lay them out.
"""

from __future__ import annotations

import math
import warnings
from functools import lru_cache

import numpy as np
import torch

from gensci.budget import check_memory, radon_bytes
from gensci.errors import ConfigError, ResourceError, ShapeError
from gensci.inverse.operators import LinearOperator


def padded_size(n: int) -> int:
    """Return P, the side of the square that holds the n x n image at every rotation."""
    return n + int(math.ceil(math.sqrt(2.0) * n - n))


def parse_angles(spec: str) -> np.ndarray:
    """Return angles in degrees from 'start:stop:count' (count views evenly in [start, stop)).

    Also accepts a comma-separated list of angles, e.g. '0,45,90'.
    """
    text = spec.strip()
    try:
        if ":" in text:
            parts = text.split(":")
            if len(parts) != 3:
                raise ValueError
            start, stop, count = float(parts[0]), float(parts[1]), int(parts[2])
            if count < 1 or stop <= start:
                raise ValueError
            check_memory(
                32.0 * count, f"the angle spec {spec!r} ({count} views)",
                "lower the view count", "the list of angles",
            )
            return start + (stop - start) * np.arange(count) / count
        values = np.array([float(v) for v in text.split(",") if v.strip()], dtype=np.float64)
        if values.size == 0:
            raise ValueError
        return values
    except ResourceError:
        raise
    except ValueError:
        raise ConfigError(
            f"angle spec {spec!r} is not 'start:stop:count' (stop > start, count >= 1, "
            "e.g. '0:90:60') nor a comma-separated list of degrees"
        ) from None


@lru_cache(maxsize=8)
def _system_matrix(
    n: int, angles: tuple[float, ...], n_det: int, det_spacing: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (rows, cols, weights) of the Radon system matrix (duplicates not yet summed)."""
    p = padded_size(n)
    centre = p // 2
    offset = centre - n // 2  # padding before the image, as skimage pads it
    c = np.arange(n_det, dtype=np.float64)
    s = (c - n_det // 2) * det_spacing
    t = np.arange(p, dtype=np.float64) - centre
    n_angles = len(angles)
    rows, cols, vals = [], [], []
    ray_of_bin = np.arange(n_det)[:, None] * n_angles
    for a, theta in enumerate(np.deg2rad(np.asarray(angles, dtype=np.float64))):
        cos_a, sin_a = math.cos(theta), math.sin(theta)
        x = (centre - offset) + cos_a * s[:, None] + sin_a * t[None, :]  # (n_det, P)
        y = (centre - offset) - sin_a * s[:, None] + cos_a * t[None, :]
        x0, y0 = np.floor(x), np.floor(y)
        fx, fy = x - x0, y - y0
        x0i, y0i = x0.astype(np.int64), y0.astype(np.int64)
        ray = np.broadcast_to(ray_of_bin + a, x.shape)
        for dy, dx, w in (
            (0, 0, (1 - fy) * (1 - fx)),
            (0, 1, (1 - fy) * fx),
            (1, 0, fy * (1 - fx)),
            (1, 1, fy * fx),
        ):
            xi, yi = x0i + dx, y0i + dy
            keep = (xi >= 0) & (xi < n) & (yi >= 0) & (yi < n) & (w > 0)
            rows.append(ray[keep])
            cols.append(yi[keep] * n + xi[keep])
            vals.append(w[keep])
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)


def _csr_pair(
    rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, shape: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (A, A^T) as float64 torch CSR matrices with duplicate (row, col) entries summed.

    scipy's compiled COO -> CSR conversion sums and sorts in one pass; torch's coalesce does the
    same several times slower, and set-up time is what a user waits for on every call.
    """
    import scipy.sparse as sp

    def to_torch(m: sp.csr_matrix) -> torch.Tensor:
        m.sum_duplicates()
        m.sort_indices()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            return torch.sparse_csr_tensor(
                torch.from_numpy(m.indptr.astype(np.int64)),
                torch.from_numpy(m.indices.astype(np.int64)),
                torch.from_numpy(m.data.astype(np.float64)), size=m.shape,
                check_invariants=False,  # scipy's canonical CSR: sorted, no duplicates
            )

    a = sp.coo_matrix((vals, (rows, cols)), shape=shape).tocsr()
    return to_torch(a), to_torch(a.T.tocsr())


class _SparseApply(torch.autograd.Function):
    """y = M x with dy/dx^T = M^T: the gradient uses the stored transpose, never autograd of M."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, mat: torch.Tensor, mat_t: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.mat_t = mat_t
        return torch.sparse.mm(mat, x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return torch.sparse.mm(ctx.mat_t, grad), None, None


class Radon(LinearOperator):
    """Parallel-beam Radon transform: image (B, 1, n, n) -> sinogram (B, 1, n_det, n_angles).

    `angles` in degrees; `n_det` defaults to the padded size P (skimage's detector count);
    `det_spacing` in pixels. Batched, differentiable (autograd uses the exact adjoint), any device.
    """

    def __init__(
        self,
        n: int,
        angles: np.ndarray | list[float] | torch.Tensor,
        n_det: int | None = None,
        det_spacing: float = 1.0,
        device: torch.device | str = "cpu",
    ) -> None:
        angles_np = np.asarray(
            angles.detach().cpu().numpy() if isinstance(angles, torch.Tensor) else angles,
            dtype=np.float64,
        ).reshape(-1)
        if n < 2:
            raise ConfigError(f"image size n={n} must be at least 2")
        if angles_np.size == 0 or not np.all(np.isfinite(angles_np)):
            raise ConfigError(f"angles must be a non-empty list of finite degrees, got {angles_np}")
        self.n = int(n)
        self.angles = angles_np
        self.n_det = padded_size(n) if n_det is None else int(n_det)
        if self.n_det < 1 or det_spacing <= 0:
            raise ConfigError(f"n_det={self.n_det} and det_spacing={det_spacing} must be positive")
        self.det_spacing = float(det_spacing)
        self.device = torch.device(device)
        self.in_shape = (1, self.n, self.n)
        self.out_shape = (1, self.n_det, len(self.angles))
        self._mats: dict[tuple[torch.dtype, torch.device], tuple[torch.Tensor, torch.Tensor]] = {}
        self._base: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def n_angles(self) -> int:
        return len(self.angles)

    def _matrices(
        self, dtype: torch.dtype, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (A, A^T) as CSR tensors of the given dtype on the given device (cached)."""
        key = (dtype, device)
        if key not in self._mats:
            if self._base is None:
                views = self.n_angles
                check_memory(
                    radon_bytes(self.n, views, self.n_det, self.det_spacing),
                    f"a Radon operator for {self.n} x {self.n} images with {views} views",
                    "use a smaller image or fewer views", "the Radon system matrix",
                )
                rows, cols, vals = _system_matrix(
                    self.n, tuple(float(a) for a in self.angles), self.n_det, self.det_spacing
                )
                n_rays = self.n_det * self.n_angles
                self._base = _csr_pair(rows, cols, vals, (n_rays, self.n * self.n))
            a, at = self._base
            self._mats[key] = (a.to(dtype).to(device), at.to(dtype).to(device))
        return self._mats[key]

    def matrix(self, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Return A as a sparse CSR matrix (n_det * n_angles, n * n); rows are (bin, angle)."""
        return self._matrices(dtype, torch.device("cpu"))[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the sinogram A x: (B, 1, n_det, n_angles) of x: (B, 1, n, n)."""
        if x.dim() != 4 or tuple(x.shape[1:]) != self.in_shape:
            raise ShapeError(
                f"image has shape {tuple(x.shape)}, expected (B, 1, {self.n}, {self.n})"
            )
        a, at = self._matrices(x.dtype, x.device)
        flat = x.reshape(x.shape[0], -1).T.contiguous()
        y = _SparseApply.apply(flat, a, at)
        return y.T.reshape(x.shape[0], *self.out_shape)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """Return the back-projection A^T y: (B, 1, n, n) of y: (B, 1, n_det, n_angles)."""
        if y.dim() != 4 or tuple(y.shape[1:]) != self.out_shape:
            raise ShapeError(
                f"sinogram has shape {tuple(y.shape)}, expected (B, 1, {self.n_det}, "
                f"{self.n_angles}) for {self.n_angles} angles and {self.n_det} detector bins"
            )
        a, at = self._matrices(y.dtype, y.device)
        flat = y.reshape(y.shape[0], -1).T.contiguous()
        x = _SparseApply.apply(flat, at, a)
        return x.T.reshape(y.shape[0], *self.in_shape)
