"""The perturbation model on the core VAE: training, latent, predict, determinism, save/load."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from gensci.cells.data import make_perturbation_benchmark
from gensci.cells.model import LATENT_KEY, PREDICT_KEY, PerturbationModel, leave_out
from gensci.cells.registry import setup_anndata
from gensci.errors import ConfigError, DataError

TINY = {"latent_dim": 4, "hidden": (16, 16), "dropout": 0.0}
FIT = {"max_epochs": 4, "batch_size": 64, "progress": False, "device": "cpu"}
HELD = "CD14+ Monocyte"


@pytest.fixture(scope="module")
def small():
    a = make_perturbation_benchmark(seed=0)
    a = a[:, :120].copy()
    setup_anndata(a, "condition", "control", "stimulated", "cell_type", verbose=False)
    return a


@pytest.fixture(scope="module")
def trained(small):
    m = PerturbationModel(leave_out(small, HELD), **TINY)
    m.train(seed=0, **FIT)
    return m


def test_leave_out_drops_only_held_perturbed(small):
    train = leave_out(small, HELD)
    held = (small.obs["cell_type"] == HELD) & (small.obs["condition"] == "stimulated")
    assert train.n_obs == small.n_obs - int(held.sum())
    assert not ((train.obs["cell_type"] == HELD) & (train.obs["condition"] == "stimulated")).any()


def test_training_lowers_validation_loss(small):
    m = PerturbationModel(small, **TINY)
    hist = m.train(seed=0, **{**FIT, "max_epochs": 8})
    val = [r["val_loss"] for r in hist if "val_loss" in r]
    assert len(val) >= 2 and val[-1] < val[0]
    assert m.train_settings["n_val_cells"] > 0


def test_predict_returns_annotated_anndata(small, trained):
    pred = trained.predict(HELD, adata=small, n_bootstrap=30, seed=1)
    ctrl = (small.obs["cell_type"] == HELD) & (small.obs["condition"] == "control")
    assert pred.shape == (int(ctrl.sum()), small.n_vars)
    assert (pred.obs["condition"] == "predicted").all()
    assert list(pred.obs["source_cell"]) == list(small.obs_names[ctrl.to_numpy()])
    assert list(pred.var_names) == list(small.var_names)
    assert np.isfinite(pred.X).all()
    info = pred.uns[PREDICT_KEY]
    d = info["latent_delta"]
    assert d["delta"].shape == (4,) and d["ci_low"].shape == (4,)
    assert np.all(d["ci_low"] <= d["ci_high"])
    assert HELD not in list(d["cell_types"])  # its perturbed cells were held out
    # The prediction moves the cells: it differs from decoding the controls without delta.
    assert np.abs(pred.X.mean(0) - small.X[ctrl.to_numpy()].mean(0)).max() > 0.01


def test_regression_delta_gives_each_cell_its_shift(small, trained):
    pred = trained.predict(HELD, adata=small, n_bootstrap=10, delta="regression", ridge=0.5)
    info = pred.uns[PREDICT_KEY]
    assert info["delta"] == "regression" and info["ridge"] == 0.5
    shifts = pred.obsm["X_gensci_latent_delta"]
    assert shifts.shape == (pred.n_obs, 4)
    assert np.ptp(shifts, axis=0).max() > 0  # cells differ in their shift
    np.testing.assert_allclose(info["latent_delta"]["delta"], shifts.mean(0), atol=1e-5)
    # The prediction is the decoder at each cell's own shifted point.
    import torch

    ctrl = ((small.obs["cell_type"] == HELD) & (small.obs["condition"] == "control")).to_numpy()
    z = trained._encode(torch.from_numpy(np.asarray(small.X[ctrl])), None)
    again = trained._decode(z + torch.from_numpy(shifts), None).numpy()
    np.testing.assert_allclose(pred.X, np.clip(again, 0, None), atol=1e-5)
    # A very large penalty returns the mean of the per-type deltas for every cell.
    flat = trained.predict(HELD, adata=small, n_bootstrap=0, delta="regression", ridge=1e9)
    assert np.ptp(flat.obsm["X_gensci_latent_delta"], axis=0).max() < 1e-5
    with pytest.raises(ConfigError, match="unknown delta"):
        trained.predict(HELD, adata=small, delta="median")


def test_step_scales_the_shift_and_calibration_undoes_a_shrunk_delta(small, trained,
                                                                       monkeypatch):
    import torch

    ctrl = ((small.obs["cell_type"] == HELD) & (small.obs["condition"] == "control")).to_numpy()
    z = trained._encode(torch.from_numpy(np.asarray(small.X[ctrl])), None)
    d = trained.latent_delta(n_bootstrap=0).delta
    pred = trained.predict(HELD, adata=small, n_bootstrap=0, step=1.5)
    again = trained._decode(z + 1.5 * torch.as_tensor(d, dtype=z.dtype), None).numpy()
    np.testing.assert_allclose(pred.X, np.clip(again, 0, None), atol=1e-5)
    assert pred.uns[PREDICT_KEY]["step"] == 1.5
    grid = np.round(np.arange(0.25, 12.0, 0.05), 2)
    k, curve = trained.calibrate_step(grid=grid)
    assert k in grid and curve["loss"][list(grid).index(k)] == min(curve["loss"])
    assert len(curve["loss"]) == len(grid) and np.all(np.isfinite(curve["loss"]))
    assert np.ptp(curve["loss"]) > 0.01 * min(curve["loss"])  # the step matters
    # The loss compares the arithmetic with the training types' real responses: halve the
    # delta and the loss curve over doubled steps is the same curve.
    original = trained.latent_delta
    halved = lambda *a, **kw: _scaled(original(*a, **kw), 0.5)  # noqa: E731
    monkeypatch.setattr(trained, "latent_delta", halved)
    k_half, curve_half = trained.calibrate_step(grid=2 * grid)
    np.testing.assert_allclose(curve_half["loss"], curve["loss"], rtol=1e-4)
    assert abs(k_half - 2 * k) <= 0.2  # the same minimum, up to ties on a flat curve
    monkeypatch.undo()
    with pytest.warns(UserWarning, match="edge of its grid"):
        trained.calibrate_step(grid=[0.5, 0.6])  # the tiny model wants a longer step
    auto = trained.predict(HELD, adata=small, n_bootstrap=0, step="auto")
    assert auto.uns[PREDICT_KEY]["step_mode"] == "auto"
    assert auto.uns[PREDICT_KEY]["step"] == trained.calibrate_step()[0]
    for bad in (0.0, -1.0, float("nan"), "big"):
        with pytest.raises(ConfigError, match="step"):
            trained.predict(HELD, adata=small, n_bootstrap=0, step=bad)


def _scaled(result, factor):
    import dataclasses

    return dataclasses.replace(result, delta=result.delta * factor)


def test_restricted_delta_and_errors(small, trained):
    d = trained.latent_delta(restrict_to=["CD19+ B"], n_bootstrap=0)
    assert d.cell_types == ["CD19+ B"]
    with pytest.raises(DataError, match="Neuron"):
        trained.predict("Neuron")
    with pytest.raises(ConfigError):
        trained.predict(HELD, balance="median")
    no_ctrl = small[~((small.obs["cell_type"] == "CD19+ B")
                      & (small.obs["condition"] == "control"))].copy()
    with pytest.raises(DataError, match="no control cells"):
        trained.predict("CD19+ B", adata=no_ctrl)
    with pytest.raises(DataError, match="genes differ"):
        trained.predict(HELD, adata=small[:, :50].copy())


def test_latent_into_obsm_and_determinism(small, trained):
    z = trained.get_latent(small)
    assert small.obsm[LATENT_KEY].shape == (small.n_obs, 4)
    again = PerturbationModel(leave_out(small, HELD), **TINY)
    again.train(seed=0, **FIT)
    assert np.array_equal(again.get_latent(small), z)
    other = PerturbationModel(leave_out(small, HELD), **TINY)
    other.train(seed=1, **FIT)
    assert not np.allclose(other.get_latent(small), z)


def test_sparse_matches_dense(small, trained):
    dense = trained
    sparse_data = small.copy()
    sparse_data.X = sp.csr_matrix(sparse_data.X)
    sm = PerturbationModel(leave_out(sparse_data, HELD), **TINY)
    sm.train(seed=0, **FIT)
    p1 = dense.predict(HELD, adata=small, n_bootstrap=0).X
    p2 = sm.predict(HELD, adata=sparse_data, n_bootstrap=0).X
    assert sp.issparse(p2) and p2.format == "csr"  # the input's form is kept
    assert np.allclose(p1, p2.toarray(), atol=1e-5)


def test_save_load_roundtrip(tmp_path, small, trained):
    path = trained.save(tmp_path / "model.safetensors")
    with pytest.raises(Exception, match="exists"):
        trained.save(path)
    fresh = leave_out(small, HELD)
    del fresh.uns["_gensci_cells"]  # load re-registers the stored keys
    loaded = PerturbationModel.load(path, fresh)
    assert loaded.registry == trained.registry
    assert loaded.gene_names == trained.gene_names
    a = trained.predict(HELD, adata=small, n_bootstrap=0).X
    b = loaded.predict(HELD, adata=small, n_bootstrap=0).X
    assert np.allclose(a, b, atol=1e-6)
    with pytest.raises(DataError, match="genes differ"):
        PerturbationModel.load(path, small[:, :60].copy())


def test_conditional_variant_label_convention():
    a = make_perturbation_benchmark(seed=2, convention="label", sparse=True)[:, :80].copy()
    setup_anndata(a, "label", "ctrl", "stim", "cell_type", verbose=False)
    m = PerturbationModel(leave_out(a, "Dendritic"), conditional=True, **TINY)
    assert m.module.config.n_labels == 2
    m.train(seed=0, **FIT)
    pred = m.predict("Dendritic", adata=a, n_bootstrap=5)
    assert (pred.obs["label"] == "predicted").all()
    assert pred.uns[PREDICT_KEY]["method"] == "cvae_label_swap"
    assert sp.issparse(pred.X) and np.isfinite(pred.X.data).all()
    with pytest.raises(ConfigError, match="unconditional"):
        m.predict("Dendritic", adata=a, n_bootstrap=0, delta="regression")


def test_counts_refused_and_untrained(small):
    a = small.copy()
    a.X = np.round(np.expm1(a.X) * 10).astype(np.float32)
    setup_anndata(a, "condition", "control", "stimulated", "cell_type", verbose=False)
    with pytest.raises(DataError, match="raw counts"):
        PerturbationModel(a, **TINY)
    with pytest.raises(ConfigError, match="not trained"):
        PerturbationModel(small, **TINY).predict(HELD)


def test_prediction_keeps_the_input_form_and_is_never_negative(small, trained):
    import warnings

    import anndata as ad
    import pandas as pd
    import scanpy as sc
    import torch

    a = small.copy()
    a.X = sp.csc_matrix(a.X.astype(np.float64))
    pred = trained.predict(HELD, adata=a, n_bootstrap=0)
    assert sp.issparse(pred.X) and pred.X.format == "csc" and pred.X.dtype == np.float64
    assert pred.X.min() >= 0
    # the decoder does undershoot on this model: the clip is doing work
    ctrl = ((small.obs["cell_type"] == HELD) & (small.obs["condition"] == "control")).to_numpy()
    z = trained._encode(torch.from_numpy(np.asarray(small.X[ctrl])), None)
    d = torch.as_tensor(trained.latent_delta(n_bootstrap=0).delta, dtype=z.dtype)
    assert trained._decode(z + d, None).numpy().min() < 0
    for col in ("cell_type", "condition"):
        assert isinstance(pred.obs[col].dtype, pd.CategoricalDtype)
    assert list(pred.obs["condition"].cat.categories) == ["control", "stimulated", "predicted"]
    both = ad.concat([a[ctrl], pred])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sc.tl.rank_genes_groups(both, "condition", groups=["predicted"], reference="control",
                                method="wilcoxon")
    assert both.uns["rank_genes_groups"]["names"].shape[0] == a.n_vars


def test_setup_anndata_detects_keys_as_the_cli_does():
    from gensci.cells.registry import get_registry

    a = make_perturbation_benchmark(seed=0, convention="label")[:, :50].copy()
    setup_anndata(a, verbose=False)
    reg = get_registry(a)
    assert (reg.condition_key, reg.control, reg.perturbed, reg.cell_type_key) == (
        "label", "ctrl", "stim", "cell_type")
    a.obs = a.obs.rename(columns={"cell_type": "kind"})
    with pytest.raises(DataError, match="cell-type column"):
        setup_anndata(a, verbose=False)
    setup_anndata(a, cell_type_key="kind", verbose=False)  # the others still detected
    assert get_registry(a).condition_key == "label"


def test_one_default_for_epochs_in_api_cli_and_study():
    import inspect

    from gensci.cells import cli
    from gensci.cells.model import DEFAULT_MAX_EPOCHS
    from gensci.cells.study import SCALES

    api = inspect.signature(PerturbationModel.train).parameters["max_epochs"].default
    command = inspect.signature(cli.train).parameters["max_epochs"].default
    assert api == command == SCALES["full"]["max_epochs"] == DEFAULT_MAX_EPOCHS
