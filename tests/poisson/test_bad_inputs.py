"""Bad Poisson fields, datasets and run folders stop with one gensci error naming the file."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from gensci.errors import CheckpointError, DataError, FormatError, ShapeError
from gensci.poisson.cli import _read_field
from gensci.poisson.data import make_dataset, read_dataset, write_dataset
from gensci.poisson.study import load_surrogate
from tests.core.test_bad_files import bad_array_files, check_cases, run_main


def test_field_reader_refuses_bad_numpy_files(tmp_path: Path) -> None:
    cases = bad_array_files(tmp_path, np.arange(16.0).reshape(4, 4), "rho")
    check_cases(lambda p: _read_field(p, "rho"), cases)


def test_field_reader_refuses_bad_hdf5_files(tmp_path: Path) -> None:
    def h5(name: str, **datasets: object) -> Path:
        path = tmp_path / name
        with h5py.File(path, "w") as f:
            for key, value in datasets.items():
                if isinstance(value, str) and value == "group":
                    f.create_group(key)
                else:
                    f.create_dataset(key, data=value)
        return path

    good = h5("good.h5", rho=np.ones((4, 4)))
    raw = good.read_bytes()
    (tmp_path / "cut.h5").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "zero.h5").write_bytes(b"")
    (tmp_path / "text.hdf5").write_text("rho = 1\n")
    cases = {
        "group": (h5("g.h5", rho="group"), FormatError, "HDF5 group, not a dataset"),
        "missing key": (h5("k.h5", phi=np.ones((4, 4))), FormatError, "no dataset 'rho'"),
        "strings": (h5("s.h5", rho=np.array([b"a", b"b"])), DataError, "bytes"),
        "complex": (h5("c.h5", rho=np.ones((4, 4)) * 1j), DataError, "complex"),
        "booleans": (h5("b.h5", rho=np.ones((4, 4), dtype=bool)), DataError, "booleans"),
        "not square": (h5("n.h5", rho=np.ones((4, 5))), ShapeError, "square"),
        "four dims": (h5("d.h5", rho=np.ones((1, 1, 4, 4))), ShapeError, "expected 2 or 3"),
        "inf": (h5("i.h5", rho=np.full((4, 4), -np.inf)), DataError, "NaN/inf"),
        "truncated": (tmp_path / "cut.h5", FormatError, "cannot read"),
        "empty": (tmp_path / "zero.h5", DataError, "empty"),
        "not hdf5": (tmp_path / "text.hdf5", FormatError, "cannot read"),
    }
    check_cases(lambda p: _read_field(p, "rho"), cases)
    assert _read_field(good, "rho").shape == (4, 4)


def test_dataset_reader_refuses_bad_files(tmp_path: Path) -> None:
    ds = make_dataset(2, 8, seed=0)
    good_npz = write_dataset(ds, tmp_path / "good.npz")
    good_h5 = write_dataset(ds, tmp_path / "good.h5")
    arrays = dict(np.load(good_npz))

    def npz(name: str, **changes: object) -> Path:
        path = tmp_path / name
        np.savez(path, **{**arrays, **changes})
        return path

    def h5(name: str, edit) -> Path:  # type: ignore[no-untyped-def]
        path = tmp_path / name
        path.write_bytes(good_h5.read_bytes())
        with h5py.File(path, "a") as f:
            edit(f)
        return path

    def rho_group(f: h5py.File) -> None:
        del f["rho"]
        f.create_group("rho")

    def params(value: object):  # type: ignore[no-untyped-def]
        return lambda f: f.attrs.__setitem__("params", value)

    raw = good_npz.read_bytes()
    (tmp_path / "cut.npz").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "zero.h5").write_bytes(b"")
    cases = {
        "params list": (npz("a.npz", params=np.array("[1, 2]")), FormatError, "JSON list"),
        "params invalid": (npz("b.npz", params=np.array("{n: 8")), FormatError, "not valid JSON"),
        "params number": (npz("c.npz", params=np.array(3.0)), FormatError, "JSON text"),
        "complex rho": (npz("d.npz", rho=arrays["rho"] + 1j), DataError, "complex"),
        "2-d rho": (npz("e.npz", rho=arrays["rho"][0]), ShapeError, "rho has 2 dimension"),
        "nan phi": (npz("f.npz", phi=arrays["phi"] * np.nan), DataError, "phi holds"),
        "numeric family": (npz("g.npz", family=np.array([1, 2])), DataError, "family"),
        "short family": (npz("h.npz", family=np.array(["grf"])), ShapeError, "family"),
        "truncated": (tmp_path / "cut.npz", FormatError, "cannot read"),
        "empty": (tmp_path / "zero.h5", DataError, "empty (0 bytes)"),
        "h5 rho group": (h5("i.h5", rho_group), FormatError, "HDF5 group"),
        "h5 params list": (h5("j.h5", params("[]")), FormatError, "JSON list"),
        "h5 params latin-1": (
            h5("k.h5", params(np.bytes_('{"a": "M\xfcller"}'.encode("latin-1")))),
            FormatError, "not valid JSON",
        ),
        "h5 params number": (h5("l.h5", params(3)), FormatError, "not JSON text"),
        "folder": (tmp_path, FormatError, "unknown dataset suffix"),
    }
    (tmp_path / "sub.npz").mkdir()
    cases["folder"] = (tmp_path / "sub.npz", FormatError, "is a folder")
    check_cases(read_dataset, cases)
    assert len(read_dataset(good_h5)) == 2


def test_run_folder_config_is_checked(tmp_path: Path) -> None:
    (tmp_path / "last.pt").write_bytes(b"")
    cfg = tmp_path / "surrogate_config.json"
    for text, msg in (
        (b"", "empty (0 bytes)"),
        (b'["diffusion"]', "JSON list"),
        (b'{"kind": "diffusion", "n": 16,', "not valid JSON"),
        (b'{"kind": "M\xfcller"}', "not UTF-8"),
        (b'{"kind": "diffusion", "size": 16}', "unknown key"),
        (b'{"kind": "diffusion", "n": "sixteen"}', "invalid SurrogateConfig"),
    ):
        cfg.write_bytes(text)
        with pytest.raises(CheckpointError) as info:
            load_surrogate(tmp_path)
        assert str(cfg) in str(info.value) and msg in str(info.value), info.value


def test_commands_refuse_before_work(tmp_path: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    line = run_main(["poisson", "generate", "--out", tmp_path / "d.txt", "--n-examples", 2,
                     "--n", 8], capsys, monkeypatch)
    assert "d.txt" in line and ".npz" in line and not (tmp_path / "d.txt").exists()
    (tmp_path / "rho.npy").write_bytes(b"")
    line = run_main(["poisson", "solve", "--rho", tmp_path / "rho.npy", "--out",
                     tmp_path / "phi.npy"], capsys, monkeypatch)
    assert "rho.npy is empty" in line
    (tmp_path / "d.npz").write_text(json.dumps({"rho": 1}))
    line = run_main(["poisson", "study", "--data", tmp_path / "d.npz", "--out", tmp_path / "r",
                     "--model", tmp_path / "m.safetensors"], capsys, monkeypatch)
    assert "d.npz" in line and "cannot read" in line
