"""Readers and writers for images and sinograms in the formats CT users have: NumPy, NIfTI, DICOM.

A sinogram file is a .npz holding `sinogram` (n_det, n_angles), `angles` (degrees) and, when it
was simulated, `noise_std` and `image_size`; `gensci ct simulate` writes it, `reconstruct` reads it.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gensci.errors import (
    DataError,
    FormatError,
    GensciError,
    ShapeError,
    check_finite,
    check_numeric,
)
from gensci.files import check_input_file, check_suffix
from gensci.runtime import atomic_save

IMAGE_SUFFIXES = (".npy", ".npz", ".nii", ".nii.gz", ".dcm")


def _suffix(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".nii.gz"):
        return ".nii.gz"
    return path.suffix.lower()


_NPZ_ERRORS = (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile)


def _npz_array(path: Path, keys: tuple[str, ...]) -> np.ndarray:
    """Return the array under the first of `keys` in a .npz, or its only array."""
    try:
        with np.load(path, allow_pickle=False) as data:
            names = list(data.keys())
            for key in keys:
                if key in names:
                    return np.asarray(data[key])
            if len(names) == 1:
                return np.asarray(data[names[0]])
    except _NPZ_ERRORS as exc:
        raise FormatError(f"cannot read {path} as .npz: {exc}") from None
    raise FormatError(f"{path} holds arrays {names}; expected one named {keys[0]!r}")


def read_array(path: str | Path) -> np.ndarray:
    """Return the float64 array stored in a .npy, .npz, NIfTI (.nii/.nii.gz) or DICOM (.dcm) file.

    DICOM pixel values go through RescaleSlope / RescaleIntercept (e.g. to Hounsfield units).
    The array must hold real numbers (integers or floats): complex, boolean, text and object
    arrays are refused (`gensci.errors.check_numeric`), as are empty files and NaN/inf values.
    """
    p = Path(path)
    suffix = _suffix(p)
    if suffix not in IMAGE_SUFFIXES:
        raise FormatError(f"{p}: unknown image format {suffix!r}; use one of {IMAGE_SUFFIXES}")
    check_input_file(p, "image file")
    try:
        if suffix == ".npy":
            arr = np.load(p, allow_pickle=False)
        elif suffix == ".npz":
            arr = _npz_array(p, ("image", "volume", "x"))
        elif suffix in (".nii", ".nii.gz"):
            import nibabel as nib

            # the stored values with the header's scaling applied, in their own dtype (get_fdata
            # would cast complex data to float and drop the imaginary part)
            arr = np.asanyarray(nib.load(str(p)).dataobj)
        else:
            import pydicom

            ds = pydicom.dcmread(str(p))
            pixels = check_numeric(ds.pixel_array, f"pixel data of {p}")
            arr = pixels * float(getattr(ds, "RescaleSlope", 1.0)) + float(
                getattr(ds, "RescaleIntercept", 0.0)
            )
    except GensciError:
        raise
    except Exception as exc:  # each library raises its own error types for a corrupt file
        raise FormatError(f"cannot read {p} as {suffix}: {exc}") from None
    return check_numeric(arr, f"image in {p}")


def read_image(path: str | Path, slice_index: int | None = None) -> np.ndarray:
    """Return a 2-D image (H, W) from a file; a 3-D volume needs `slice_index` (axial axis last)."""
    arr = np.squeeze(read_array(path))
    if arr.ndim == 3:
        if slice_index is None:
            raise ShapeError(
                f"{path} holds a volume of shape {arr.shape}; pick an axial slice with --slice"
            )
        if not 0 <= slice_index < arr.shape[2]:
            raise ShapeError(f"slice {slice_index} is outside the volume's {arr.shape[2]} slices")
        arr = arr[:, ::-1, slice_index].T
    if arr.ndim != 2:
        raise ShapeError(f"{path} holds an array of shape {arr.shape}; expected a 2-D image")
    check_finite(arr, f"image in {path}")
    return arr


def normalise(image: np.ndarray) -> np.ndarray:
    """Return image scaled linearly to [0, 1] (min -> 0, max -> 1)."""
    lo, hi = float(image.min()), float(image.max())
    if hi <= lo:
        raise DataError(f"image is constant ({lo}); nothing to reconstruct")
    return (image - lo) / (hi - lo)


@dataclass
class Sinogram:
    """A measured sinogram (n_det, n_angles), its angles in degrees and what is known of noise."""

    data: np.ndarray
    angles: np.ndarray
    noise_std: float | None = None
    image_size: int | None = None


def _scalar(arr: np.ndarray, name: str, integer: bool = False) -> float:
    """Return the one real, finite number in `arr` (a stored scalar such as noise_std)."""
    value = check_numeric(arr, name)
    if value.size != 1:
        raise ShapeError(f"{name} holds {value.size} values (shape {value.shape}); expected one")
    x = float(value.reshape(()))
    if x < 0 or (integer and (x != int(x) or x < 1)):
        want = "a positive integer" if integer else "a number >= 0"
        raise DataError(f"{name} is {x}; expected {want}")
    return x


def read_sinogram(path: str | Path, angles: np.ndarray | None = None) -> Sinogram:
    """Return the sinogram in a .npz (with its angles) or .npy (angles must then be given).

    The sinogram, angles, noise_std and image_size must be real, finite numbers
    (`gensci.errors.check_numeric`); an empty, truncated or foreign file is refused by name.
    """
    p = Path(path)
    suffix = _suffix(p)
    if suffix not in (".npz", ".npy"):
        raise FormatError(f"{p}: a sinogram must be .npz or .npy, got {suffix!r}")
    check_input_file(p, "sinogram file")
    noise_std: float | None = None
    size: int | None = None
    if suffix == ".npz":
        try:
            with np.load(p, allow_pickle=False) as f:
                if "sinogram" not in f:
                    raise FormatError(f"{p} holds {list(f.keys())}; expected 'sinogram'")
                raw = f["sinogram"]
                stored = f["angles"] if "angles" in f else None
                std = f["noise_std"] if "noise_std" in f else None
                n = f["image_size"] if "image_size" in f else None
        except GensciError:
            raise
        except _NPZ_ERRORS as exc:
            raise FormatError(f"cannot read {p} as .npz: {exc}") from None
        if stored is not None:
            stored = check_numeric(stored, f"angles in {p}")
        noise_std = None if std is None else _scalar(std, f"noise_std in {p}")
        size = None if n is None else int(_scalar(n, f"image_size in {p}", integer=True))
        if angles is None:
            angles = stored
    else:
        try:
            raw = np.load(p, allow_pickle=False)
        except (OSError, EOFError, ValueError) as exc:
            raise FormatError(f"cannot read {p} as .npy: {exc}") from None
    data = np.squeeze(check_numeric(raw, f"sinogram in {p}"))
    if data.ndim != 2:
        raise ShapeError(f"sinogram in {p} has shape {data.shape}; expected (n_det, n_angles)")
    if angles is None:
        raise FormatError(f"{p} stores no angles; give them with --angles (e.g. 0:90:60)")
    angles = check_numeric(angles, f"angles for {p}").reshape(-1)
    if angles.size != data.shape[1]:
        raise ShapeError(
            f"sinogram in {p} has {data.shape[1]} views (columns) but {angles.size} angles were "
            "given; a sinogram is laid out (n_det, n_angles)"
        )
    return Sinogram(data=data, angles=angles, noise_std=noise_std, image_size=size)


SINOGRAM_SUFFIX = ".npz"


def write_sinogram(path: str | Path, sino: Sinogram, overwrite: bool = False) -> Path:
    """Write sino to a .npz atomically; refuse another suffix, and to replace an existing file
    unless overwrite."""
    check_suffix(path, (SINOGRAM_SUFFIX,), "a sinogram (with its angles)")
    arrays: dict[str, np.ndarray] = {"sinogram": sino.data, "angles": sino.angles}
    if sino.noise_std is not None:
        arrays["noise_std"] = np.asarray(sino.noise_std)
    if sino.image_size is not None:
        arrays["image_size"] = np.asarray(sino.image_size)
    return write_npz(path, arrays, overwrite)


def write_npz(path: str | Path, arrays: dict[str, np.ndarray], overwrite: bool = False) -> Path:
    """Write named arrays to a .npz atomically; refuse to replace a file unless overwrite."""

    def writer(tmp: Path) -> None:
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        tmp.write_bytes(buf.getvalue())

    return atomic_save(path, writer, overwrite=overwrite)
