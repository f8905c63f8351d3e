"""The acquisition geometry of a CT sinogram and the projector that models it, for the CLI.

A `Geometry` is what a sinogram file stores beside its data (`gensci.tomography.io`): parallel
beam (the default, and what a file without geometry keys holds), or fan beam with the source at
`source_distance` R from the isocentre and the detector at `detector_distance` D from the source
(both in pixels, D > R > the image's half-diagonal), a flat or an arc detector, `n_det` bins
`det_spacing` apart. `operator` builds it with `gensci.inverse.projectors.make_projector`;
`resolve_projector` turns the CLI's --projector choice into one implementation:

- auto, parallel beam: the sparse `Radon` (what `gensci ct` always used: results unchanged);
- auto, fan beam: `make_projector`'s default (ASTRA when installed, else torch; torch for an
  arc detector, which ASTRA 2-D lacks);
- sparse | torch | astra: that one, refused by name where it cannot model the geometry.

`fbp_any` is the filtered back-projection of either geometry (`fbp`, or `fan_fbp` with Parker
short-scan weights when the views cover less than a full rotation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from gensci.errors import ConfigError

if TYPE_CHECKING:  # torch stays unimported until a projector is built (io.py imports this)
    import numpy as np
    import torch

    from gensci.inverse.operators import LinearOperator

GEOMETRIES = ("parallel", "fan")
DETECTORS = ("flat", "arc")
PROJECTOR_CHOICES = ("auto", "sparse", "torch", "astra")
# fan-beam defaults, in units of the image side n: source 2n from the isocentre, detector 4n from
# the source (magnification 2, about a clinical scanner's 570 mm / 1040 mm for a 300 mm field)
SOURCE_DISTANCE_PER_N = 2.0
DETECTOR_DISTANCE_PER_N = 4.0


def half_diagonal(n: int) -> float:
    """Return the radius (pixels) of the circle every n x n image pixel lies in, as the fan-beam
    projectors measure it: half the padded diagonal P = padded_size(n)."""
    from gensci.inverse.radon import padded_size

    return padded_size(n) / 2.0


@dataclass(frozen=True)
class Geometry:
    """Parallel or fan beam; None fields take the projector's defaults for the image size."""

    kind: str = "parallel"  # "parallel" | "fan"
    source_distance: float | None = None  # fan: source to isocentre, pixels
    detector_distance: float | None = None  # fan: source to detector, pixels
    detector: str = "flat"  # fan: "flat" | "arc"
    det_spacing: float | None = None  # bin spacing at the detector, pixels (arc: arc length)

    @classmethod
    def fan(
        cls,
        n: int,
        source_distance: float | None = None,
        detector_distance: float | None = None,
        detector: str = "flat",
    ) -> Geometry:
        """Return a fan-beam geometry for n x n images; distances default to 2n and 4n."""
        r = SOURCE_DISTANCE_PER_N * n if source_distance is None else float(source_distance)
        d = DETECTOR_DISTANCE_PER_N * n if detector_distance is None else float(detector_distance)
        return cls("fan", r, d, detector)

    @classmethod
    def from_options(
        cls,
        kind: str,
        n: int,
        source_distance: float | None = None,
        detector_distance: float | None = None,
        detector: str | None = None,
    ) -> Geometry:
        """Return the geometry the CLI's --geometry, --source-distance, --detector-distance and
        --detector ask for n x n images, checked (`check`); fan-only options with
        --geometry parallel are refused by name."""
        if kind not in GEOMETRIES:
            raise ConfigError(f"unknown --geometry {kind!r}; choose one of {GEOMETRIES}")
        if kind == "parallel":
            given = [name for name, v in (
                ("--source-distance", source_distance), ("--detector-distance", detector_distance),
                ("--detector", detector)) if v is not None]
            if given:
                raise ConfigError(f"{', '.join(given)}: fan-beam options; add --geometry fan")
            return cls()
        geometry = cls.fan(n, source_distance, detector_distance, detector or "flat")
        geometry.check(n)
        return geometry

    def check(self, n: int | None = None) -> None:
        """Raise ConfigError naming the first problem: an unknown name, a distance <= 0, a
        detector not beyond the source, a source inside the image (given its side n)."""
        if self.kind not in GEOMETRIES:
            raise ConfigError(f"unknown --geometry {self.kind!r}; choose one of {GEOMETRIES}")
        if self.det_spacing is not None and not (
            math.isfinite(self.det_spacing) and self.det_spacing > 0
        ):
            raise ConfigError(f"detector spacing {self.det_spacing} must be > 0")
        if self.kind == "parallel":
            if self.source_distance is not None or self.detector_distance is not None:
                raise ConfigError("a parallel-beam geometry takes no source or detector distance")
            if self.detector != "flat":
                raise ConfigError(f"a parallel-beam geometry has a flat detector, not {self.detector!r}")
            return
        if self.detector not in DETECTORS:
            raise ConfigError(f"unknown --detector {self.detector!r}; choose one of {DETECTORS}")
        r, d = self.source_distance, self.detector_distance
        if r is None or d is None:
            raise ConfigError("a fan-beam geometry needs --source-distance and --detector-distance")
        for name, value in (("--source-distance", r), ("--detector-distance", d)):
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} {value:g} must be a positive number of pixels")
        if not d > r:
            raise ConfigError(
                f"--detector-distance {d:g} (source to detector) must exceed --source-distance "
                f"{r:g} (source to isocentre)"
            )
        if n is not None and not r > half_diagonal(n):
            raise ConfigError(
                f"--source-distance {r:g} must exceed the image's half-diagonal "
                f"{half_diagonal(n):g} pixels (n={n}): the source would sit inside the image"
            )

    def default_n_det(self, n: int) -> int:
        """Return the detector count the projectors use by default for n x n images."""
        if self.kind == "parallel":
            from gensci.inverse.radon import padded_size

            return padded_size(n)
        from gensci.inverse.fan_beam import default_fan_detector

        assert self.source_distance is not None and self.detector_distance is not None
        return default_fan_detector(n, self.source_distance, self.detector_distance,
                                    self.detector)[0]

    def spacing(self) -> float:
        """Return the bin spacing the projectors use (the default when None)."""
        if self.det_spacing is not None:
            return self.det_spacing
        if self.kind == "parallel":
            return 1.0
        assert self.source_distance is not None and self.detector_distance is not None
        return self.detector_distance / self.source_distance  # one pixel at the isocentre

    def describe(self) -> str:
        """Return one line such as 'fan beam (flat detector, source 64, detector 128 px)'."""
        if self.kind == "parallel":
            return "parallel beam"
        return (
            f"fan beam ({self.detector} detector, source-isocentre {self.source_distance:g} px, "
            f"source-detector {self.detector_distance:g} px)"
        )

    def operator(
        self,
        n: int,
        angles: np.ndarray,
        projector: str,
        n_det: int | None = None,
        device: torch.device | str = "cpu",
    ) -> LinearOperator:
        """Return the projector (`make_projector`) of this geometry for n x n images."""
        from gensci.inverse.projectors import make_projector

        self.check(n)
        fan = self.kind == "fan"
        return make_projector(
            n, angles, geometry=self.kind, projector=projector, n_det=n_det,
            det_spacing=self.det_spacing, source_distance=self.source_distance if fan else None,
            detector_distance=self.detector_distance if fan else None, detector=self.detector,
            device=device,
        )  # fmt: skip


def resolve_projector(choice: str, geometry: Geometry, n: int) -> str:
    """Return the implementation (sparse | torch | astra) for the CLI's --projector `choice`
    (auto: see the module doc); ConfigError names a choice that cannot model the geometry."""
    from gensci.inverse.projectors import astra_available, default_projector

    if choice not in PROJECTOR_CHOICES:
        raise ConfigError(f"unknown --projector {choice!r}; choose one of {PROJECTOR_CHOICES}")
    if choice == "auto":
        if geometry.kind == "parallel":
            return "sparse"
        if geometry.detector == "arc":
            return "torch"
        chosen = default_projector(n)
        return "torch" if chosen == "sparse" else chosen
    if geometry.kind == "fan" and choice == "sparse":
        raise ConfigError(
            "--projector sparse is parallel beam only; use torch or astra (or auto) for fan beam"
        )
    if choice == "astra" and geometry.detector == "arc":
        raise ConfigError(
            "--projector astra has only the flat detector; use --projector torch (or auto) for "
            "--detector arc"
        )
    if choice == "astra" and not astra_available():
        raise ConfigError("--projector astra needs the ASTRA Toolbox: pip install 'gensci[astra]'")
    return choice


def check_fbp(op: LinearOperator) -> None:
    """Raise ConfigError (one line) if FBP cannot invert op's views: fan-beam views that cover
    neither 360 degrees nor 180 + the fan angle (checked before any work or output)."""
    if getattr(op, "source_distance", None) is None:
        return
    from gensci.inverse.fan_beam import fan_scan_weights

    try:
        fan_scan_weights(op)
    except ConfigError as exc:
        raise ConfigError(f"fan-beam FBP: {exc}; --method tv takes any span") from None


def fbp_any(op: LinearOperator, y: torch.Tensor, filter_name: str = "ramlak") -> torch.Tensor:
    """Return the FBP image of y for a parallel-beam (`fbp`) or fan-beam (`fan_fbp`) projector.

    Fan beam: a full scan weights each ray 1/2, fewer views than 360 degrees use Parker's
    short-scan weights, and a span under 180 degrees + the fan angle is refused by name
    (`check_fbp`: FBP cannot invert it; use --method tv).
    """
    from gensci.inverse.fbp import ParallelProjector, fbp

    if getattr(op, "source_distance", None) is not None:
        from gensci.inverse.fan_beam import fan_fbp

        check_fbp(op)
        return fan_fbp(op, y, filter_name)
    if not (hasattr(op, "n_det") and hasattr(op, "angles")):
        raise ConfigError(f"FBP needs a parallel- or fan-beam projector, not {type(op).__name__}")
    return fbp(cast(ParallelProjector, op), y, filter_name)
