"""A DICOM series (a folder of single-slice files) as one volume in Hounsfield units.

Slices are sorted by their position along the slice normal (ImagePositionPatient projected on
the cross product of ImageOrientationPatient's row and column directions); each slice's pixels go
through its own RescaleSlope / RescaleIntercept. Refused by name: files of more than one series,
slices of different sizes, orientations or pixel spacings, two slices at one position, and gaps
(a step more than 1.5 times the median step: missing slices).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gensci.errors import DataError, FormatError


@dataclass
class DicomSeries:
    """volume (S, H, W) in HU, sorted along the slice normal; spacing (slice step, row, column)
    in mm; the series' UID."""

    volume: np.ndarray
    spacing: tuple[float, float, float]
    series_uid: str


def read_dicom_series(folder: str | Path) -> DicomSeries:
    """Return the DICOM series in `folder` (every regular file in it must be a DICOM slice)."""
    import pydicom

    root = Path(folder)
    files = sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise DataError(f"DICOM folder {root} holds no files")
    slices = []
    for p in files:
        try:
            ds = pydicom.dcmread(str(p))
            pixels = np.asarray(ds.pixel_array, dtype=np.float64)
        except Exception as exc:  # pydicom raises its own types for a foreign or corrupt file
            raise FormatError(f"cannot read {p} as a DICOM slice: {exc}") from None
        slope = float(getattr(ds, "RescaleSlope", 1.0))
        intercept = float(getattr(ds, "RescaleIntercept", 0.0))
        try:
            orient = np.asarray(ds.ImageOrientationPatient, dtype=np.float64)
            position = np.asarray(ds.ImagePositionPatient, dtype=np.float64)
            spacing = tuple(float(v) for v in ds.PixelSpacing)
        except AttributeError as exc:
            raise FormatError(f"{p} lacks geometry ({exc}); cannot place it in a series") from None
        slices.append((p, str(getattr(ds, "SeriesInstanceUID", "")), orient, position, spacing,
                       pixels * slope + intercept))
    uids = sorted({s[1] for s in slices})
    if len(uids) > 1:
        raise DataError(f"DICOM folder {root} mixes {len(uids)} series ({', '.join(uids)}); "
                        "give one series per folder")
    first = slices[0]
    for p, _, orient, _, spacing, pixels in slices[1:]:
        if pixels.shape != first[5].shape:
            raise DataError(f"{p} is {pixels.shape} but {first[0]} is {first[5].shape}")
        if not np.allclose(orient, first[2], atol=1e-4):
            raise DataError(f"{p} has another orientation than {first[0]}")
        if not np.allclose(spacing, first[4], rtol=1e-4):
            raise DataError(f"{p} has pixel spacing {spacing}, {first[0]} has {first[4]}")
    normal = np.cross(first[2][:3], first[2][3:])
    depth = np.array([float(s[3] @ normal) for s in slices])
    order = np.argsort(depth)
    depth = depth[order]
    steps = np.diff(depth)
    if steps.size:
        if np.any(steps <= 1e-6):
            i = int(np.argmin(steps))
            raise DataError(f"{slices[order[i]][0]} and {slices[order[i + 1]][0]} lie at one "
                            "position: a duplicated slice or a mixed series")
        median = float(np.median(steps))
        gaps = np.flatnonzero(steps > 1.5 * median)
        if gaps.size:
            i = int(gaps[0])
            raise DataError(
                f"slices missing in {root}: a step of {steps[i]:.3g} mm after "
                f"{slices[order[i]][0].name} where the series steps by {median:.3g} mm"
            )
    step = float(np.median(steps)) if steps.size else float("nan")
    volume = np.stack([slices[i][5] for i in order])
    row, col = first[4][0], first[4][1]
    return DicomSeries(volume=volume, spacing=(step, row, col), series_uid=uids[0])
