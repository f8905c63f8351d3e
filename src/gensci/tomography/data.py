"""Anatomy slices for the CT prior: axial slices of the MNI152 T1 template, split by position.

Train on most axial slices; hold out one contiguous block (around the mid-brain slice z = 90 by
default) for evaluation, with a guard gap on each side so that no training slice is a 1 mm
neighbour of a held-out one. Each slice is padded to a square, resized to N x N and kept in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

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


def axial_slices(volume: np.ndarray, resolution: int) -> np.ndarray:
    """Return every axial slice of volume (X, Y, Z) as (Z, N, N), anterior up, in [0, 1]."""
    if volume.ndim != 3:
        raise ShapeError(f"expected a 3-D volume (X, Y, Z), got shape {volume.shape}")
    check_finite(volume, "volume")
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


def stack_slices(stack: np.ndarray, resolution: int) -> np.ndarray:
    """Return a stack of 2-D images (S, H, W) as (S, N, N), scaled by its max to [0, 1]."""
    if stack.ndim != 3:
        raise ShapeError(f"expected a stack of images (S, H, W), got shape {stack.shape}")
    check_finite(stack, "image stack")
    lo = float(stack.min())
    top = float(stack.max()) - lo
    if top <= 0:
        raise DataError(f"image stack is constant ({lo})")
    scaled = (stack - lo) / top
    return np.stack([square_resize(s, resolution) for s in scaled]).clip(0.0, 1.0)


def load_split(
    source: str,
    resolution: int,
    heldout_centre: int | None = None,
    n_heldout: int = 12,
    gap: int = 4,
) -> SliceSplit:
    """Return the train / held-out split of 'mni152' or of the user's file.

    A NIfTI file is a volume (X, Y, Z) cut into axial slices; a .npy / .npz holding (S, H, W) is a
    stack of slices. The held-out block is centred on `heldout_centre` (default: z = 90 for MNI152,
    the middle slice otherwise).
    """
    if source.lower() == "mni152":
        centre = 90 if heldout_centre is None else heldout_centre
        return mni152_split(resolution, centre, n_heldout, gap)
    from gensci.tomography.io import read_array

    arr = np.squeeze(read_array(source))
    if arr.ndim != 3:
        raise ShapeError(
            f"{source} holds shape {arr.shape}; a prior needs a volume or a stack of slices (3-D)"
        )
    lowered = source.lower()
    if lowered.endswith((".nii", ".nii.gz")):
        slices = axial_slices(arr - arr.min(), resolution)
    else:
        slices = stack_slices(arr, resolution)
    centre = slices.shape[0] // 2 if heldout_centre is None else heldout_centre
    return split_slices(slices, centre, n_heldout, gap, min_brain_fraction=0.0)
