"""The `gensci calo` commands end to end at a tiny size, one clear line with exit code 2 for bad
input, and generation sharded over 2 torchrun processes."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from tests.core.test_bad_files import run_main
from tests.launch import torchrun


def _ok(*args: object) -> str:
    from gensci.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("calo")
    _ok("calo", "simulate", "--out", root / "train.h5", "--n", 400, "--seed", 1)
    _ok("calo", "simulate", "--out", root / "test.h5", "--n", 300, "--seed", 2)
    _ok("calo", "simulate", "--out", root / "ds2.h5", "--n", 4, "--geometry", "ds2")
    _ok("calo", "train", root / "train.h5", "--model", "parallel", "--out", root / "model",
        "--steps", 30, "--batch-size", 32, "--hidden", "16,16", "--device", "cpu")
    return root


def test_train_generate_evaluate(run: Path) -> None:
    record = json.loads((run / "model" / "provenance.json").read_text())
    assert record["geometry"] == "ds1-photon" and record["n_train"] == 360
    assert "gensci calo train" in record["command"]
    _ok("calo", "generate", run / "model", "--energies", run / "test.h5", "--out", run / "g.h5",
        "--device", "cpu")
    with h5py.File(run / "g.h5") as f:
        assert f["showers"].shape == (300, 368) and f.attrs["geometry"] == "ds1-photon"
        assert np.array_equal(f["incident_energies"][:], h5py.File(run / "test.h5")[
            "incident_energies"][:])
    out = _ok("calo", "evaluate", run / "test.h5", run / "g.h5", "--out", run / "eval",
              "--classifier-steps", 100)
    assert "low-level AUC" in out
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert 0.0 <= metrics["auc_low_level"] <= 1.0 and "E_dep/E_inc" in metrics["separation_power"]
    assert (run / "eval" / "observables.png").stat().st_size > 1000


def test_bad_input_is_one_line_and_exit_2(run: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    line = run_main(["calo", "generate", run / "model", "--energies", run / "ds2.h5", "--out",
                     run / "x.h5"], capsys, monkeypatch)
    assert "trained on geometry 'ds1-photon'" in line
    line = run_main(["calo", "evaluate", run / "test.h5", run / "ds2.h5", "--out", run / "e2"],
                    capsys, monkeypatch)
    assert "ds2" in line
    with h5py.File(run / "bad.h5", "w") as f:
        f["showers"] = np.ones((3, 368))
    line = run_main(["calo", "train", run / "bad.h5", "--out", run / "m2"], capsys, monkeypatch)
    assert "incident_energies" in line
    line = run_main(["calo", "simulate", "--out", run / "s.npz"], capsys, monkeypatch)
    assert "suffix" in line
    line = run_main(["calo", "generate", run / "model", "--energies", "abc", "--n", 3, "--out",
                     run / "y.h5"], capsys, monkeypatch)
    assert "--energies" in line
    line = run_main(["calo", "simulate", "--out", run / "z.h5", "--e-min", "-5"], capsys,
                    monkeypatch)
    assert "--e-min" in line


def test_generation_shards_over_two_torchrun_processes(run: Path) -> None:
    proc = torchrun("-m", "gensci.cli", "calo", "generate", str(run / "model"), "--energies", "5000",
                    "--n-showers", "50", "--out", str(run / "sharded.h5"), "--device", "cpu",
                    "--seed", "7")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    from gensci.calorimetry.io import read_showers

    e, x, _ = read_showers(run / "sharded.h5")
    s0, _, _ = read_showers(run / "sharded.shard0of2.h5")
    s1 = read_showers(run / "sharded.shard1of2.h5")[1]
    assert x.shape == (50, 368) and len(s0) == 25 and np.array_equal(x[25:], s1)
    assert not np.array_equal(x[:25], s1[:25])  # each rank its own seed stream
