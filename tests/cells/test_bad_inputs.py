"""Bad .h5ad files and model files stop with one gensci error naming the file; outputs must end
in .h5ad; a bootstrap band of zero width is not reported as an interval."""

from __future__ import annotations

import json
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from gensci import checkpoint
from gensci.cells.cli import _read
from gensci.cells.delta import balanced_delta, regressed_delta
from gensci.cells.metrics import evaluate_prediction, summarise
from gensci.cells.model import FORMAT, read_model_metadata
from gensci.errors import CheckpointError, DataError, FormatError
from gensci.models import VAE, VAEConfig
from tests.core.test_bad_files import check_cases, run_main


def _adata(x: np.ndarray | sp.spmatrix, **layers: np.ndarray) -> ad.AnnData:
    n = x.shape[0]
    obs = pd.DataFrame(
        {"condition": ["control", "stimulated"] * (n // 2), "cell_type": ["B"] * n},
        index=[f"c{i}" for i in range(n)],
    )
    return ad.AnnData(X=x, obs=obs, layers=layers or None)


def test_h5ad_reader_refuses_bad_files(tmp_path: Path) -> None:
    x = np.arange(8, dtype=np.float32).reshape(4, 2) / 8

    def h5ad(name: str, a: ad.AnnData) -> Path:
        a.write_h5ad(tmp_path / name)
        return tmp_path / name

    good = h5ad("good.h5ad", _adata(x))
    raw = good.read_bytes()
    (tmp_path / "cut.h5ad").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "zero.h5ad").write_bytes(b"")
    np.save(tmp_path / "array.npy", x)
    (tmp_path / "dir.h5ad").mkdir()
    nan_sparse = sp.csr_matrix(x)
    nan_sparse.data[1] = np.nan
    cases = {
        "empty": (tmp_path / "zero.h5ad", DataError, "empty (0 bytes)"),
        "truncated": (tmp_path / "cut.h5ad", FormatError, "not a readable .h5ad"),
        "not hdf5": (tmp_path / "array.npy", FormatError, "not a readable .h5ad"),
        "folder": (tmp_path / "dir.h5ad", DataError, "is a folder"),
        "missing": (tmp_path / "none.h5ad", DataError, "does not exist"),
        "complex X": (h5ad("c.h5ad", _adata(x + 1j)), DataError, "X of"),
        "boolean X": (h5ad("b.h5ad", _adata(x > 0.3)), DataError, "booleans"),
        "nan X": (h5ad("n.h5ad", _adata(np.where(x > 0.5, np.nan, x))), DataError, "NaN/inf"),
        "nan sparse X": (h5ad("s.h5ad", _adata(nan_sparse)), DataError, "NaN/inf"),
        "inf layer": (h5ad("l.h5ad", _adata(x, counts=np.full(x.shape, np.inf))), DataError,
                      "layers['counts']"),
        "no cells": (h5ad("e.h5ad", _adata(x[:0])), DataError, "empty (shape (0, 2))"),
    }
    check_cases(_read, cases)
    assert _read(good).shape == (4, 2)


def _model_file(path: Path, meta: object) -> Path:
    vae = VAE(VAEConfig(data_dim=2, latent_dim=1, hidden=(2,)))
    return checkpoint.save(vae, path, metadata=meta)  # type: ignore[arg-type]


def test_model_metadata_is_checked(tmp_path: Path) -> None:
    reg = {"condition_key": "condition", "control": "control", "perturbed": "stimulated",
           "cell_type_key": "cell_type", "layer": ""}
    good = {"format": FORMAT, "gene_names": ["g0", "g1"], "registry": reg, "conditional": False}
    assert read_model_metadata(_model_file(tmp_path / "ok.safetensors", good))["extra"] == {}
    bad = {
        "other format": ({**good, "format": "x"}, "not a gensci.cells model"),
        "no registry": ({k: v for k, v in good.items() if k != "registry"}, "lacks ['registry']"),
        "registry list": ({**good, "registry": ["condition"]}, "registry is a list"),
        "registry keys": ({**good, "registry": {"control": "c"}}, "lacks ['condition_key'"),
        "gene names": ({**good, "gene_names": "g0,g1"}, "gene_names"),
        "held out": ({**good, "extra": {"held_out": "B"}}, "held_out"),
    }
    for case, (meta, msg) in bad.items():
        path = _model_file(tmp_path / f"{case.replace(' ', '_')}.safetensors", meta)
        with pytest.raises(CheckpointError) as info:
            read_model_metadata(path)
        assert str(path) in str(info.value) and msg in str(info.value), (case, info.value)


def test_outputs_must_end_in_h5ad(tmp_path: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    line = run_main(["cells", "simulate", "--out", tmp_path / "b.csv"], capsys, monkeypatch)
    assert "b.csv" in line and ".h5ad" in line
    line = run_main(["cells", "predict", tmp_path / "m", tmp_path / "d.h5ad", "--cell-type", "B",
                     "--out", tmp_path / "p.txt"], capsys, monkeypatch)
    assert "p.txt" in line and ".h5ad" in line
    _adata(np.ones((4, 2), dtype=np.float32) * 0.5).write_h5ad(tmp_path / "d.h5ad")
    meta_path = tmp_path / "m.safetensors"
    _model_file(meta_path, {"format": FORMAT, "gene_names": ["g0", "g1"]})
    line = run_main(["cells", "predict", meta_path, tmp_path / "d.h5ad", "--cell-type", "B",
                     "--out", tmp_path / "p.h5ad"], capsys, monkeypatch)
    assert "m.safetensors" in line and "registry" in line
    assert not (tmp_path / "p.h5ad").exists()
    (tmp_path / "e.h5ad").write_bytes(b"")
    line = run_main(["cells", "study", tmp_path / "e.h5ad", "--out", tmp_path / "s"],
                    capsys, monkeypatch)
    assert "e.h5ad is empty" in line and not (tmp_path / "s").exists()


def test_zero_width_bootstrap_is_no_interval() -> None:
    # one cell per (type, condition) group: every resampling gives the same delta
    x = np.array([[0.0, 1.0], [1.0, 3.0], [5.0, 5.0], [7.0, 4.0]])
    types = np.array(["A", "A", "B", "B"])
    pert = np.array([False, True, False, True])
    res = balanced_delta(x, types, pert, n_bootstrap=20)
    assert res.norm_ci is None and res.ci_low is None and res.ci_high is None
    assert "same |delta|" in res.ci_unavailable and "[1]" in res.ci_unavailable
    uns = res.to_uns()
    assert "norm_ci" not in uns and "ci_low" not in uns and uns["ci_unavailable"]
    json.dumps({k: v for k, v in uns.items() if isinstance(v, (str, float, int))})
    none = balanced_delta(x, types, pert, n_bootstrap=0)
    assert none.norm_ci is None and "n_bootstrap = 0" in none.to_uns()["ci_unavailable"]
    _, reg = regressed_delta(x, types, pert, x[:1], ridge=1.0, n_bootstrap=10)
    assert reg.norm_ci is None and reg.ci_unavailable
    # with spread, an interval is reported
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(40, 2))
    many = balanced_delta(xs, np.repeat(["A", "B"], 20), np.tile([False, True], 20),
                          n_bootstrap=20)
    assert many.norm_ci is not None and many.norm_ci[1] > many.norm_ci[0]
    assert set(many.to_uns()) >= {"ci_low", "ci_high", "norm_ci"}


def test_metric_bands_of_zero_width_are_not_intervals() -> None:
    rng = np.random.default_rng(0)
    ctrl = rng.normal(size=(12, 6))
    real = ctrl + 1.0 + rng.normal(scale=0.1, size=(12, 6))
    deg = np.arange(6)
    same = evaluate_prediction(ctrl, real, ctrl, deg, n_bootstrap=10)["delta_corr_deg"]
    assert same["ci_low"] is None and same["ci_high"] is None and "agree" in same["ci_unavailable"]
    none = evaluate_prediction(real, real, ctrl, deg, n_bootstrap=0)["r2_deg"]
    assert none["ci_low"] is None and none["ci_unavailable"] == "no bootstrap draws"
    good = evaluate_prediction(real, real, ctrl, deg, n_bootstrap=10)["r2_deg"]
    assert good["ci_low"] < good["ci_high"]
    summary = summarise({"A": {"r2_deg": none}})
    assert summary["r2_deg"]["ci_low"] is None and summary["r2_deg"]["ci_unavailable"]
