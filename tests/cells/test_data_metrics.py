"""Data builder, key registration, metrics and baselines of the cells study."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from gensci.cells import baselines
from gensci.cells.data import detect_keys, make_perturbation_benchmark
from gensci.cells.delta import balanced_delta, regressed_delta
from gensci.cells.metrics import evaluate_prediction, r2_pearson, r2_score, summarise, top_degs
from gensci.cells.registry import cell_mask, check_data_state, get_registry, setup_anndata
from gensci.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def bench():
    return make_perturbation_benchmark(seed=0)


def test_builder_is_seeded_and_split(bench):
    again = make_perturbation_benchmark(seed=0)
    other = make_perturbation_benchmark(seed=1)
    assert np.array_equal(bench.X, again.X)
    assert not np.array_equal(bench.X, other.X)
    assert bench.shape == (700, 765)
    counts = bench.obs.groupby(["cell_type", "condition"], observed=True).size().unstack()
    assert (abs(counts["control"] - counts["stimulated"]) <= 1).all()
    # Controls are the real cells; the counterfactual of a stimulated cell is its real state.
    import scanpy as sc

    raw = sc.datasets.pbmc68k_reduced().raw.X.toarray()
    ctrl = (bench.obs["condition"] == "control").to_numpy()
    assert np.allclose(bench.X[ctrl], raw[ctrl])
    assert np.allclose(bench.layers["counterfactual"][~ctrl], raw[~ctrl])
    assert bench.X.min() >= 0


def test_response_is_type_specific_and_not_a_single_shift(bench):
    truth = bench.uns["perturbation_truth"]
    assert truth["response"] == "programme"
    L = truth["loadings"]
    assert L.shape == (len(truth["cell_types"]), bench.n_vars)
    old = make_perturbation_benchmark(seed=0, response="independent").uns["perturbation_truth"]
    # the earlier benchmark: each type its own genes
    assert len({tuple(np.flatnonzero(row)) for row in old["loadings"]}) == len(L)
    # The true per-cell response (counterfactual - control) is not the same vector for all types.
    ctrl = (bench.obs["condition"] == "control").to_numpy()
    resp = bench.layers["counterfactual"][ctrl] - bench.X[ctrl]
    types = bench.obs["cell_type"].to_numpy()[ctrl]
    means = np.stack([resp[types == t].mean(0) for t in ["Dendritic", "CD19+ B"]])
    assert np.abs(means[0] - means[1]).max() > 0.5


def _specific_parts(a):
    """Return (type names, true specific responses (T, G)): each type's mean true response
    (counterfactual minus control) minus the mean over types."""
    ctrl = (a.obs["condition"] == "control").to_numpy()
    types = a.obs["cell_type"].astype(str).to_numpy()
    names = sorted(set(types))
    resp = a.layers["counterfactual"][ctrl] - a.X[ctrl]
    R = np.stack([resp[types[ctrl] == t].mean(0) for t in names])
    return names, R - R.mean(0)


def test_programme_response_follows_each_cells_expression(bench):
    """The type-specific part of the response is the programmes' drive: a function of the
    cells' expression shared by all types (what latent arithmetic claims to transfer); in the
    independent benchmark it is not."""
    V = np.asarray(bench.uns["perturbation_truth"]["programme_loadings"])
    drive = bench.obsm["programme_drive"]
    ctrl = (bench.obs["condition"] == "control").to_numpy()
    types = bench.obs["cell_type"].astype(str).to_numpy()
    names, spec = _specific_parts(bench)
    D = np.stack([drive[ctrl & (types == t)].mean(0) for t in names])
    expected = (D - D.mean(0)) @ V
    genes = np.flatnonzero(np.abs(V).sum(0) > 0)
    r = np.corrcoef(expected[:, genes].ravel(), spec[:, genes].ravel())[0, 1]
    assert r > 0.6
    old = make_perturbation_benchmark(seed=0, response="independent")
    _, spec_old = _specific_parts(old)
    r_old = np.corrcoef(expected[:, genes].ravel(), spec_old[:, genes].ravel())[0, 1]
    assert abs(r_old) < 0.2
    with pytest.raises(ConfigError, match="response"):
        make_perturbation_benchmark(response="random")


def test_label_convention_and_detect_keys():
    a = make_perturbation_benchmark(seed=0, convention="label", sparse=True)
    assert sp.issparse(a.X)
    assert set(a.obs["label"].unique()) == {"ctrl", "stim"}
    conv, ct = detect_keys(a)
    assert (conv.condition_key, conv.control, conv.perturbed, ct) == (
        "label", "ctrl", "stim", "cell_type"
    )
    with pytest.raises(ConfigError):
        make_perturbation_benchmark(convention="treatment")


def test_setup_reports_state_and_rejects_bad_keys(bench):
    a = bench.copy()
    state = setup_anndata(a, "condition", "control", "stimulated", "cell_type", verbose=False)
    assert state.state == "log-normalised"
    assert get_registry(a).perturbed == "stimulated"
    with pytest.raises(DataError, match="treatment"):
        setup_anndata(a, "treatment", "control", "stimulated", "cell_type")
    with pytest.raises(DataError, match="'ifn'"):
        setup_anndata(a, "condition", "control", "ifn", "cell_type")
    with pytest.raises(DataError, match="celltype"):
        setup_anndata(a, "condition", "control", "stimulated", "celltype")
    with pytest.raises(DataError, match="layer"):
        setup_anndata(a, "condition", "control", "stimulated", "cell_type", layer="counts")
    with pytest.raises(DataError, match="cell type 'Neuron'"):
        cell_mask(a, get_registry(a), "control", "Neuron")
    b = a.copy()
    b.X[3, 4] = np.nan
    with pytest.raises(DataError, match="NaN"):
        setup_anndata(b, "condition", "control", "stimulated", "cell_type")
    with pytest.raises(DataError, match="not registered"):
        get_registry(bench.copy())


def test_data_state_counts_and_scaled(bench):
    a = bench.copy()
    a.layers["counts"] = np.round(np.expm1(a.X) * 10).astype(np.float32)
    assert check_data_state(a, "counts").state == "counts"
    a.layers["scaled"] = (a.X - a.X.mean(0)) / (a.X.std(0) + 1e-6)
    assert check_data_state(a, "scaled").state == "scaled"


def test_metric_identities():
    rng = np.random.default_rng(0)
    real = rng.random(50)
    assert r2_score(real, real) == pytest.approx(1.0)
    assert r2_pearson(2 * real + 3, real) == pytest.approx(1.0)  # Pearson forgives scale/offset
    assert r2_score(2 * real + 3, real) < 0  # the true R^2 does not
    assert r2_score(np.full(50, real.mean()), real) == pytest.approx(0.0)


def test_balanced_delta_modes():
    # Type A: 100 control at 0, 100 perturbed at 2; type B: 10 control at 0, 10 perturbed at 10.
    x = np.concatenate([np.zeros(100), np.full(100, 2.0), np.zeros(10), np.full(10, 10.0)])[:, None]
    types = np.array(["A"] * 200 + ["B"] * 20)
    pert = np.array([False] * 100 + [True] * 100 + [False] * 10 + [True] * 10)
    assert balanced_delta(x, types, pert, "none").delta[0] == pytest.approx(300 / 110)
    for mode in ("upsample", "downsample"):
        d = balanced_delta(x, types, pert, mode, seed=3)
        assert d.delta[0] == pytest.approx(6.0)  # equal weight per type
        assert d.delta[0] == balanced_delta(x, types, pert, mode, seed=3).delta[0]
    only_a = balanced_delta(x, types, pert, restrict_to=["A"], n_bootstrap=20)
    assert only_a.delta[0] == pytest.approx(2.0) and only_a.cell_types == ["A"]
    # identical values in every group: the draws all agree, which is no interval
    assert only_a.ci_low is None and only_a.norm_ci is None
    assert "same |delta|" in only_a.ci_unavailable
    with pytest.raises(DataError):
        balanced_delta(x, types, pert, restrict_to=["C"])
    with pytest.raises(ConfigError):
        balanced_delta(x, types, pert, balance="median")


def _affine_types(rng, n_types=6, d=3, cells=40):
    """Cells of `n_types` types whose delta is an affine function of the type's control mean."""
    B = rng.normal(size=(d, d))
    b = rng.normal(size=d)
    xs, types, pert = [], [], []
    for t in range(n_types):
        mu = rng.normal(size=d) * 2
        noise = rng.normal(size=(cells, d)) * 0.3
        noise -= noise.mean(0)  # exact type means, so the regression is exact
        xs += [mu + noise, mu + B @ mu + b + noise]
        types += [f"T{t}"] * (2 * cells)
        pert += [False] * cells + [True] * cells
    return np.concatenate(xs), np.array(types), np.array(pert), B, b


def test_regressed_delta_recovers_an_affine_response():
    rng = np.random.default_rng(0)
    x, types, pert, B, b = _affine_types(rng)
    query = rng.normal(size=(5, 3)) * 2
    per_cell, res = regressed_delta(x, types, pert, query, ridge=1e-9, n_bootstrap=20)
    # 6 types in 3 dimensions determine the affine map: each query cell gets its own delta.
    np.testing.assert_allclose(per_cell, query @ B.T + b, atol=1e-5)
    np.testing.assert_allclose(res.delta, per_cell.mean(0))
    assert res.mode == "regression" and len(res.cell_types) == 6
    assert np.all(res.ci_low <= res.delta + 1e-9) and np.all(res.delta <= res.ci_high + 1e-9)
    # A large penalty gives back the mean of the per-type deltas (the balanced mean delta).
    per_cell, res = regressed_delta(x, types, pert, query, ridge=1e9)
    type_means = balanced_delta(x, types, pert, "downsample").delta  # equal sizes: exact
    np.testing.assert_allclose(per_cell, np.broadcast_to(type_means, (5, 3)), atol=1e-6)


def test_regressed_delta_errors():
    rng = np.random.default_rng(1)
    x, types, pert, _, _ = _affine_types(rng, n_types=3)
    with pytest.raises(ConfigError, match="ridge"):
        regressed_delta(x, types, pert, x[:2], ridge=0.0)
    with pytest.raises(DataError, match=">= 2 cell types"):
        regressed_delta(x, types, pert, x[:2], restrict_to=["T0"])
    with pytest.raises(DataError, match="same columns"):
        regressed_delta(x, types, pert, x[:2, :2])


def test_baselines_and_evaluation(bench):
    X = bench.X
    types = bench.obs["cell_type"].astype(str).to_numpy()
    pert = (bench.obs["condition"] == "stimulated").to_numpy()
    held = "CD14+ Monocyte"
    train = ~((types == held) & pert)
    ctrl, real = X[(types == held) & ~pert], X[(types == held) & pert]
    deg = top_degs(ctrl, real, bench.var_names, n=100)
    assert len(set(deg)) == 100
    # The true response genes of the type dominate the DEGs.
    truth = bench.uns["perturbation_truth"]
    t = list(truth["cell_types"]).index(held)
    assert np.mean(truth["loadings"][t][deg[:30]] != 0) > 0.8
    preds = {
        "control": baselines.control_as_prediction(ctrl),
        "gene": baselines.gene_shift_prediction(X[train], types[train], pert[train], ctrl),
        "pca": baselines.pca_shift_prediction(X[train], types[train], pert[train], ctrl, 20),
        "oracle": bench.layers["counterfactual"][(types == held) & ~pert],
    }
    res = {k: evaluate_prediction(p, real, ctrl, deg, n_bootstrap=30) for k, p in preds.items()}
    r2 = {k: v["r2_deg"]["value"] for k, v in res.items()}
    assert r2["oracle"] > r2["gene"] > r2["control"]
    assert r2["pca"] > r2["control"]
    # Controls and their predictions are resampled as pairs: no response appears from noise.
    dc = res["control"]["delta_corr_deg"]
    assert dc["value"] == 0.0
    # every draw agrees, so there is no interval to report (not a zero-width one)
    assert dc["ci_low"] is None and dc["ci_high"] is None and "agree" in dc["ci_unavailable"]
    m = res["gene"]["r2_deg"]
    assert m["ci_low"] <= m["value"] <= m["ci_high"]
    s = summarise({"a": res["gene"], "b": res["oracle"]})
    assert s["r2_deg"]["value"] == pytest.approx((r2["gene"] + r2["oracle"]) / 2)


def test_std_r2_sees_the_spread_that_means_do_not():
    rng = np.random.default_rng(0)
    ctrl = rng.gamma(1.0, 1.0, size=(200, 40))
    real = ctrl * rng.uniform(0.5, 3.0, size=40)
    deg = np.arange(10)
    same = evaluate_prediction(real, real, ctrl, deg, n_bootstrap=0)
    assert same["r2_pearson_std_all"]["value"] == pytest.approx(1.0)
    # right means, each gene's spread taken from another gene
    noise = real[:, rng.permutation(40)]
    wrong = real.mean(0) + noise - noise.mean(0)
    m = evaluate_prediction(wrong, real, ctrl, deg, n_bootstrap=0)
    assert m["r2_all"]["value"] == pytest.approx(1.0)
    assert m["r2_pearson_std_all"]["value"] < 0.2
