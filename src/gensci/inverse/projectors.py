"""One place that builds a CT projector: geometry (parallel | fan) x implementation
(sparse | torch | astra), all behind `LinearOperator` with the same sinogram layout.

    make_projector(n, angles, geometry="fan", projector="astra", source_distance=..., ...)

- sparse: `Radon`, a stored sparse matrix (parallel beam only): the fastest application at
  64-128 once built, but its set-up and memory grow as n^3 (refused at 512/360);
- torch: `ParallelBeam` / `FanBeam` (grid_sample): no set-up, O(image + sinogram) memory, any
  torch device, float64 when asked; several times slower per application than ASTRA on CPU;
- astra: `AstraParallelBeam` / `AstraFanBeam` (the optional extra gensci[astra]): ASTRA's CPU
  projectors, the fastest measured at 256 and 512 (docs/tomography.md), float32 only, flat
  detector only.

`default_projector` picks by those measurements: astra when installed, else sparse up to
n = 128 and torch above.
"""

from __future__ import annotations

import numpy as np
import torch

from gensci.errors import ConfigError
from gensci.inverse.operators import LinearOperator

PROJECTORS = ("sparse", "torch", "astra")
GEOMETRIES = ("parallel", "fan")


def astra_available() -> bool:
    """Return whether the ASTRA Toolbox imports."""
    try:
        import astra  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


def default_projector(n: int) -> str:
    """Return the measured-fastest projector available for n x n images (see the module doc)."""
    if astra_available():
        return "astra"
    return "sparse" if n <= 128 else "torch"


def make_projector(
    n: int,
    angles: np.ndarray | list[float],
    geometry: str = "parallel",
    projector: str | None = None,
    n_det: int | None = None,
    det_spacing: float | None = None,
    source_distance: float | None = None,
    detector_distance: float | None = None,
    detector: str = "flat",
    device: torch.device | str = "cpu",
) -> LinearOperator:
    """Return the projector image (B, 1, n, n) -> sinogram (B, 1, n_det, n_angles).

    angles in degrees; fan beam needs source_distance and detector_distance (pixels);
    projector None picks `default_projector(n)` (torch for an arc detector, which only it has).
    """
    if geometry not in GEOMETRIES:
        raise ConfigError(f"unknown geometry {geometry!r}; choose one of {GEOMETRIES}")
    if projector is None:
        projector = "torch" if detector == "arc" else default_projector(n)
        if geometry == "fan" and projector == "sparse":
            projector = "torch"
    if projector not in PROJECTORS:
        raise ConfigError(f"unknown projector {projector!r}; choose one of {PROJECTORS}")
    if geometry == "parallel":
        if detector != "flat" or source_distance is not None or detector_distance is not None:
            raise ConfigError(
                "a parallel-beam geometry takes no source/detector distances nor an arc detector"
            )
        spacing = 1.0 if det_spacing is None else det_spacing
        if projector == "sparse":
            from gensci.inverse.radon import Radon

            return Radon(n, angles, n_det=n_det, det_spacing=spacing, device=device)
        if projector == "torch":
            from gensci.inverse.parallel_beam import ParallelBeam

            return ParallelBeam(n, angles, n_det=n_det, det_spacing=spacing, device=device)
        from gensci.inverse.astra import AstraParallelBeam

        return AstraParallelBeam(n, angles, n_det=n_det, det_spacing=spacing, device=device)
    if source_distance is None or detector_distance is None:
        raise ConfigError("a fan-beam geometry needs source_distance and detector_distance")
    if projector == "sparse":
        raise ConfigError("the sparse projector is parallel beam only; use torch or astra")
    if projector == "torch":
        from gensci.inverse.fan_beam import FanBeam

        return FanBeam(
            n, angles, source_distance, detector_distance, n_det=n_det,
            det_spacing=det_spacing, detector=detector, device=device,
        )  # fmt: skip
    from gensci.inverse.astra import AstraFanBeam

    return AstraFanBeam(
        n, angles, source_distance, detector_distance, n_det=n_det, det_spacing=det_spacing,
        detector=detector, device=device,
    )  # fmt: skip
