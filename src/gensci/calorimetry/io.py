"""HDF5 files in the CaloChallenge layout: `incident_energies` (N, 1) and `showers` (N, voxels),
both in MeV, with the geometry's name (attribute `geometry`) and its binning (attribute
`binning`, JSON) beside them. A CaloChallenge file without these attributes is read too: its
geometry is the one whose voxel count matches.

Reading is chunked: the showers are read block by block into one preallocated float32 array and
each block is checked (finite, non-negative), so a file never needs to fit in memory twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from tqdm.auto import tqdm

from gensci.calorimetry.geometry import Geometry, get_geometry, infer_geometry
from gensci.errors import ConfigError, DataError, FormatError, ShapeError, check_real_dtype
from gensci.files import check_input_file
from gensci.runtime import atomic_save

ENERGIES, SHOWERS = "incident_energies", "showers"
CHUNK = 10_000


@dataclass
class ShowerFileInfo:
    path: Path
    n: int
    geometry: Geometry
    attrs: dict[str, Any]


def _open(path: str | Path) -> h5py.File:
    p = check_input_file(path, "shower file")
    try:
        return h5py.File(p, "r")
    except OSError as exc:
        raise FormatError(f"{p} is not a readable HDF5 file: {str(exc)[:160]}") from None


def inspect_showers(path: str | Path) -> ShowerFileInfo:
    """Return the size and geometry of a shower file after checking its layout (no data read)."""
    p = Path(path)
    with _open(p) as f:
        missing = [k for k in (ENERGIES, SHOWERS) if k not in f]
        if missing:
            raise FormatError(f"{p} has no dataset {missing[0]!r} (CaloChallenge layout: "
                              f"{ENERGIES!r} (N, 1) and {SHOWERS!r} (N, voxels)); found "
                              f"{sorted(f.keys())}")
        e, s = f[ENERGIES], f[SHOWERS]
        if not isinstance(e, h5py.Dataset) or not isinstance(s, h5py.Dataset):
            raise FormatError(f"{p}: {ENERGIES!r} and {SHOWERS!r} must be datasets, not groups")
        check_real_dtype(e.dtype, f"{p}:{ENERGIES}")
        check_real_dtype(s.dtype, f"{p}:{SHOWERS}")
        if s.ndim != 2:
            raise ShapeError(f"{p}:{SHOWERS} has shape {s.shape}; expected (N, voxels)")
        if e.shape not in ((s.shape[0], 1), (s.shape[0],)):
            raise ShapeError(f"{p}:{ENERGIES} has shape {e.shape} but {SHOWERS} holds "
                             f"{s.shape[0]} showers; expected ({s.shape[0]}, 1)")
        if s.shape[0] == 0:
            raise DataError(f"{p} holds no showers")
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
        name = attrs.get("geometry")
        if name is None:
            geometry = infer_geometry(s.shape[1], str(p))
        else:
            try:
                geometry = get_geometry(str(name))
            except ConfigError as exc:
                raise FormatError(f"{p}: {exc}") from None
            if s.shape[1] != geometry.n_voxels:
                raise ShapeError(f"{p} names geometry {name!r} ({geometry.n_voxels} voxels) but "
                                 f"its showers have {s.shape[1]} voxels")
        return ShowerFileInfo(p, int(s.shape[0]), geometry, attrs)


def _check_block(e: np.ndarray, s: np.ndarray, start: int, where: str) -> None:
    """Raise DataError naming the first bad shower (row) of a block."""
    for name, arr in ((ENERGIES, e), (SHOWERS, s)):
        bad = ~np.isfinite(arr)
        if bad.any():
            row = start + int(np.argwhere(bad)[0][0])
            raise DataError(f"{where}:{name} holds {int(bad.sum())} NaN/inf values "
                            f"(first in shower {row})")
    if (e <= 0).any():
        row = start + int(np.argwhere(e <= 0)[0][0])
        raise DataError(f"{where}:{ENERGIES} must be > 0 MeV; shower {row} has {float(e[row - start]):g}")
    if (s < 0).any():
        row = start + int(np.argwhere(s < 0)[0][0])
        raise DataError(f"{where}:{SHOWERS} holds negative voxel energies (first in shower {row}: "
                        f"{float(s[row - start].min()):g} MeV)")


def read_showers(
    path: str | Path, limit: int | None = None, chunk: int = CHUNK, progress: bool = False
) -> tuple[np.ndarray, np.ndarray, ShowerFileInfo]:
    """Return (incident energies (N,) float64 MeV, showers (N, D) float32 MeV, file info).

    Reads `chunk` showers at a time into one preallocated array (the file is never held twice)."""
    info = inspect_showers(path)
    n = info.n if limit is None else min(limit, info.n)
    energies = np.empty(n, dtype=np.float64)
    showers = np.empty((n, info.geometry.n_voxels), dtype=np.float32)
    with _open(path) as f:
        e_ds, s_ds = f[ENERGIES], f[SHOWERS]
        for start in tqdm(range(0, n, chunk), desc="read", disable=not progress, leave=False):
            stop = min(start + chunk, n)
            e = np.asarray(e_ds[start:stop], dtype=np.float64).reshape(-1)
            s_ds.read_direct(showers, np.s_[start:stop], np.s_[start:stop])
            _check_block(e, showers[start:stop], start, str(info.path))
            energies[start:stop] = e
    return energies, showers, info


def write_showers(
    path: str | Path,
    energies: np.ndarray,
    showers: np.ndarray,
    geometry: Geometry,
    overwrite: bool = False,
    attrs: dict[str, Any] | None = None,
) -> Path:
    """Write energies (N,) and showers (N, D) in MeV to an HDF5 file in the CaloChallenge layout,
    atomically; return the path."""
    energies = np.asarray(energies, dtype=np.float64).reshape(-1, 1)
    if showers.shape != (len(energies), geometry.n_voxels):
        raise ShapeError(f"showers have shape {showers.shape}; expected ({len(energies)}, "
                         f"{geometry.n_voxels}) for geometry {geometry.name}")

    def writer(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            chunks = (min(len(energies), 1024), showers.shape[1]) if len(energies) else None
            f.create_dataset(ENERGIES, data=energies, dtype="f8")
            f.create_dataset(SHOWERS, data=showers, dtype="f4", chunks=chunks,
                             compression="gzip", compression_opts=1)
            f.attrs["geometry"] = geometry.name
            f.attrs["binning"] = geometry.to_json()
            for k, v in (attrs or {}).items():
                f.attrs[k] = v if isinstance(v, (int, float, str)) else json.dumps(v)

    return atomic_save(path, writer, overwrite=overwrite, suffix=".h5")


def write_virtual(
    path: str | Path, shards: list[Path], geometry: Geometry, overwrite: bool = False,
    attrs: dict[str, Any] | None = None,
) -> Path:
    """Write an HDF5 file whose `incident_energies` and `showers` are virtual datasets joining the
    shards (paths stored relative to the file, so the folder can move as a whole)."""
    sizes = [inspect_showers(s).n for s in shards]
    total, d = sum(sizes), geometry.n_voxels
    out = Path(path)

    def writer(tmp: Path) -> None:
        e_lay = h5py.VirtualLayout(shape=(total, 1), dtype="f8")
        s_lay = h5py.VirtualLayout(shape=(total, d), dtype="f4")
        start = 0
        for shard, n in zip(shards, sizes, strict=True):
            rel = str(Path(shard).resolve().relative_to(out.resolve().parent))
            e_lay[start:start + n] = h5py.VirtualSource(rel, ENERGIES, shape=(n, 1))
            s_lay[start:start + n] = h5py.VirtualSource(rel, SHOWERS, shape=(n, d))
            start += n
        with h5py.File(tmp, "w") as f:
            f.create_virtual_dataset(ENERGIES, e_lay)
            f.create_virtual_dataset(SHOWERS, s_lay)
            f.attrs["geometry"] = geometry.name
            f.attrs["binning"] = geometry.to_json()
            for k, v in (attrs or {}).items():
                f.attrs[k] = v if isinstance(v, (int, float, str)) else json.dumps(v)

    return atomic_save(out, writer, overwrite=overwrite, suffix=".h5")
