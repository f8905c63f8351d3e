"""ASTRA Toolbox projectors behind `LinearOperator`: parallel beam and flat-detector fan beam.

Same geometry as `ParallelBeam` and `FanBeam` (angles in degrees, pixel units, image centred on
pixel (n // 2, n // 2), bin c at (c - n_det // 2) * det_spacing): the operators hand ASTRA its
vector geometries ('parallel_vec', 'fanflat_vec') built from ours and a volume window that puts
pixel (n // 2, n // 2) at the origin. The discretisation is ASTRA's own (ray-pixel weights of
the chosen projector), so values differ from ours by a few per cent, not by a geometry.

CPU tensors run ASTRA's CPU projectors ('linear' (Joseph), 'line' or 'strip' for parallel beam,
'line_fanflat' for fan beam), whose back-projection uses the same weights as the projection
(the dot test holds to float32 rounding, `tests/inverse/test_astra.py`). CUDA tensors run
ASTRA's 2-D CUDA algorithms FP_CUDA / BP_CUDA through host copies (never run here: no GPU); ASTRA's
CUDA back-projection is a pixel-driven kernel of its own, so it need not be the exact transpose
of its projection. ASTRA computes in float32:
float64 tensors are cast down and back. Batches run one image at a time. Arc detectors: ASTRA
2-D has none (use `FanBeam`).

Forward and adjoint are wrapped in a torch.autograd.Function whose backward is the other one,
so gradients flow through both. Needs the optional extra: pip install 'gensci[astra]'.
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np
import torch

from gensci.errors import ConfigError
from gensci.inverse.fan_beam import FanBeam
from gensci.inverse.operators import Projector
from gensci.inverse.radon import padded_size

PARALLEL_PROJECTORS = ("linear", "line", "strip")
FAN_PROJECTORS = ("line_fanflat",)


def import_astra() -> Any:
    """Return the astra module, or raise ConfigError naming the extra that installs it."""
    try:
        import astra
    except (ImportError, OSError) as exc:
        raise ConfigError(
            f"the ASTRA projectors need the ASTRA Toolbox: pip install 'gensci[astra]' ({exc})"
        ) from None
    return astra


class _AstraOperator(Projector):
    """Shared machinery: ASTRA objects per device kind, the batched apply, autograd."""

    n: int
    angles: np.ndarray
    n_det: int
    projector: str

    def _setup(self, device: torch.device | str) -> None:
        self.device = torch.device(device)
        self.in_shape = (1, self.n, self.n)
        self.out_shape = (1, self.n_det, len(self.angles))
        self._astra = import_astra()
        half = self.n // 2
        # columns: X = col - n // 2; rows: Y = n // 2 - row (row 0 at the window's top)
        self._vol_geom = self._astra.create_vol_geom(
            self.n, self.n, -half - 0.5, self.n - half - 0.5, half + 0.5 - self.n, half + 0.5
        )
        self._proj_geom = self._projection_geometry()
        self._ids: dict[str, int] = {}
        self._finalizer = weakref.finalize(self, _delete_projectors, self._astra, self._ids)

    @property
    def n_angles(self) -> int:
        return len(self.angles)

    def _projection_geometry(self) -> dict:
        raise NotImplementedError

    def _projector_id(self, cuda: bool) -> int:
        key = "cuda" if cuda else "cpu"
        if key not in self._ids:
            if cuda and not self._astra.use_cuda():
                raise ConfigError("this ASTRA build sees no CUDA device; use CPU tensors")
            kind = "cuda" if cuda else self.projector
            self._ids[key] = self._astra.create_projector(kind, self._proj_geom, self._vol_geom)
        return self._ids[key]

    def _run(self, transpose: bool, source: np.ndarray, target: np.ndarray, cuda: bool) -> None:
        """Write A source (or A^T source) into target; both C-contiguous float32 arrays."""
        astra = self._astra
        pid = self._projector_id(cuda)
        vol, sino = (target, source) if transpose else (source, target)
        vid = astra.data2d.link("-vol", self._vol_geom, vol)
        sid = astra.data2d.link("-sino", self._proj_geom, sino)
        try:
            name = ("BP" if transpose else "FP") + ("_CUDA" if cuda else "")
            cfg = astra.astra_dict(name)
            cfg["ProjectorId"] = pid
            cfg["ProjectionDataId"] = sid
            cfg["ReconstructionDataId" if transpose else "VolumeDataId"] = vid
            alg = astra.algorithm.create(cfg)
            try:
                astra.algorithm.run(alg)
            finally:
                astra.algorithm.delete(alg)
        finally:
            astra.data2d.delete([vid, sid])

    def _apply(self, t: torch.Tensor, transpose: bool) -> torch.Tensor:
        """Return A t (B, 1, n_det, n_angles) or A^T t (B, 1, n, n), no autograd."""
        cuda = t.device.type == "cuda"
        host = t.detach().to("cpu", torch.float32)
        b = host.shape[0]
        shape = (self.n, self.n) if transpose else (self.n_angles, self.n_det)
        out = np.zeros((b, *shape), dtype=np.float32)
        for i in range(b):
            # ASTRA's sinogram is (n_angles, n_det), ours (n_det, n_angles)
            src = host[i, 0].T if transpose else host[i, 0]
            self._run(transpose, np.ascontiguousarray(src.numpy()), out[i], cuda)
        result = torch.from_numpy(out)
        result = result[:, None] if transpose else result.transpose(1, 2)[:, None]
        return result.contiguous().to(device=t.device, dtype=t.dtype)


def _delete_projectors(astra: Any, ids: dict[str, int]) -> None:
    for pid in ids.values():
        astra.projector.delete(pid)
    ids.clear()


def _check_common(n: int, angles: np.ndarray) -> None:
    if n < 2:
        raise ConfigError(f"image size n={n} must be at least 2")
    if angles.size == 0 or not np.all(np.isfinite(angles)):
        raise ConfigError(f"angles must be a non-empty list of finite degrees, got {angles}")


class AstraParallelBeam(_AstraOperator):
    """ASTRA parallel-beam projector: image (B, 1, n, n) -> sinogram (B, 1, n_det, n_angles).

    The geometry of `ParallelBeam(n, angles, n_det, det_spacing)`; projector one of
    'linear' (Joseph's method, bilinear like ours), 'line' or 'strip'.
    """

    def __init__(
        self,
        n: int,
        angles: np.ndarray | list[float],
        n_det: int | None = None,
        det_spacing: float = 1.0,
        projector: str = "linear",
        device: torch.device | str = "cpu",
    ) -> None:
        angles_np = np.asarray(angles, dtype=np.float64).reshape(-1)
        _check_common(n, angles_np)
        if projector not in PARALLEL_PROJECTORS:
            raise ConfigError(
                f"unknown ASTRA parallel-beam projector {projector!r}; "
                f"choose one of {PARALLEL_PROJECTORS}"
            )
        self.n, self.angles, self.projector = int(n), angles_np, projector
        self.n_det = padded_size(self.n) if n_det is None else int(n_det)
        if self.n_det < 1 or det_spacing <= 0:
            raise ConfigError(f"n_det={self.n_det} and det_spacing={det_spacing} must be positive")
        self.det_spacing = float(det_spacing)
        self._setup(device)

    def _projection_geometry(self) -> dict:
        beta = np.deg2rad(self.angles)
        e = np.stack([np.sin(beta), -np.cos(beta)], axis=-1)  # ray direction
        u = np.stack([np.cos(beta), np.sin(beta)], axis=-1) * self.det_spacing  # one bin
        # ASTRA puts bin c at centre + (c - (n_det - 1) / 2) u; ours is at (c - n_det // 2) u
        centre = ((self.n_det - 1) / 2.0 - self.n_det // 2) * u
        vectors = np.concatenate([e, centre, u], axis=1)
        return self._astra.create_proj_geom("parallel_vec", self.n_det, vectors)


class AstraFanBeam(_AstraOperator):
    """ASTRA fan-beam projector, flat detector: image (B, 1, n, n) -> (B, 1, n_det, n_angles).

    The geometry of `FanBeam(n, angles, source_distance, detector_distance, n_det, det_spacing,
    detector='flat')` (same defaults); ASTRA's 'line_fanflat' projector (a ray's length through
    each pixel). `fan_fbp` accepts it.
    """

    def __init__(
        self,
        n: int,
        angles: np.ndarray | list[float],
        source_distance: float,
        detector_distance: float,
        n_det: int | None = None,
        det_spacing: float | None = None,
        detector: str = "flat",
        projector: str = "line_fanflat",
        device: torch.device | str = "cpu",
    ) -> None:
        if detector != "flat":
            raise ConfigError(
                f"ASTRA 2-D has no {detector!r} detector, only 'flat'; use FanBeam for 'arc'"
            )
        if projector not in FAN_PROJECTORS:
            raise ConfigError(
                f"unknown ASTRA fan-beam projector {projector!r}; choose one of {FAN_PROJECTORS}"
            )
        # the torch operator validates and fills in the geometry; it holds no arrays
        self._geometry = FanBeam(
            n, angles, source_distance, detector_distance, n_det, det_spacing, detector
        )
        g = self._geometry
        self.n, self.angles, self.projector = g.n, g.angles, projector
        self.n_det, self.det_spacing, self.detector = g.n_det, g.det_spacing, g.detector
        self.source_distance, self.detector_distance = g.source_distance, g.detector_distance
        self._setup(device)

    def _projection_geometry(self) -> dict:
        g = self._geometry
        source, bins = g.source_and_bins()
        beta = np.deg2rad(self.angles)
        u = np.stack([np.cos(beta), np.sin(beta)], axis=-1) * self.det_spacing
        # ASTRA's detector centre is the midpoint of its bins: bin (n_det - 1) / 2
        centre = bins[:, self.n_det // 2] + ((self.n_det - 1) / 2.0 - self.n_det // 2) * u
        vectors = np.concatenate([source, centre, u], axis=1)
        return self._astra.create_proj_geom("fanflat_vec", self.n_det, vectors)
