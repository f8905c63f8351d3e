"""Bad input files stop with one gensci error naming the file: the shared checks, checkpoints,
and a representative set through the real `gensci` console script (exit code 2, one line).

`bad_array_files` and `run_main` are used by the studies' test_bad_inputs.py too.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save as st_save

from gensci import checkpoint
from gensci.errors import (
    CheckpointError,
    DataError,
    FormatError,
    GensciError,
    ShapeError,
    check_numeric,
)
from gensci.files import check_input_file, check_suffix, parse_json_object, read_text
from gensci.models import MADE, MADEConfig

GENSCI = shutil.which("gensci") or str(Path(sys.executable).parent / "gensci")


def _npy(arr: np.ndarray, allow_pickle: bool = False) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=allow_pickle)
    return buf.getvalue()


def _npz(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def bad_array_files(
    folder: Path, good: np.ndarray, key: str, suffixes: tuple[str, ...] = (".npy", ".npz")
) -> dict[str, tuple[Path, type[GensciError], str]]:
    """Write one bad file per case; return {case: (path, error class, text the message holds)}.

    `good` is a valid array of the reader's shape; .npz files store their array under `key`.
    """
    text = np.full(good.shape, "a")
    contents = {
        "strings": (text, DataError, "text"),
        "complex": (good + 1j, DataError, "complex"),
        "booleans": (good > 0, DataError, "booleans"),
        "nan": (np.where(good == good.flat[0], np.nan, good), DataError, "NaN"),
        "inf": (np.full(good.shape, np.inf), DataError, "NaN/inf"),
        "1-d": (np.ones(7), ShapeError, "shape"),
    }
    cases: dict[str, tuple[Path, type[GensciError], str]] = {}
    for suffix in suffixes:
        pack = _npy if suffix == ".npy" else (lambda a: _npz(**{key: a}))
        valid = pack(good)
        files = {
            "empty": (b"", DataError, "empty"),
            "truncated": (valid[: len(valid) // 2], FormatError, "cannot read"),
        }
        for name, (arr, err, msg) in contents.items():
            files[name] = (pack(arr), err, msg)
        if suffix == ".npy":
            files["objects"] = (
                _npy(np.array([[1, None]], dtype=object), allow_pickle=True), FormatError,
                "Object arrays",
            )
        else:
            files["wrong key"] = (_npz(other=good, more=good), FormatError, key)
        for name, (data, err, msg) in files.items():
            path = folder / f"{name.replace(' ', '_')}{suffix}"
            path.write_bytes(data)
            cases[f"{name}{suffix}"] = (path, err, msg)
    (folder / f"folder{suffixes[0]}").mkdir()
    cases["folder"] = (folder / f"folder{suffixes[0]}", FormatError, "folder")
    cases["missing"] = (folder / f"missing{suffixes[0]}", FormatError, "does not exist")
    return cases


def check_cases(reader, cases: dict[str, tuple[Path, type[GensciError], str]]) -> None:  # type: ignore[no-untyped-def]
    """Assert that `reader(path)` raises exactly the expected class, naming the file, per case."""
    for case, (path, err, msg) in cases.items():
        with pytest.raises(GensciError) as info:
            reader(path)
        assert type(info.value) is err, f"{case}: {type(info.value).__name__}: {info.value}"
        text = str(info.value)
        assert str(path) in text, f"{case}: the message does not name the file: {text}"
        assert msg in text, f"{case}: {msg!r} not in {text!r}"


def run_main(args: list[object], capsys: pytest.CaptureFixture[str], monkeypatch) -> str:  # type: ignore[no-untyped-def]
    """Run `gensci ARGS` in this process (as the console script does); assert exit code 2 and one
    `error:` line on stderr; return that line."""
    from gensci.cli import main

    monkeypatch.setattr(sys, "argv", ["gensci", *map(str, args)])
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main()
    err = capsys.readouterr().err
    assert info.value.code == 2, f"{args}: exit {info.value.code}\n{err}"
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err
    assert len([line for line in lines if line.startswith("error:")]) == 1, err
    return next(line for line in lines if line.startswith("error:"))


# -- the shared checks ------------------------------------------------------------------------


def test_check_numeric_refuses_what_is_not_real_numbers() -> None:
    ok = check_numeric(np.arange(6, dtype=np.int16).reshape(2, 3), "a", ndim=2)
    assert ok.dtype == np.float64 and ok.shape == (2, 3)
    assert check_numeric(torch.ones(3, dtype=torch.float16), "t", ndim=(1, 2)).dtype == np.float64
    refused = {
        "complex": np.ones(3, dtype=np.complex64),
        "booleans": np.ones(3, dtype=bool),
        "text": np.array(["1.0", "2.0"]),
        "bytes": np.array([b"1"]),
        "Python objects": np.array([1.0, None], dtype=object),
        "structured records": np.zeros(2, dtype=[("a", "f8")]),
        "dates": np.array(["2020-01-01"], dtype="datetime64[D]"),
    }
    for word, arr in refused.items():
        with pytest.raises(DataError, match=f"field x holds {word} .*not real numbers"):
            check_numeric(arr, "field x")
    with pytest.raises(ShapeError, match="field x has 1 dimension.*expected 2 or 3"):
        check_numeric(np.ones(3), "field x", ndim=(2, 3))
    with pytest.raises(DataError, match="NaN/inf"):
        check_numeric(np.array([1.0, -np.inf]), "field x")
    with pytest.raises(DataError, match="empty"):
        check_numeric(np.ones((0, 3)), "field x")


def test_file_checks_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match=f"{tmp_path / 'no.txt'} does not exist"):
        check_input_file(tmp_path / "no.txt")
    with pytest.raises(FormatError, match="is a folder, not a file"):
        check_input_file(tmp_path)
    (tmp_path / "zero.txt").write_bytes(b"")
    with pytest.raises(DataError, match=r"zero.txt is empty \(0 bytes\)"):
        read_text(tmp_path / "zero.txt")
    (tmp_path / "blank.txt").write_text("\n  \n")
    with pytest.raises(DataError, match="blank.txt is empty"):
        read_text(tmp_path / "blank.txt")
    (tmp_path / "latin.txt").write_bytes("a: 1\nname: Müller\n".encode("latin-1"))
    with pytest.raises(FormatError, match=r"latin.txt is not UTF-8 text: byte 0xfc on line 2"):
        read_text(tmp_path / "latin.txt")
    (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbfa,b\n")
    assert read_text(tmp_path / "bom.txt") == "a,b\n"
    where = "x.json"
    for text, kind in (("[1, 2]", "list"), ('"s"', "string"), ("3", "number"), ("null", "null")):
        with pytest.raises(FormatError, match=f"x.json holds a JSON {kind}"):
            parse_json_object(text, where)
    with pytest.raises(FormatError, match="x.json is not valid JSON"):
        parse_json_object("{'a': 1}", where)
    with pytest.raises(FormatError, match="x.json is not valid JSON"):
        parse_json_object(b"\xff\xfe{}", where)
    assert parse_json_object('{"a": 1}', where) == {"a": 1}
    with pytest.raises(FormatError, match=r"out.txt has the wrong suffix.*\.h5ad"):
        check_suffix(tmp_path / "out.txt", (".h5ad",), "an AnnData")
    with pytest.raises(FormatError, match="wrong suffix"):
        check_suffix(tmp_path / ".h5ad", (".h5ad",), "an AnnData")
    assert check_suffix(tmp_path / "Out.H5AD", (".h5ad",), "an AnnData").name == "Out.H5AD"


# -- checkpoints ------------------------------------------------------------------------------


def _checkpoint_bytes(tensors: dict[str, torch.Tensor] | None = None, **header: str) -> bytes:
    model = MADE(MADEConfig(n_dims=2, n_categories=2, hidden=(4,)))
    base = {
        "format": "pt",
        "gensci_class": "gensci.models.autoregressive.MADE",
        "gensci_config": json.dumps({"n_dims": 2, "n_categories": 2, "hidden": [4]}),
        "gensci_metadata": json.dumps({"note": 1}),
    }
    base.update(header)
    base = {k: v for k, v in base.items() if v is not None}
    if tensors is None:
        tensors = {k: v.clone() for k, v in model.state_dict().items()}
    return st_save(tensors, metadata=base)


def test_bad_checkpoints_are_named(tmp_path: Path) -> None:
    good = _checkpoint_bytes()
    (tmp_path / "good.safetensors").write_bytes(good)
    assert checkpoint.load_metadata(tmp_path / "good.safetensors") == {"note": 1}
    nan_weights = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
                   for k, v in MADE(MADEConfig(n_dims=2, n_categories=2, hidden=(4,)))
                   .state_dict().items()}
    files = {
        "empty": (b"", "empty (0 bytes)"),
        "truncated": (good[: len(good) // 2], "corrupt or truncated"),
        "not safetensors": (b"\x10\x00\x00\x00\x00\x00\x00\x00[1, 2, 3]       ", "truncated"),
        "config list": (_checkpoint_bytes(gensci_config="[1, 2]"), "gensci_config in"),
        "config string": (_checkpoint_bytes(gensci_config='"abc"'), "JSON string"),
        "config invalid": (_checkpoint_bytes(gensci_config="{not json"), "not valid JSON"),
        "metadata list": (_checkpoint_bytes(gensci_metadata="[]"), "JSON list"),
        "metadata invalid": (_checkpoint_bytes(gensci_metadata="{"), "not valid JSON"),
        "no config": (_checkpoint_bytes(gensci_config=None), "not a gensci checkpoint"),
        "no class": (_checkpoint_bytes(gensci_class=None), "not a gensci checkpoint"),
        "nan weights": (_checkpoint_bytes(nan_weights), "NaN/inf"),
        "complex weights": (
            _checkpoint_bytes({"w": torch.zeros(2, dtype=torch.complex64)}), "complex",
        ),
    }
    for case, (data, msg) in files.items():
        path = tmp_path / f"{case.replace(' ', '_')}.safetensors"
        path.write_bytes(data)
        for reader in (checkpoint.load, checkpoint.load_metadata):
            with pytest.raises(CheckpointError) as info:
                reader(path)
            assert str(path) in str(info.value) and msg in str(info.value), (case, info.value)
    with pytest.raises(CheckpointError, match="is a folder"):
        checkpoint.load(tmp_path)
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        checkpoint.load_metadata(tmp_path / "nope.safetensors")


# -- through the console script ---------------------------------------------------------------


def _console(args: list[object], cwd: Path) -> tuple[int, str]:
    proc = subprocess.run(
        [GENSCI, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    return proc.returncode, proc.stderr


def test_console_script_gives_one_error_line(tmp_path: Path) -> None:
    from gensci.tomography.io import Sinogram, write_sinogram

    (tmp_path / "empty.npy").write_bytes(b"")
    sino = write_sinogram(
        tmp_path / "s.npz", Sinogram(np.ones((8, 4)), np.arange(4.0), 0.01, 4)
    )
    (tmp_path / "meta.safetensors").write_bytes(_checkpoint_bytes(gensci_metadata="[1]"))
    import h5py

    with h5py.File(tmp_path / "group.h5", "w") as f:
        f.create_group("rho")
    (tmp_path / "a.fasta").write_bytes(b">a\nAC\xffD\n")
    runs = {
        # an EOFError from NumPy once escaped as "interrupted", exit 130
        "empty image": (["ct", "simulate", tmp_path / "empty.npy", "--out", tmp_path / "o.npz"],
                        "empty.npy is empty"),
        "metadata not an object": (
            ["ct", "reconstruct", sino, "--out", tmp_path / "rec", "--method", "dps",
             "--prior", tmp_path / "meta.safetensors", "--device", "cpu"],
            "JSON list",
        ),
        "group not dataset": (["poisson", "solve", "--rho", tmp_path / "group.h5", "--out",
                               tmp_path / "phi.npy"], "HDF5 group"),
        "output suffix": (["cells", "predict", tmp_path / "m", tmp_path / "d.h5ad",
                           "--cell-type", "B", "--out", tmp_path / "x.txt"], ".h5ad"),
        "non-UTF-8 alignment": (["protein", "train", tmp_path / "a.fasta", "--out",
                                 tmp_path / "p"], "not UTF-8"),
    }
    for case, (args, msg) in runs.items():
        code, err = _console(args, tmp_path)
        lines = [line for line in err.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("error:")]
        assert code == 2 and "Traceback" not in err, f"{case}: exit {code}\n{err}"
        assert len(errors) == 1 and msg in errors[0], f"{case}: {err}"
    assert not (tmp_path / "rec").exists() and not (tmp_path / "p").exists()
