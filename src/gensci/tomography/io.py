"""Readers and writers for images and sinograms in the formats CT users have: NumPy, NIfTI, DICOM.

A sinogram file is a .npz holding `sinogram` (n_det, n_angles), `angles` (degrees) and, when it
was simulated, `noise_std`, `image_size`, the `truth` image (N, N) it was simulated from, the
source's path (`truth_path`) and the intensity map applied to it (`intensity`: "own", "window" or
"normalise", with `window` = [lo, hi] mapped to [0, 1]); `gensci ct simulate` writes it,
`reconstruct` reads it. Photon-count data (`simulate --photons`) also hold `noise_model`
("poisson"), `photons` (I0), `mu_scale` and the `counts` (n_det, n_angles) the post-log
`sinogram` came from; `noise_std` is then the effective std (gensci.inverse.noise).
The acquisition geometry (`gensci.tomography.geometry`) is stored as `geometry` ("parallel" or
"fan"), `projector` (the implementation that simulated it: sparse, torch or astra), `n_det`,
`det_spacing` and, for fan beam, `source_distance`, `detector_distance` (pixels) and `detector`
("flat" or "arc"); a file without `geometry` is parallel beam, as every file was before.

Slicing convention (one for every reader): a NIfTI volume is (X, Y, Z) and `--slice z` cuts the
axial plane z (last axis), shown anterior up; any other 3-D array (.npy, .npz, DICOM) is a stack
(S, H, W) of 2-D images and `--slice s` takes stack[s]: the layout `train-prior` reads.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gensci.errors import (
    ConfigError,
    DataError,
    FormatError,
    GensciError,
    ShapeError,
    check_finite,
    check_numeric,
)
from gensci.files import check_input_file, check_suffix
from gensci.runtime import atomic_save
from gensci.tomography.geometry import Geometry

IMAGE_SUFFIXES = (".npy", ".npz", ".nii", ".nii.gz", ".dcm", ".inv3")


def _suffix(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".nii.gz"):
        return ".nii.gz"
    return path.suffix.lower()


_NPZ_ERRORS = (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile)


def _npz_array(path: Path, keys: tuple[str, ...], key: str | None = None) -> np.ndarray:
    """Return the array named `key` in a .npz; without it, the first of `keys` or its only array."""
    try:
        with np.load(path, allow_pickle=False) as data:
            names = list(data.keys())
            if key is not None:
                if key not in names:
                    raise FormatError(f"--key {key!r} is not in {path}; it holds arrays {names}")
                return np.asarray(data[key])
            for name in keys:
                if name in names:
                    return np.asarray(data[name])
            if len(names) == 1:
                return np.asarray(data[names[0]])
    except GensciError:
        raise
    except _NPZ_ERRORS as exc:
        raise FormatError(f"cannot read {path} as .npz: {exc}") from None
    raise FormatError(
        f"{path} holds arrays {names}; pick one with --key (or name it {keys[0]!r})"
    )


def read_array(path: str | Path, key: str | None = None) -> np.ndarray:
    """Return the array stored in a .npy, .npz, NIfTI (.nii/.nii.gz), DICOM (.dcm) or InVesalius
    (.inv3, a stack (S, H, W)) file.

    A folder is read as a DICOM series (`dicom.read_dicom_series`), a stack (S, H, W) in HU.
    key: the array's name in a .npz holding several (default: `image`, `volume`, `x`, `truth`,
    or the only one).
    DICOM pixel values go through RescaleSlope / RescaleIntercept (e.g. to Hounsfield units).
    The array must hold real numbers (integers or floats): complex, boolean, text and object
    arrays are refused (`gensci.errors.check_numeric`), as are empty files and NaN/inf values.
    """
    p = Path(path)
    if p.is_dir() and _suffix(p) not in IMAGE_SUFFIXES:
        # a DICOM series: a stack (S, H, W) in HU, sorted along the slice normal
        from gensci.tomography.dicom import read_dicom_series

        return check_numeric(read_dicom_series(p).volume, f"DICOM series in {p}")
    suffix = _suffix(p)
    if suffix not in IMAGE_SUFFIXES:
        raise FormatError(f"{p}: unknown image format {suffix!r}; use one of {IMAGE_SUFFIXES}")
    if key is not None and suffix != ".npz":
        raise FormatError(f"--key {key!r} applies to a .npz; {p} is {suffix}")
    check_input_file(p, "image file")
    try:
        if suffix == ".npy":
            arr = np.load(p, allow_pickle=False)
        elif suffix == ".npz":
            arr = _npz_array(p, ("image", "volume", "x", "truth"), key)
        elif suffix == ".inv3":
            from gensci.tomography.realct import read_inv3

            arr = read_inv3(p)[0]
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


def is_volume(path: str | Path) -> bool:
    """Return True for a NIfTI file (a volume (X, Y, Z) cut along Z), False for a stack file."""
    return _suffix(Path(path)) in (".nii", ".nii.gz")


def cut_slice(arr: np.ndarray, slice_index: int | None, volume: bool, name: str) -> np.ndarray:
    """Return the 2-D slice of a 3-D array: NIfTI volume (X, Y, Z) -> axial plane z (anterior up),
    stack (S, H, W) -> stack[s]. The index is checked against that axis."""
    kind = "NIfTI volume (X, Y, Z), sliced along Z" if volume else "stack (S, H, W)"
    axis = 2 if volume else 0
    if slice_index is None:
        raise ShapeError(f"{name} holds a 3-D {kind} of shape {arr.shape}; pick one with --slice")
    if not 0 <= slice_index < arr.shape[axis]:
        raise ShapeError(
            f"--slice {slice_index} is outside {name}: a {kind} of shape {arr.shape} has "
            f"{arr.shape[axis]} slices"
        )
    return arr[:, ::-1, slice_index].T if volume else arr[slice_index]


def read_image(
    path: str | Path, slice_index: int | None = None, key: str | None = None
) -> np.ndarray:
    """Return a 2-D image (H, W) from a file; a 3-D array needs `slice_index` (see `cut_slice`)."""
    arr = np.squeeze(read_array(path, key))
    if arr.ndim == 3:
        arr = cut_slice(arr, slice_index, is_volume(path), str(path))
    elif slice_index is not None and arr.ndim == 2:
        raise ShapeError(f"--slice {slice_index} given but {path} holds one 2-D image {arr.shape}")
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


def parse_window(text: str) -> tuple[float, float]:
    """Return (lo, hi) from 'LO,HI' (e.g. a HU window '-1000,1000'); lo < hi, both finite."""
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise DataError(f"--window {text!r} is not 'LO,HI' (e.g. -1000,1000 in HU)") from None
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise DataError(f"--window {text!r}: need finite LO < HI")
    return lo, hi


def apply_window(image: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Return image with [lo, hi] mapped linearly to [0, 1] and clipped there (a HU window)."""
    return np.clip((image - lo) / (hi - lo), 0.0, 1.0)


@dataclass
class Sinogram:
    """A measured sinogram (n_det, n_angles), its angles in degrees and what is known of noise."""

    data: np.ndarray
    angles: np.ndarray
    noise_std: float | None = None
    image_size: int | None = None
    truth: np.ndarray | None = None  # (N, N): the image simulated, on its stored scale
    truth_path: str | None = None
    intensity: str | None = None  # "own" | "window" | "normalise"
    window: tuple[float, float] | None = None  # source values mapped to [0, 1]
    noise_model: str | None = None  # "gaussian" | "poisson" (None: gaussian, as before)
    photons: float | None = None  # I0, unattenuated counts per ray (poisson)
    mu_scale: float | None = None  # attenuation per pixel of x = 1 (poisson)
    counts: np.ndarray | None = None  # (n_det, n_angles) photon counts (poisson)
    geometry: Geometry = field(default_factory=Geometry)  # parallel beam unless stored
    projector: str | None = None  # the implementation that simulated it (None: not stored)
    geometry_stored: bool = False  # the file holds `geometry` (else parallel beam by default)

    def weights(self) -> np.ndarray | None:
        """Return the inverse variance of each post-log measurement, counts * mu_scale^2
        (photon-count data), or None (Gaussian: one std for all)."""
        if self.noise_model != "poisson" or self.counts is None or self.mu_scale is None:
            return None
        return self.counts * self.mu_scale**2


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
    truth = truth_path = intensity = window = None
    model = photons_raw = mu_raw = counts_raw = None
    geo_raw: dict[str, np.ndarray] = {}
    if suffix == ".npz":
        try:
            with np.load(p, allow_pickle=False) as f:
                if "sinogram" not in f:
                    raise FormatError(f"{p} holds {list(f.keys())}; expected 'sinogram'")
                raw = f["sinogram"]
                stored = f["angles"] if "angles" in f else None
                std = f["noise_std"] if "noise_std" in f else None
                n = f["image_size"] if "image_size" in f else None
                truth = f["truth"] if "truth" in f else None
                truth_path = str(f["truth_path"]) if "truth_path" in f else None
                intensity = str(f["intensity"]) if "intensity" in f else None
                window = f["window"] if "window" in f else None
                model = str(f["noise_model"]) if "noise_model" in f else None
                photons_raw = f["photons"] if "photons" in f else None
                mu_raw = f["mu_scale"] if "mu_scale" in f else None
                counts_raw = f["counts"] if "counts" in f else None
                geo_raw = {k: f[k] for k in GEOMETRY_KEYS if k in f}
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
    if truth is not None:
        truth = check_numeric(truth, f"truth in {p}")
        check_finite(truth, f"truth in {p}")
    win = None
    if window is not None:
        w = check_numeric(window, f"window in {p}").reshape(-1)
        win = (float(w[0]), float(w[1])) if w.size == 2 else None
    photons = mu_scale = counts = None
    if model not in (None, "gaussian", "poisson"):
        raise FormatError(f"{p}: unknown noise_model {model!r}; expected 'gaussian' or 'poisson'")
    if model == "poisson":
        if photons_raw is None or mu_raw is None or counts_raw is None:
            raise FormatError(
                f"{p}: noise_model 'poisson' needs 'photons', 'mu_scale' and 'counts' beside it"
            )
        photons = _scalar(photons_raw, f"photons in {p}")
        mu_scale = _scalar(mu_raw, f"mu_scale in {p}")
        if photons <= 0 or mu_scale <= 0:
            raise DataError(f"{p}: photons {photons:g} and mu_scale {mu_scale:g} must be > 0")
        counts = np.squeeze(check_numeric(counts_raw, f"counts in {p}"))
        if counts.shape != data.shape:
            raise ShapeError(f"counts in {p} have shape {counts.shape}; the sinogram {data.shape}")
        if counts.min() < 0:
            raise DataError(f"counts in {p} must be >= 0, got {counts.min():g}")
        if counts.max() <= 0:
            raise DataError(f"counts in {p} are all 0: no ray reached the detector")
    geometry, projector = _read_geometry(p, geo_raw, data.shape[0])
    return Sinogram(
        data=data, angles=angles, noise_std=noise_std, image_size=size, truth=truth,
        truth_path=truth_path, intensity=intensity, window=win, noise_model=model,
        photons=photons, mu_scale=mu_scale, counts=counts, geometry=geometry,
        projector=projector, geometry_stored="geometry" in geo_raw,
    )


GEOMETRY_KEYS = (
    "geometry", "projector", "n_det", "det_spacing", "source_distance", "detector_distance",
    "detector",
)


def _read_geometry(p: Path, raw: dict[str, np.ndarray], rows: int) -> tuple[Geometry, str | None]:
    """Return the stored (Geometry, projector) of a sinogram file with `rows` detector bins;
    no `geometry` key: parallel beam (files written before geometries were stored)."""
    if "geometry" not in raw:
        extra = sorted(set(raw) - {"n_det", "det_spacing", "projector"})
        if extra:
            raise FormatError(f"{p} stores {extra} but no 'geometry' ('parallel' or 'fan')")
    text = {k: str(raw[k]) for k in ("geometry", "projector", "detector") if k in raw}
    num = {k: _number(raw[k], f"{k} in {p}") for k in
           ("n_det", "det_spacing", "source_distance", "detector_distance") if k in raw}
    geometry = Geometry(
        kind=text.get("geometry", "parallel"), source_distance=num.get("source_distance"),
        detector_distance=num.get("detector_distance"), detector=text.get("detector", "flat"),
        det_spacing=num.get("det_spacing"),
    )
    try:
        geometry.check()
    except ConfigError as exc:
        raise FormatError(f"{p}: stored geometry: {str(exc).replace('--', '')}") from None
    if "n_det" in num and num["n_det"] != rows:
        raise ShapeError(
            f"sinogram in {p} has {rows} detector bins (rows) but its stored {geometry.kind}-beam "
            f"geometry has n_det = {num['n_det']:g}"
        )
    projector = text.get("projector")
    from gensci.inverse.projectors import PROJECTORS

    if projector is not None and projector not in PROJECTORS:
        raise FormatError(f"{p}: unknown stored projector {projector!r}; expected one of {PROJECTORS}")
    return geometry, projector


def _number(arr: np.ndarray, name: str) -> float:
    """Return the one real, finite number stored in `arr` (any sign: checked by Geometry)."""
    value = check_numeric(arr, name)
    if value.size != 1:
        raise ShapeError(f"{name} holds {value.size} values (shape {value.shape}); expected one")
    return float(value.reshape(()))


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
    if sino.truth is not None:
        arrays["truth"] = np.asarray(sino.truth, dtype=np.float64)
    if sino.truth_path is not None:
        arrays["truth_path"] = np.asarray(sino.truth_path)
    if sino.intensity is not None:
        arrays["intensity"] = np.asarray(sino.intensity)
    if sino.window is not None:
        arrays["window"] = np.asarray(sino.window, dtype=np.float64)
    if sino.noise_model is not None:
        arrays["noise_model"] = np.asarray(sino.noise_model)
    for name in ("photons", "mu_scale"):
        value = getattr(sino, name)
        if value is not None:
            arrays[name] = np.asarray(value, dtype=np.float64)
    if sino.counts is not None:
        arrays["counts"] = np.asarray(sino.counts, dtype=np.float64)
    arrays.update(geometry_arrays(sino))
    return write_npz(path, arrays, overwrite)


def geometry_arrays(sino: Sinogram) -> dict[str, np.ndarray]:
    """Return the geometry keys written beside a sinogram: parallel beam without a stored
    projector (a Sinogram built by hand) writes none, so the file reads as before."""
    g = sino.geometry
    if g.kind == "parallel" and sino.projector is None and g.det_spacing is None:
        return {}
    arrays = {
        "geometry": np.asarray(g.kind),
        "n_det": np.asarray(sino.data.shape[0]),
        "det_spacing": np.asarray(g.spacing(), dtype=np.float64),
    }
    if sino.projector is not None:
        arrays["projector"] = np.asarray(sino.projector)
    if g.kind == "fan":
        arrays["source_distance"] = np.asarray(g.source_distance, dtype=np.float64)
        arrays["detector_distance"] = np.asarray(g.detector_distance, dtype=np.float64)
        arrays["detector"] = np.asarray(g.detector)
    return arrays


def write_npz(path: str | Path, arrays: dict[str, np.ndarray], overwrite: bool = False) -> Path:
    """Write named arrays to a .npz atomically; refuse to replace a file unless overwrite."""

    def writer(tmp: Path) -> None:
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        tmp.write_bytes(buf.getvalue())

    return atomic_save(path, writer, overwrite=overwrite)
