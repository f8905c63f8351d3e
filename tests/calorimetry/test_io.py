"""CaloChallenge HDF5 files: round trip, a file without our attributes, and one clear error for
each kind of bad file."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from gensci.calorimetry.geometry import get_geometry
from gensci.calorimetry.io import read_showers, write_showers, write_virtual
from gensci.errors import DataError, FormatError, ShapeError


def test_round_trip_and_chunked_read(tmp_path: Path) -> None:
    geo = get_geometry("ds1-photon")
    rng = np.random.default_rng(0)
    e = rng.uniform(1e3, 1e5, 25)
    x = rng.exponential(5.0, (25, geo.n_voxels)).astype(np.float32)
    write_showers(tmp_path / "a.h5", e, x, geo, attrs={"threshold_mev": 1.5})
    e2, x2, info = read_showers(tmp_path / "a.h5", chunk=7)
    assert np.array_equal(e, e2) and np.array_equal(x, x2)
    assert info.geometry.name == "ds1-photon" and info.attrs["threshold_mev"] == 1.5
    with h5py.File(tmp_path / "a.h5") as f:
        assert f["incident_energies"].shape == (25, 1) and f["showers"].shape == (25, 368)
    # a virtual file joining two shards reads as their concatenation
    write_showers(tmp_path / "b.h5", e[:5], x[:5], geo)
    write_virtual(tmp_path / "v.h5", [tmp_path / "a.h5", tmp_path / "b.h5"], geo)
    e3, x3, _ = read_showers(tmp_path / "v.h5")
    assert np.array_equal(x3, np.concatenate([x, x[:5]])) and len(e3) == 30


def _raw(path: Path, e: np.ndarray, x: np.ndarray, geometry: str | None = None) -> Path:
    with h5py.File(path, "w") as f:
        f["incident_energies"] = e
        f["showers"] = x
        if geometry:
            f.attrs["geometry"] = geometry
    return path


def test_a_calochallenge_file_without_attributes_is_read(tmp_path: Path) -> None:
    p = _raw(tmp_path / "cc.hdf5", np.full((4, 1), 1e4), np.ones((4, 6480)))
    assert read_showers(p)[2].geometry.name == "ds2"


def test_bad_files_raise_one_clear_error(tmp_path: Path) -> None:
    ok_e, ok_x = np.full((4, 1), 1e4), np.ones((4, 368))
    with h5py.File(tmp_path / "m.h5", "w") as f:
        f["showers"] = ok_x
    with pytest.raises(FormatError, match="incident_energies"):
        read_showers(tmp_path / "m.h5")
    with pytest.raises(ShapeError, match="ds2"):
        read_showers(_raw(tmp_path / "g.h5", ok_e, ok_x, "ds2"))
    with pytest.raises(ShapeError, match="matches no known geometry"):
        read_showers(_raw(tmp_path / "u.h5", ok_e, np.ones((4, 100))))
    neg = ok_x.copy()
    neg[2, 5] = -1.0
    with pytest.raises(DataError, match="negative.*shower 2"):
        read_showers(_raw(tmp_path / "n.h5", ok_e, neg))
    nan = ok_x.copy()
    nan[3, 0] = np.nan
    with pytest.raises(DataError, match="NaN.*shower 3"):
        read_showers(_raw(tmp_path / "nan.h5", ok_e, nan))
    with pytest.raises(DataError, match="> 0 MeV"):
        read_showers(_raw(tmp_path / "e.h5", -ok_e, ok_x))
    with pytest.raises(ShapeError, match="incident_energies"):
        read_showers(_raw(tmp_path / "s.h5", np.ones((3, 1)), ok_x))
    (tmp_path / "t.h5").write_text("not hdf5")
    with pytest.raises(FormatError, match="not a readable HDF5"):
        read_showers(tmp_path / "t.h5")
