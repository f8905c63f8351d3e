"""The `gensci cells` commands and the study on tiny settings."""

from __future__ import annotations

import hashlib
import json

import anndata as ad
import pytest
from typer.testing import CliRunner

from gensci.cells.cli import app
from gensci.cells.data import make_perturbation_benchmark
from gensci.cells.registry import setup_anndata
from gensci.cells.study import StudyConfig, eligible_cell_types, run_study, slug
from gensci.errors import ConfigError, DataError, OutputExistsError

runner = CliRunner()
TINY = ["--latent-dim", "4", "--hidden", "16,16", "--max-epochs", "2", "--batch-size", "64",
        "--device", "cpu"]


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def h5ad(tmp_path_factory):
    path = tmp_path_factory.mktemp("cells") / "data.h5ad"
    res = runner.invoke(app, ["simulate", "--out", str(path), "--convention", "label",
                              "--sparse"])
    assert res.exit_code == 0, res.output
    return path


def test_train_predict_cli_detects_keys_and_leaves_input(h5ad, tmp_path):
    before = _digest(h5ad)
    model = tmp_path / "model"
    res = runner.invoke(app, ["train", str(h5ad), "--out", str(model),
                              "--hold-out", "CD19+ B", *TINY])
    assert res.exit_code == 0, (res.output, res.exception)
    assert (model / "model.safetensors").is_file()
    assert (model / "training" / "metrics.csv").is_file()
    out = tmp_path / "predicted.h5ad"
    res = runner.invoke(app, ["predict", str(model), str(h5ad), "--cell-type", "CD19+ B",
                              "--out", str(out), "--n-bootstrap", "10"])
    assert res.exit_code == 0, (res.output, res.exception)
    pred = ad.read_h5ad(out)
    assert (pred.obs["label"] == "predicted").all()
    info = pred.uns["gensci_cells_prediction"]
    assert "CD19+ B" not in list(info["latent_delta"]["cell_types"])  # held out stays out
    assert _digest(h5ad) == before
    res = runner.invoke(app, ["predict", str(model), str(h5ad), "--cell-type", "CD19+ B",
                              "--out", str(tmp_path / "reg.h5ad"), "--n-bootstrap", "0",
                              "--delta", "regression", "--ridge", "2"])
    assert res.exit_code == 0, (res.output, res.exception)
    reg = ad.read_h5ad(tmp_path / "reg.h5ad")
    assert reg.uns["gensci_cells_prediction"]["delta"] == "regression"
    assert reg.obsm["X_gensci_latent_delta"].shape[0] == reg.n_obs
    res = runner.invoke(app, ["predict", str(model), str(h5ad), "--cell-type", "CD19+ B",
                              "--out", str(tmp_path / "auto.h5ad"), "--n-bootstrap", "0",
                              "--step", "auto"])
    assert res.exit_code == 0, (res.output, res.exception)
    assert ad.read_h5ad(tmp_path / "auto.h5ad").uns["gensci_cells_prediction"]["step_mode"] == "auto"
    res = runner.invoke(app, ["predict", str(model), str(h5ad), "--cell-type", "CD19+ B",
                              "--out", str(tmp_path / "bad.h5ad"), "--step", "-2"])
    assert isinstance(res.exception, ConfigError) and "--step" in str(res.exception)
    assert not (tmp_path / "bad.h5ad").exists()
    # No clobbering: the same outputs again are refused.
    res = runner.invoke(app, ["predict", str(model), str(h5ad), "--cell-type", "CD19+ B",
                              "--out", str(out)])
    assert isinstance(res.exception, OutputExistsError)
    res = runner.invoke(app, ["train", str(h5ad), "--out", str(model), *TINY])
    assert isinstance(res.exception, OutputExistsError)
    res = runner.invoke(app, ["predict", str(model), str(h5ad), "--cell-type", "Neuron",
                              "--out", str(tmp_path / "p2.h5ad")])
    assert isinstance(res.exception, DataError)
    assert not (tmp_path / "p2.h5ad").exists()


def test_train_cli_bad_keys(h5ad, tmp_path):
    res = runner.invoke(app, ["train", str(h5ad), "--out", str(tmp_path / "m"),
                              "--condition-key", "label", "--control", "ctrl",
                              "--perturbed", "ifn", *TINY])
    assert isinstance(res.exception, DataError) and "ifn" in str(res.exception)
    res = runner.invoke(app, ["train", str(h5ad), "--out", str(h5ad), *TINY])
    assert isinstance(res.exception, OutputExistsError)


def test_study_tiny_writes_report(tmp_path):
    a = make_perturbation_benchmark(seed=0)[:, :150].copy()
    setup_anndata(a, "condition", "control", "stimulated", "cell_type", verbose=False)
    assert eligible_cell_types(a) == sorted(
        ["CD14+ Monocyte", "CD19+ B", "CD4+/CD25 T Reg", "CD8+ Cytotoxic T", "Dendritic"]
    )
    cfg = StudyConfig(scale="tiny", cell_types=("CD4+/CD25 T Reg",), progress=False,
                      methods=("vae", "vae_regression"),
                      overrides={"max_epochs": 2, "n_bootstrap": 10})
    res = run_study(a, tmp_path / "report", cfg)
    out = tmp_path / "report"
    assert json.loads((out / "metrics.json").read_text())["cell_types"] == ["CD4+/CD25 T Reg"]
    name = slug("CD4+/CD25 T Reg")
    assert (out / "figures" / f"{name}_scatter.png").stat().st_size > 1000
    assert (out / "figures" / f"{name}_pca.png").is_file()
    assert ad.read_h5ad(out / "predicted" / f"{name}.h5ad").n_obs == 34
    assert "Against the targets" in (out / "report.md").read_text()
    s = res["summary"]
    assert set(s) == {"control", "gene_shift", "pca_shift", "vae", "vae_regression"}
    # one model serves both deltas: they differ only in the shift
    assert s["vae"]["r2_deg"]["value"] != s["vae_regression"]["r2_deg"]["value"]
    assert s["gene_shift"]["r2_deg"]["value"] > s["control"]["r2_deg"]["value"]
    with pytest.raises(OutputExistsError):
        run_study(a, out, cfg)
    with pytest.raises(ConfigError):
        StudyConfig(scale="huge")
    with pytest.raises(ConfigError, match="ridge"):
        StudyConfig(ridge=-1.0)
    with pytest.raises(ConfigError, match="step"):
        StudyConfig(step="long")
    with pytest.raises(DataError):
        run_study(a, None, StudyConfig(scale="tiny", cell_types=("Neuron",), progress=False))


def test_study_step_auto_records_the_step_and_draws_its_curve(tmp_path):
    a = make_perturbation_benchmark(seed=0)[:, :150].copy()
    setup_anndata(a, "condition", "control", "stimulated", "cell_type", verbose=False)
    cfg = StudyConfig(scale="tiny", cell_types=("CD8+ Cytotoxic T",), progress=False,
                      step="auto", overrides={"max_epochs": 3, "n_bootstrap": 5})
    run_study(a, tmp_path / "report", cfg)
    name = slug("CD8+ Cytotoxic T")
    assert (tmp_path / "report" / "figures" / f"{name}_step.png").stat().st_size > 1000
    pred = ad.read_h5ad(tmp_path / "report" / "predicted" / f"{name}.h5ad")
    info = pred.uns["gensci_cells_prediction"]
    assert info["step_mode"] == "auto" and 0.5 <= info["step"] <= 3.0
