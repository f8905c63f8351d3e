"""Images in and out: PNG / TIFF read as RGB floats in [0, 1], PNG written atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gensci.errors import DataError, FormatError, ShapeError, check_finite
from gensci.files import check_input_file, check_suffix
from gensci.runtime import atomic_save

IMAGE_SUFFIXES = (".png", ".tif", ".tiff")


def read_rgb(path: str | Path, what: str = "image") -> np.ndarray:
    """Return an RGB image (H, W, 3) in [0, 1] from a PNG or TIFF file (an opaque alpha is dropped)."""
    p = check_input_file(path, what)
    check_suffix(p, IMAGE_SUFFIXES, f"the {what}")
    import imageio.v3 as iio

    try:
        a = np.asarray(iio.imread(p))
    except Exception as exc:  # imageio raises many kinds for a broken file
        raise FormatError(f"{what} {p} is not a readable PNG/TIFF image: {str(exc)[:160]}") from None
    if a.dtype == np.uint8:
        x = a.astype(np.float64) / 255.0
    elif a.dtype == np.uint16:
        x = a.astype(np.float64) / 65535.0
    elif a.dtype.kind == "f":
        x = a.astype(np.float64)
        check_finite(x, f"{what} {p}")
        if x.min() < 0 or x.max() > 1:
            raise DataError(f"{what} {p} holds floats outside [0, 1] "
                            f"(min {x.min():.3g}, max {x.max():.3g})")
    else:
        raise FormatError(f"{what} {p} has pixel type {a.dtype}; expected 8- or 16-bit or float")
    if x.ndim == 3 and x.shape[2] == 4:
        if np.any(x[..., 3] < 1.0):
            raise ShapeError(f"{what} {p} has a transparent alpha channel; save it as RGB")
        x = x[..., :3]
    if x.ndim != 3 or x.shape[2] != 3:
        got = "1 channel (grayscale)" if x.ndim == 2 else f"shape {a.shape}"
        raise ShapeError(f"{what} {p} has {got}; expected an RGB image (H, W, 3)")
    return x


def read_mask(path: str | Path, size: int) -> np.ndarray:
    """Return a binary mask (size, size) from a grayscale or RGB image (bright = shape)."""
    p = check_input_file(path, "content mask")
    check_suffix(p, IMAGE_SUFFIXES, "the content mask")
    import imageio.v3 as iio

    try:
        a = np.asarray(iio.imread(p)).astype(np.float64)
    except Exception as exc:
        raise FormatError(f"content mask {p} is not a readable image: {str(exc)[:160]}") from None
    if a.ndim == 3:
        a = a[..., :3].mean(axis=2)
    if a.ndim != 2 or a.shape != (size, size):
        raise ShapeError(f"content mask {p} has shape {a.shape}; the model takes {size} x {size}")
    hi = a.max()
    return (a > hi / 2).astype(np.float32) if hi > 0 else np.zeros_like(a, np.float32)


def list_images(folder: str | Path) -> list[Path]:
    """Return the PNG / TIFF files of a folder, sorted; DataError if none."""
    d = Path(folder)
    if not d.is_dir():
        raise FormatError(f"{d} is not a folder of tiles")
    files = sorted(f for f in d.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"{d} holds no PNG or TIFF images")
    return files


def write_png(path: str | Path, rgb: np.ndarray, overwrite: bool = False) -> Path:
    """Write an RGB image (H, W, 3) in [0, 1] as an 8-bit PNG, atomically."""
    import imageio.v3 as iio

    p = check_suffix(path, (".png",), "the image")
    data = np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)

    def writer(tmp: Path) -> None:
        iio.imwrite(tmp, data, extension=".png")

    return atomic_save(p, writer, overwrite=overwrite, suffix=".png")
