"""The `gensci symmetry` commands: train on a folder, recover from a measurement file, and one
clear line with exit code 2 for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.core.test_bad_files import run_main


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of 12 images, and a generator trained on it for a few steps."""
    root = tmp_path_factory.mktemp("symmetry")
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:16, :16] - 7.5
    for i in range(12):
        cy, cx = rng.uniform(-3, 3, 2)
        np.save(images / f"im{i:02d}.npy", np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 6.0))
    from typer.testing import CliRunner

    from gensci.cli import app

    result = CliRunner().invoke(app, [
        "symmetry", "train", "--data", str(images), "--out", str(root / "run"),
        "--channels", "4,4", "--latent-fields", "2", "--steps", "6", "--batch-size", "4",
        "--checkpoint-every", "3", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    return root


def test_train_writes_a_model_with_provenance(trained: Path) -> None:
    from gensci.symmetry.model import load_generator

    model = load_generator(trained / "run")
    assert model.config.group == "C4" and model.config.latent_dim == 8
    record = json.loads((trained / "run" / "provenance.json").read_text())
    assert record["n_train"] == 9 and record["steps"] == 6 and "command" in record
    assert (trained / "run" / "metrics.csv").exists()


def test_recover_writes_the_image_and_its_error(trained: Path, capsys, monkeypatch) -> None:
    from gensci.cli import main

    rng = np.random.default_rng(1)
    x = np.load(trained / "images" / "im00.npy")
    a = rng.normal(size=(40, 256)) / np.sqrt(40)
    np.savez(trained / "meas.npz", A=a, y=a @ x.ravel(), x=x)
    out = trained / "rec.npz"
    monkeypatch.setattr("sys.argv", [
        "gensci", "symmetry", "recover", str(trained / "run"), "--measurements",
        str(trained / "meas.npz"), "--out", str(out), "--steps", "20", "--restarts", "2",
        "--baseline"])
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code in (0, None)
    with np.load(out) as f:
        assert f["x_hat"].shape == (1, 16, 16) and np.isfinite(f["relative_error"]).all()
        assert f["relative_error_lasso"].shape == (1,)
    assert "relative error" in capsys.readouterr().out


def _npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def test_bad_input_is_one_line_and_exit_2(trained: Path, capsys, monkeypatch) -> None:
    t = trained
    model, ok_a = str(t / "run"), np.ones((5, 256))
    cases = {
        "mismatched": (_npz(t / "mm.npz", A=ok_a, y=np.ones(4)), "must match"),
        "m = 0": (_npz(t / "m0.npz", A=np.ones((0, 256)), y=np.ones(0)), "m = 0"),
        "nan": (_npz(t / "nan.npz", A=ok_a, y=np.array([1, 2, np.nan, 4, 5.0])), "NaN"),
        "columns": (_npz(t / "cols.npz", A=np.ones((5, 100)), y=np.ones(5)), "columns"),
        "no y": (_npz(t / "noy.npz", A=ok_a), "lacks"),
    }
    for case, (path, text) in cases.items():
        line = run_main(["symmetry", "recover", model, "--measurements", path, "--out",
                         t / f"o_{path.stem}.npz"], capsys, monkeypatch)
        assert text in line and str(path) in line, (case, line)
    line = run_main(["symmetry", "recover", model, "--measurements", t / "mm.npz", "--out",
                     t / "o.txt"], capsys, monkeypatch)
    assert "suffix" in line
    mixed = t / "mixed"
    mixed.mkdir()
    np.save(mixed / "a.npy", np.zeros((16, 16)))
    np.save(mixed / "b.npy", np.zeros((20, 20)))
    line = run_main(["symmetry", "train", "--data", mixed, "--out", t / "r2"], capsys,
                    monkeypatch)
    assert "mixes sizes" in line and "b.npy" in line
    line = run_main(["symmetry", "train", "--data", t / "images", "--out", t / "run",
                     "--channels", "4,8", "--latent-fields", "2", "--steps", "6"], capsys,
                    monkeypatch)
    assert "another model" in line and "channels" in line  # a resume with other settings
    line = run_main(["symmetry", "train", "--data", "digits", "--out", t / "r3",
                     "--latent-fields", "0"], capsys, monkeypatch)
    assert "--latent-fields" in line


def test_study_at_the_tiny_scale_writes_its_report(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from gensci.cli import app

    out = tmp_path / "study"
    result = CliRunner().invoke(app, ["symmetry", "study", "--out", str(out), "--scale", "tiny",
                                      "--device", "cpu"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["equivariance_error"]["C4"]["C4 (90 deg)"] <= 1e-5
    assert report["equivariance_error"]["plain"]["C4 (90 deg)"] > 0.1
    rows = report["compressed_sensing"]["rows"]
    assert {r["method"] for r in rows} == {"C4", "plain", "Lasso (Haar)"}
    assert all(0.0 <= r["success"] <= 1.0 and r["seconds_per_image"] > 0 for r in rows)
    assert (out / "success_vs_m.png").stat().st_size > 1000 and (out / "report.md").exists()
