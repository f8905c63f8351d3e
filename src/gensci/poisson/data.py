"""Seeded source-term families, boundary values, and (rho, phi) datasets on disk (.npz / HDF5).

Families (every generator takes a seed; each field is an (N, N) array on the node grid of
gensci.poisson.solver):
- "grf": Gaussian random fields with squared-exponential covariance of a given length scale,
  unit pointwise standard deviation.
- "blobs": sums of 1-6 Gaussian blobs of random sign, width and position.
- "shapes": sums of 1-4 uniformly charged disks and axis-aligned rectangles.
- "grf_wide": GRFs over a wide range of length scales (0.05 - 0.3).
- "points": a few very narrow Gaussian charges (near point sources).
- "offset": a GRF plus a constant offset of 1 - 3 (a source with non-zero mean).
Out-of-distribution families used by the benchmark:
- "grf_short": GRFs with a length scale below every training range (0.03 - 0.04).
- "dipoles": pairs of narrow opposite charges a short distance apart; held out of every training
  mixture.

`MIXTURE` is the training mixture of the shipped surrogate; `HELD_OUT` are never trained on.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from gensci.errors import (
    ConfigError,
    DataError,
    FormatError,
    GensciError,
    ShapeError,
    check_numeric,
)
from gensci.files import check_input_file, check_suffix, parse_json_object
from gensci.poisson.solver import check_grid, solve_poisson
from gensci.runtime import atomic_save

FAMILIES = ("grf", "blobs", "shapes", "grf_short", "points", "grf_wide", "offset", "dipoles")
IN_DISTRIBUTION = ("grf", "blobs", "shapes")
OUT_OF_DISTRIBUTION = ("grf_short", "points")
MIXTURE = ("grf_wide", "blobs", "shapes", "points", "offset")
HELD_OUT = ("grf_short", "dipoles")


def node_grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Return X, Y: (N, N) node coordinates with X[i, j] = x_i, Y[i, j] = y_j."""
    x = np.linspace(0.0, 1.0, n)
    return np.meshgrid(x, x, indexing="ij")


def gaussian_random_field(
    n_fields: int, n: int, length_scale: float | Sequence[float], seed: int
) -> np.ndarray:
    """Return (n_fields, N, N) GRFs with covariance exp(-r^2 / (2 l^2)) and unit std.

    Drawn spectrally on a 2N x 2N periodic grid and cropped, so the periodic wrap does not show.
    `length_scale` is one value or one per field.
    """
    if n_fields < 1 or n < 3:
        raise ConfigError(f"need n_fields >= 1 and N >= 3; got n_fields={n_fields}, N={n}")
    ls = np.broadcast_to(np.asarray(length_scale, dtype=np.float64), (n_fields,))
    if np.any(ls <= 0):
        raise ConfigError(f"length scale must be positive; got {ls.min()!r}")
    rng = np.random.default_rng(seed)
    m = 2 * n
    h = 1.0 / (n - 1)
    k = 2 * np.pi * np.fft.fftfreq(m, d=h)
    k2 = k[:, None] ** 2 + k[None, :] ** 2
    out = np.empty((n_fields, n, n))
    for b in range(n_fields):
        filt = np.exp(-0.25 * ls[b] ** 2 * k2)  # sqrt of the Gaussian spectral density
        filt *= m / np.sqrt((filt**2).sum())  # unit pointwise variance
        w = rng.standard_normal((m, m))
        out[b] = np.fft.ifft2(np.fft.fft2(w) * filt).real[:n, :n]
    return out


def gaussian_blobs(
    n_fields: int,
    n: int,
    seed: int,
    n_blobs: tuple[int, int] = (1, 6),
    width: tuple[float, float] = (0.04, 0.15),
    amplitude: tuple[float, float] = (0.5, 2.0),
) -> np.ndarray:
    """Return (n_fields, N, N) sums of Gaussian blobs exp(-|x - c|^2 / (2 w^2)) of random sign."""
    rng = np.random.default_rng(seed)
    xx, yy = node_grid(n)
    out = np.zeros((n_fields, n, n))
    for b in range(n_fields):
        for _ in range(rng.integers(n_blobs[0], n_blobs[1] + 1)):
            cx, cy = rng.uniform(0.15, 0.85, size=2)
            w = rng.uniform(*width)
            amp = rng.uniform(*amplitude) * rng.choice([-1.0, 1.0])
            out[b] += amp * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * w**2))
    return out


def charged_shapes(
    n_fields: int,
    n: int,
    seed: int,
    n_shapes: tuple[int, int] = (1, 4),
    size: tuple[float, float] = (0.05, 0.2),
    density: tuple[float, float] = (0.5, 2.0),
) -> np.ndarray:
    """Return (n_fields, N, N) sums of uniformly charged disks and rectangles."""
    rng = np.random.default_rng(seed)
    xx, yy = node_grid(n)
    out = np.zeros((n_fields, n, n))
    for b in range(n_fields):
        for _ in range(rng.integers(n_shapes[0], n_shapes[1] + 1)):
            cx, cy = rng.uniform(0.2, 0.8, size=2)
            q = rng.uniform(*density) * rng.choice([-1.0, 1.0])
            if rng.random() < 0.5:
                r = rng.uniform(*size)
                inside = (xx - cx) ** 2 + (yy - cy) ** 2 <= r**2
            else:
                hx, hy = rng.uniform(*size, size=2)
                inside = (np.abs(xx - cx) <= hx) & (np.abs(yy - cy) <= hy)
            out[b] += q * inside
    return out


def dipoles(
    n_fields: int,
    n: int,
    seed: int,
    n_dipoles: tuple[int, int] = (1, 3),
    width: tuple[float, float] = (0.015, 0.03),
    separation: tuple[float, float] = (0.04, 0.12),
    amplitude: tuple[float, float] = (2.0, 6.0),
) -> np.ndarray:
    """Return (n_fields, N, N) sums of dipoles: two narrow Gaussians of opposite sign, close by."""
    rng = np.random.default_rng(seed)
    xx, yy = node_grid(n)
    out = np.zeros((n_fields, n, n))
    for b in range(n_fields):
        for _ in range(rng.integers(n_dipoles[0], n_dipoles[1] + 1)):
            cx, cy = rng.uniform(0.2, 0.8, size=2)
            d = rng.uniform(*separation) / 2
            theta = rng.uniform(0, 2 * np.pi)
            w = rng.uniform(*width)
            amp = rng.uniform(*amplitude)
            for sign in (1.0, -1.0):
                px, py = cx + sign * d * np.cos(theta), cy + sign * d * np.sin(theta)
                out[b] += sign * amp * np.exp(-((xx - px) ** 2 + (yy - py) ** 2) / (2 * w**2))
    return out


def random_boundary(n_fields: int, n: int, seed: int, scale: float = 1.0) -> np.ndarray:
    """Return (n_fields, N, N) smooth Dirichlet values on the ring (inner entries 0).

    The ring carries the trace of a random low-order trigonometric field, so the four edges agree
    at the corners; values are of order `scale`.
    """
    rng = np.random.default_rng(seed)
    xx, yy = node_grid(n)
    out = np.zeros((n_fields, n, n))
    for b in range(n_fields):
        f = rng.normal() * scale * np.ones((n, n))
        for kx in range(3):
            for ky in range(3):
                c = rng.normal(size=2) * scale / (1 + kx + ky)
                f += c[0] * np.cos(np.pi * (kx * xx + ky * yy)) + c[1] * np.sin(
                    np.pi * (kx * xx - ky * yy)
                )
        out[b] = f
        out[b, 1:-1, 1:-1] = 0.0
    return out


DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "grf": {"length_scale": (0.08, 0.2)},
    "blobs": {},
    "shapes": {},
    "grf_short": {"length_scale": (0.03, 0.04)},
    "points": {},
    "grf_wide": {"length_scale": (0.05, 0.3)},
    "offset": {"length_scale": (0.08, 0.2), "offset": (1.0, 3.0)},
    "dipoles": {},
}


def sample_rho(family: str, n_fields: int, n: int, seed: int, **params: Any) -> np.ndarray:
    """Return (n_fields, N, N) source terms of one named family, drawn with `seed`."""
    if family not in FAMILIES:
        raise ConfigError(f"unknown rho family {family!r}; choose from {FAMILIES}")
    p = {**DEFAULT_PARAMS[family], **params}
    if family in ("grf", "grf_short", "grf_wide", "offset"):
        lo, hi = p["length_scale"] if np.ndim(p["length_scale"]) else (p["length_scale"],) * 2
        rng = np.random.default_rng(seed + 7919)
        ls = rng.uniform(lo, hi, size=n_fields)
        fields = gaussian_random_field(n_fields, n, ls, seed)
        if family == "offset":
            c = rng.uniform(*p["offset"], size=n_fields) * rng.choice([-1.0, 1.0], size=n_fields)
            fields += c[:, None, None]
        return fields
    if family == "dipoles":
        return dipoles(n_fields, n, seed, **p)
    if family == "blobs":
        return gaussian_blobs(n_fields, n, seed, **p)
    if family == "shapes":
        return charged_shapes(n_fields, n, seed, **p)
    # "points": narrow blobs, scaled so that the field's std is comparable to the others
    return gaussian_blobs(
        n_fields, n, seed, n_blobs=(1, 3), width=(0.01, 0.02), amplitude=(2.0, 6.0)
    )


@dataclass
class PoissonDataset:
    """Pairs (rho, phi) on N x N grids with boundary values, family labels and how they were made.

    rho, phi, boundary: (B, N, N) float64; family: (B,) str; params: generating settings (JSON).
    """

    rho: np.ndarray
    phi: np.ndarray
    boundary: np.ndarray
    family: np.ndarray
    params: dict[str, Any]

    def __post_init__(self) -> None:
        n = check_grid(self.rho, "rho")
        check_grid(self.phi, "phi", n)
        check_grid(self.boundary, "boundary", n)
        if not (self.rho.shape == self.phi.shape == self.boundary.shape) or self.rho.ndim != 3:
            raise ShapeError(
                f"rho {self.rho.shape}, phi {self.phi.shape}, boundary {self.boundary.shape} "
                "must all be (B, N, N)"
            )
        if self.family.shape != (self.rho.shape[0],):
            raise ShapeError(
                f"family has shape {self.family.shape}, expected ({self.rho.shape[0]},)"
            )

    @property
    def n(self) -> int:
        """Return N, the nodes per side."""
        return int(self.rho.shape[-1])

    def __len__(self) -> int:
        return int(self.rho.shape[0])

    def subset(self, index: np.ndarray | slice) -> PoissonDataset:
        """Return the examples at `index` (same params)."""
        return PoissonDataset(
            self.rho[index], self.phi[index], self.boundary[index], self.family[index], self.params
        )

    def select_family(self, name: str) -> PoissonDataset:
        """Return the examples of one family."""
        idx = np.flatnonzero(self.family == name)
        if idx.size == 0:
            raise DataError(f"no examples of family {name!r}; present: {sorted(set(self.family))}")
        return self.subset(idx)


def make_dataset(
    n_examples: int,
    n: int,
    families: Sequence[str] = IN_DISTRIBUTION,
    seed: int = 0,
    nonzero_boundary_fraction: float = 0.5,
    boundary_scale: float = 0.05,
    family_params: dict[str, dict[str, Any]] | None = None,
    progress: bool = False,
) -> PoissonDataset:
    """Return a dataset of n_examples pairs, families in equal shares, solved exactly.

    A fraction `nonzero_boundary_fraction` of the examples get random smooth Dirichlet values of
    order `boundary_scale` (phi from unit-std rho is of order 0.05 on the unit square).
    """
    if n_examples < 1:
        raise ConfigError(f"n_examples must be >= 1; got {n_examples}")
    if not families:
        raise ConfigError("families is empty")
    if not 0.0 <= nonzero_boundary_fraction <= 1.0:
        raise ConfigError(
            f"nonzero_boundary_fraction must be in [0, 1]; got {nonzero_boundary_fraction}"
        )
    family_params = family_params or {}
    k = len(families)
    counts = [n_examples // k + (i < n_examples % k) for i in range(k)]
    rhos, labels = [], []
    for i, (fam, count) in enumerate(zip(families, counts, strict=True)):
        if count == 0:
            continue
        rhos.append(sample_rho(fam, count, n, seed * 1000 + i, **family_params.get(fam, {})))
        labels += [fam] * count
    rho = np.concatenate(rhos)
    rng = np.random.default_rng(seed + 104729)
    perm = rng.permutation(n_examples)
    rho = rho[perm]
    family = np.array(labels)[perm]
    boundary = random_boundary(n_examples, n, seed + 1, scale=boundary_scale)
    zero = rng.random(n_examples) >= nonzero_boundary_fraction
    boundary[zero] = 0.0
    phi = np.empty_like(rho)
    chunk = 256
    for s in tqdm(range(0, n_examples, chunk), desc="exact solves", disable=not progress):
        phi[s : s + chunk] = solve_poisson(rho[s : s + chunk], boundary[s : s + chunk])
    params = {
        "n_examples": n_examples,
        "n": n,
        "families": list(families),
        "seed": seed,
        "nonzero_boundary_fraction": nonzero_boundary_fraction,
        "boundary_scale": boundary_scale,
        "family_params": {f: {**DEFAULT_PARAMS[f], **family_params.get(f, {})} for f in families},
        "operator": "5-point Laplacian, unit square, Dirichlet, h = 1/(N-1)",
    }
    return PoissonDataset(rho, phi, boundary, family, params)


DATASET_SUFFIXES = (".npz", ".h5", ".hdf5")


def write_dataset(ds: PoissonDataset, path: str | Path, overwrite: bool = False) -> Path:
    """Write `ds` to .npz or .h5/.hdf5 (chosen by suffix) atomically; return the path."""
    path = check_suffix(path, DATASET_SUFFIXES, "a Poisson dataset")
    suffix = path.suffix.lower()
    params_json = json.dumps(ds.params, default=_jsonable)
    if suffix == ".npz":

        def writer(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.savez_compressed(
                    fh,
                    rho=ds.rho,
                    phi=ds.phi,
                    boundary=ds.boundary,
                    family=ds.family.astype("U16"),
                    params=np.array(params_json),
                )

        return atomic_save(path, writer, overwrite=overwrite, suffix=".npz")
    if suffix in (".h5", ".hdf5"):
        import h5py

        def writer_h5(tmp: Path) -> None:
            with h5py.File(tmp, "w") as f:
                for key in ("rho", "phi", "boundary"):
                    f.create_dataset(key, data=getattr(ds, key), compression="gzip")
                f.create_dataset("family", data=ds.family.astype("S16"))
                f.attrs["params"] = params_json
                f.attrs["format"] = "gensci.poisson/1"

        return atomic_save(path, writer_h5, overwrite=overwrite, suffix=suffix)
    raise FormatError(f"unknown dataset suffix {suffix!r} in {path}; use .npz, .h5 or .hdf5")


_NPZ_ERRORS = (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile)
ARRAY_SUFFIXES = (".npy", ".npz", ".h5", ".hdf5")


def _h5_dataset(f: Any, key: str, path: Path) -> np.ndarray:
    """Return the array of dataset `key` of an open HDF5 file; refuse a group or a missing key."""
    import h5py

    if key not in f:
        raise FormatError(f"{path} has no dataset {key!r}; it holds {sorted(f.keys())}")
    obj = f[key]
    if not isinstance(obj, h5py.Dataset):
        raise FormatError(f"{path}:{key} is an HDF5 group, not a dataset (an array)")
    return np.asarray(obj[()])


def read_array(path: str | Path, key: str) -> np.ndarray:
    """Return the array in a .npy, or under `key` in a .npz / .h5 / .hdf5 file, as stored.

    Refuses, naming the file: a missing, empty, truncated or foreign file, a missing key, an
    HDF5 group where a dataset is expected. The dtype is not checked here (see check_numeric).
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in ARRAY_SUFFIXES:
        raise FormatError(f"unknown file type {suffix!r} for {p}; use .npy, .npz or .h5")
    check_input_file(p, "array file")
    try:
        if suffix == ".npy":
            return np.load(p, allow_pickle=False)
        if suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                if key not in z.files:
                    raise FormatError(f"{p} has no array {key!r}; it holds {z.files}")
                return z[key]
        import h5py

        with h5py.File(p, "r") as f:
            return _h5_dataset(f, key, p)
    except GensciError:
        raise
    except _NPZ_ERRORS as exc:
        raise FormatError(f"cannot read {p} as {suffix}: {exc}") from None


def read_dataset(path: str | Path) -> PoissonDataset:
    """Return the dataset stored at `path` (.npz or .h5/.hdf5), checked for shape and NaNs.

    rho, phi and boundary must be real (integer or floating), finite (B, N, N) arrays; params
    the JSON object `write_dataset` stores. Every refusal names the file.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in DATASET_SUFFIXES:
        raise FormatError(f"unknown dataset suffix {suffix!r} in {path}; use .npz or .h5")
    check_input_file(path, "dataset file")
    needed = ("rho", "phi", "boundary", "family", "params")
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                missing = [k for k in needed if k not in z.files]
                if missing:
                    raise FormatError(f"{path} lacks arrays {missing}; found {z.files}")
                arrays = {k: z[k] for k in needed}
            if arrays["params"].dtype.kind not in "US" or arrays["params"].size != 1:
                raise FormatError(
                    f"{path}:params holds {arrays['params'].dtype} {arrays['params'].shape}; "
                    "expected the JSON text written by gensci poisson generate"
                )
            params_text: str | bytes = arrays["params"].reshape(()).item()
        else:
            import h5py

            with h5py.File(path, "r") as f:
                missing = [k for k in needed[:4] if k not in f]
                if missing or "params" not in f.attrs:
                    raise FormatError(f"{path} lacks {missing or ['params attribute']}")
                arrays = {k: _h5_dataset(f, k, path) for k in needed[:4]}
                params_text = f.attrs["params"]
        if not isinstance(params_text, (str, bytes)):
            raise FormatError(f"{path}: params is a {type(params_text).__name__}, not JSON text")
        params = parse_json_object(params_text, f"{path}:params")
        fam = arrays["family"]
        if fam.dtype.kind == "S":
            fam = np.char.decode(fam, "utf-8")
        elif fam.dtype.kind == "O":  # variable-length HDF5 strings
            fam = np.array([v.decode("utf-8") if isinstance(v, bytes) else v for v in fam.ravel()])
        if fam.dtype.kind != "U":
            raise DataError(f"{path}:family holds {fam.dtype}, expected text labels")
        family = fam.astype(str)
    except GensciError:
        raise
    except _NPZ_ERRORS as exc:
        raise FormatError(f"cannot read dataset {path}: {exc}") from None
    fields = {
        key: check_numeric(arrays[key], f"{path}:{key}", ndim=3)
        for key in ("rho", "phi", "boundary")
    }
    try:
        return PoissonDataset(fields["rho"], fields["phi"], fields["boundary"], family, params)
    except (ShapeError, DataError) as exc:
        raise type(exc)(f"{path}: {exc}") from None


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if hasattr(obj, "__dataclass_fields__"):
        return asdict(obj)
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")
