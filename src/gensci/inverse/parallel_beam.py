"""Matrix-free parallel-beam Radon transform: the geometry of `radon.Radon`, no stored matrix.

Each view samples the image along its rays with bilinear interpolation (torch's grid_sample,
zeros outside the image) and sums along each ray, exactly the weights `Radon` stores; the adjoint
is the gradient of that map (grid_sample's backward scatters the same weights), so it is the
exact transpose, and memory is O(image + sinogram + one chunk of views' sample grid). Views are
processed `chunk` at a time to bound the grid's memory.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from gensci.errors import ConfigError, ShapeError
from gensci.inverse.operators import LinearOperator
from gensci.inverse.radon import padded_size


class ParallelBeam(LinearOperator):
    """Parallel-beam projector: image (B, 1, n, n) -> sinogram (B, 1, n_det, n_angles).

    Same geometry and values as `Radon(n, angles, n_det, det_spacing)` (skimage's
    `radon(circle=False)`); `chunk` views share one sample grid (default: about 16 M samples).
    """

    def __init__(
        self,
        n: int,
        angles: np.ndarray | list[float],
        n_det: int | None = None,
        det_spacing: float = 1.0,
        device: torch.device | str = "cpu",
        chunk: int | None = None,
    ) -> None:
        angles_np = np.asarray(angles, dtype=np.float64).reshape(-1)
        if n < 2:
            raise ConfigError(f"image size n={n} must be at least 2")
        if angles_np.size == 0 or not np.all(np.isfinite(angles_np)):
            raise ConfigError(f"angles must be a non-empty list of finite degrees, got {angles_np}")
        self.n = int(n)
        self.angles = angles_np
        self.p = padded_size(self.n)
        self.n_det = self.p if n_det is None else int(n_det)
        if self.n_det < 1 or det_spacing <= 0:
            raise ConfigError(f"n_det={self.n_det} and det_spacing={det_spacing} must be positive")
        self.det_spacing = float(det_spacing)
        self.device = torch.device(device)
        per_view = self.n_det * self.p
        self.chunk = int(chunk) if chunk else max(1, (16 * 2**20) // per_view)
        self.in_shape = (1, self.n, self.n)
        self.out_shape = (1, self.n_det, len(self.angles))

    @property
    def n_angles(self) -> int:
        return len(self.angles)

    def _grid(self, start: int, stop: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """Return the sample points of views start..stop-1 as grid_sample's grid
        (1, views * n_det, P, 2), normalised so that -1 and 1 are the centres of the edge pixels."""
        centre = self.p // 2
        origin = centre - (centre - self.n // 2)  # the image's own index of the rotation centre
        theta = torch.deg2rad(torch.as_tensor(self.angles[start:stop], dtype=torch.float64))
        cos, sin = theta.cos()[:, None, None], theta.sin()[:, None, None]
        s = (torch.arange(self.n_det, dtype=torch.float64) - self.n_det // 2) * self.det_spacing
        t = torch.arange(self.p, dtype=torch.float64) - centre
        s, t = s[None, :, None], t[None, None, :]
        x = origin + cos * s + sin * t  # column index, (views, n_det, P)
        y = origin - sin * s + cos * t  # row index
        scale = 2.0 / (self.n - 1)
        grid = torch.stack((x * scale - 1.0, y * scale - 1.0), dim=-1)
        return grid.reshape(1, -1, self.p, 2).to(dtype=dtype, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the sinogram A x: (B, 1, n_det, n_angles) of x: (B, 1, n, n)."""
        if x.dim() != 4 or tuple(x.shape[1:]) != self.in_shape:
            raise ShapeError(
                f"image has shape {tuple(x.shape)}, expected (B, 1, {self.n}, {self.n})"
            )
        views = []
        for start in range(0, self.n_angles, self.chunk):
            stop = min(start + self.chunk, self.n_angles)
            grid = self._grid(start, stop, x.dtype, x.device).expand(x.shape[0], -1, -1, -1)
            samples = F.grid_sample(
                x, grid, mode="bilinear", padding_mode="zeros", align_corners=True
            )  # (B, 1, views * n_det, P)
            ray_sums = samples.sum(-1).reshape(x.shape[0], 1, stop - start, self.n_det)
            views.append(ray_sums.transpose(2, 3))
        return torch.cat(views, dim=3)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """Return the back-projection A^T y: (B, 1, n, n) of y: (B, 1, n_det, n_angles)."""
        if y.dim() != 4 or tuple(y.shape[1:]) != self.out_shape:
            raise ShapeError(
                f"sinogram has shape {tuple(y.shape)}, expected (B, 1, {self.n_det}, "
                f"{self.n_angles}) for {self.n_angles} angles and {self.n_det} detector bins"
            )
        graph = torch.is_grad_enabled() and y.requires_grad
        with torch.enable_grad():
            x = torch.zeros((y.shape[0], *self.in_shape), dtype=y.dtype, device=y.device,
                            requires_grad=True)
            (back,) = torch.autograd.grad(self.forward(x), x, grad_outputs=y, create_graph=graph)
        return back

