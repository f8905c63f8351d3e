"""Semi-synthetic perturbation benchmark on real PBMC cells, and the key conventions of real data.

The benchmark takes the real, log-normalised PBMC cells of ``scanpy.datasets.pbmc68k_reduced()``
(``.raw``, 700 cells x 765 genes, cell types in ``bulk_labels``) and splits every cell type at
random into two halves. One half stays as it is: the controls. The other half receives a seeded,
cell-type specific, non-linear interferon-like response:

* a shared program of up-regulated genes (the interferon-stimulated genes present in the data, such
  as IFITM1-3, ISG20, IRF7, OAS1, LY6E, GBP2, plus seeded random genes) with per-gene log-fold
  loadings ``w_g``;
* per cell type a response strength ``s_t`` and extra genes of its own (up or down);
* per cell an activation ``a_i = s_t * rho_i * Gamma(k, 1/k)``: ``rho_i`` in [0.4, 1.6] rises with
  the cell's own expression of a seeded 20-gene "receptor" module (so the response depends on the
  cell's state, and types differ through it), and the Gamma factor (mean 1) makes cells uneven;
* the response acts on the count scale and saturates: for an up gene
  ``c' = c * exp(w_g a_i) + beta_g * (1 - exp(-w_g a_i))`` (``beta_g`` turns on genes that were
  silent), for a down gene ``c' = c * exp(-w_g a_i)``; then ``x' = log1p(c')`` plus Gaussian noise
  on the affected genes, clipped at 0; induced genes that were silent stay undetected with
  probability ``exp(-c')`` (Poisson dropout).

The effect on ``x = log1p(c)`` therefore depends on each cell's baseline and type: the truth is
known, but no single gene-space shift reproduces it. Every cell also carries its counterfactual in
``layers["counterfactual"]`` (for a control cell: itself perturbed; for a stimulated cell: itself
before the response), and the response parameters are kept in ``uns["perturbation_truth"]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from gensci.errors import ConfigError

try:  # anndata is an optional extra of gensci ("cells")
    import anndata as ad
except ImportError:  # pragma: no cover - exercised only without the extra
    ad = None


@dataclass(frozen=True)
class KeyConvention:
    """How a dataset names its condition column and its control / perturbed values."""

    condition_key: str
    control: str
    perturbed: str


# scGen's Kang 2018 file uses the first, pertpy's the second.
CONVENTIONS: dict[str, KeyConvention] = {
    "condition": KeyConvention("condition", "control", "stimulated"),
    "label": KeyConvention("label", "ctrl", "stim"),
}
CELL_TYPE_KEYS = ("cell_type", "cell_types", "celltype", "cell_label", "bulk_labels")

# Interferon-stimulated genes that occur among the 765 genes of pbmc68k_reduced.
INTERFERON_GENES = (
    "IFITM1", "IFITM2", "IFITM3", "ISG20", "IRF7", "OAS1", "LY6E", "GBP2", "IRF1",
    "IFI30", "IRF8", "TNFSF13B", "CCL4", "CCL5",
)


def detect_keys(adata: ad.AnnData) -> tuple[KeyConvention, str]:
    """Return the (condition convention, cell-type key) found in ``adata.obs``.

    Knows both common conventions of the Kang 2018 data (condition: control/stimulated and
    label: ctrl/stim) and the usual cell-type column names.
    """
    from gensci.errors import DataError

    found = None
    for conv in CONVENTIONS.values():
        if conv.condition_key in adata.obs.columns:
            values = set(adata.obs[conv.condition_key].astype(str).unique())
            if {conv.control, conv.perturbed} <= values:
                found = conv
                break
    if found is None:
        raise DataError(
            "could not detect the condition column: expected obs['condition'] with values "
            "'control'/'stimulated' or obs['label'] with 'ctrl'/'stim'; obs columns are "
            f"{list(adata.obs.columns)}. Name them with --condition-key/--control/--perturbed."
        )
    for key in CELL_TYPE_KEYS:
        if key in adata.obs.columns:
            return found, key
    raise DataError(
        f"could not detect the cell-type column (tried {list(CELL_TYPE_KEYS)}); obs columns are "
        f"{list(adata.obs.columns)}. Name it with --cell-type-key."
    )


def check_expression(adata: ad.AnnData, where: str) -> None:
    """Raise DataError naming `where` (the file) unless X and every layer hold real, finite numbers.

    Complex, boolean, text and object matrices are refused (gensci.errors.check_real_dtype), as
    are NaN and inf; an X of None (expression kept in layers only) passes.
    """
    from gensci.errors import DataError, check_finite, check_real_dtype

    mats = {"X": adata.X, **{f"layers[{k!r}]": v for k, v in adata.layers.items()}}
    for name, m in mats.items():
        if m is None:
            continue
        label = f"{name} of {where}"
        if 0 in tuple(m.shape):
            raise DataError(f"{label} is empty (shape {tuple(m.shape)})")
        values = m.data if sp.issparse(m) else np.asarray(m)
        check_real_dtype(values.dtype, label)
        # the float64 sum is finite exactly when every value is, without a copy of `values`
        if values.size and not np.isfinite(np.sum(values, dtype=np.float64)):
            check_finite(values, label)


def _pbmc_log_normalised() -> tuple[np.ndarray, list[str], ad.AnnData]:
    """Return (X (n_cells, n_genes) log-normalised, gene names, the source AnnData)."""
    import scanpy as sc

    base = sc.datasets.pbmc68k_reduced()
    X = base.raw.X
    X = X.toarray() if sp.issparse(X) else np.asarray(X)
    return X.astype(np.float32), list(base.raw.var_names), base


def make_perturbation_benchmark(
    seed: int = 0,
    convention: str = "condition",
    cell_type_key: str = "cell_type",
    n_program_genes: int = 60,
    n_type_genes: int = 30,
    strength_range: tuple[float, float] = (0.6, 1.4),
    noise: float = 0.15,
    heterogeneity: float = 4.0,
    sparse: bool = False,
    response: str = "programme",
    n_programmes: int = 4,
) -> ad.AnnData:
    """Return the semi-synthetic benchmark AnnData (700 real PBMC cells, half of them perturbed).

    obs: ``cell_type_key`` (the PBMC ``bulk_labels``), the condition column of ``convention``
    ("condition" -> control/stimulated, "label" -> ctrl/stim) and ``activation`` (a_i, 0 for
    controls). X: log-normalised expression (dense, or CSR if ``sparse``). layers["counterfactual"]:
    each cell in the other condition. uns["perturbation_truth"]: cell_types, strength (per type),
    loadings (n_types, n_genes; signed log-fold loadings, 0 = unaffected; with
    response="programme" the mean over the type's cells), induction (n_genes,).

    response="programme" (default): the type-specific part of the response is a function of the
    cell's own expression programme, the same function for every type: the first
    `n_programmes` principal components of the real expression each drive `n_type_genes` seeded
    genes with loading ``v_kg * tanh(s_ik)`` (``s_ik`` the cell's standardised score on PC k;
    up at one end of the programme, down at the other), on top of the shared interferon-like
    program; every type has strength 1 and differs only through its expression (programme
    scores and receptor module). A method that learns how the response depends on a cell's
    state can transfer it to an unseen type; one shared shift cannot. obsm["programme_drive"]
    holds tanh(s_ik), uns["perturbation_truth"]["programme_loadings"] the v_kg.
    response="independent": the earlier benchmark, each type's strength and its own extra genes
    drawn at random, independent of its expression (kept to reproduce the figures made with it).
    """
    if ad is None:  # pragma: no cover
        raise ConfigError("the cells study needs anndata and scanpy: pip install 'gensci[cells]'")
    if convention not in CONVENTIONS:
        raise ConfigError(f"unknown convention {convention!r}; choose one of {list(CONVENTIONS)}")
    if response not in ("programme", "independent"):
        raise ConfigError(f"unknown response {response!r}; choose 'programme' or 'independent'")
    if n_programmes < 1:
        raise ConfigError(f"n_programmes must be >= 1, got {n_programmes}")
    if noise < 0 or heterogeneity <= 0:
        raise ConfigError(f"noise must be >= 0 and heterogeneity > 0, got {noise}, {heterogeneity}")
    conv = CONVENTIONS[convention]
    X, genes, base = _pbmc_log_normalised()
    n_cells, n_genes = X.shape
    rng = np.random.default_rng(seed)
    types = base.obs["bulk_labels"].astype(str).to_numpy()
    type_names = sorted(set(types))
    gene_index = {g: j for j, g in enumerate(genes)}

    # Shared interferon-like program: known ISGs first, then seeded random genes.
    program = [gene_index[g] for g in INTERFERON_GENES if g in gene_index]
    others = np.setdiff1d(np.arange(n_genes), program)
    n_extra = max(0, n_program_genes - len(program))
    program += list(rng.choice(others, size=n_extra, replace=False))
    program = np.array(program[:n_program_genes])
    loadings = np.zeros((len(type_names), n_genes))
    program_w = rng.uniform(0.5, 2.0, size=len(program))
    induction = np.zeros(n_genes)
    induction[program] = rng.uniform(0.5, 4.0, size=len(program))
    strength = rng.uniform(*strength_range, size=len(type_names))
    non_program = np.setdiff1d(np.arange(n_genes), program)
    for t in range(len(type_names) if response == "independent" else 0):
        # Each type scales the shared program by its own per-gene factors and adds genes.
        loadings[t, program] = program_w * rng.uniform(0.6, 1.4, size=len(program))
        # A type's own genes are drawn among those it expresses (a response cannot lower a
        # silent gene).
        in_type = X[types == type_names[t]][:, non_program].mean(0)
        pool = non_program[in_type > 0.2] if (in_type > 0.2).sum() >= n_type_genes else non_program
        extra = rng.choice(pool, size=n_type_genes, replace=False)
        signs = np.where(rng.random(n_type_genes) < 0.7, 1.0, -1.0)
        loadings[t, extra] = signs * rng.uniform(0.5, 1.5, size=n_type_genes)
        induction[extra[signs > 0]] = np.maximum(
            induction[extra[signs > 0]], rng.uniform(0.5, 2.0, size=int((signs > 0).sum()))
        )

    # Per cell: activation a_i = s_t * rho_i * Gamma(k, 1/k). The responsiveness rho_i in
    # [0.4, 1.6] follows the cell's own expression of a seeded "receptor" module (like IFNAR
    # levels), so how strongly a cell responds depends on its state, not only on its type label.
    type_idx = np.array([type_names.index(t) for t in types])
    module = rng.choice(non_program[X[:, non_program].mean(0) > 0.5], size=20, replace=False)
    score = X[:, module].mean(1)
    score = (score - score.mean()) / (score.std() + 1e-8)
    responsiveness = 0.4 + 1.2 / (1.0 + np.exp(-1.5 * score))
    activation = (
        strength[type_idx] * responsiveness
        * rng.gamma(heterogeneity, 1.0 / heterogeneity, size=n_cells)
    )
    W = loadings[type_idx]  # (n_cells, n_genes)
    if response == "programme":
        W, activation, strength, loadings, V, drive = _programme_response(
            X, rng, np.asarray(program), program_w, induction, n_programmes, n_type_genes,
            responsiveness,
            heterogeneity, type_idx, len(type_names))
    effect = np.abs(W) * activation[:, None]
    counts = np.expm1(X.astype(np.float64))
    up = W > 0
    down = W < 0
    new_counts = counts.copy()
    induced = induction[None, :] * (1 - np.exp(-effect))
    new_counts[up] = counts[up] * np.exp(effect[up]) + induced[up]
    new_counts[down] = counts[down] * np.exp(-effect[down])
    Xp = np.log1p(new_counts)
    affected = W != 0
    Xp[affected] += noise * rng.standard_normal(int(affected.sum()))
    Xp = np.clip(Xp, 0.0, None)
    silent_induced = up & (counts == 0)
    dropped = silent_induced & (rng.random(X.shape) < np.exp(-(new_counts - counts)))
    Xp[dropped] = 0.0

    # Split every type into control and stimulated halves.
    stimulated = np.zeros(n_cells, dtype=bool)
    for t in range(len(type_names)):
        members = np.flatnonzero(type_idx == t)
        chosen = rng.permutation(members)[: len(members) // 2]
        stimulated[chosen] = True
    Xout = np.where(stimulated[:, None], Xp, X).astype(np.float32)
    counterfactual = np.where(stimulated[:, None], X, Xp).astype(np.float32)

    obs = base.obs[["n_genes", "n_counts", "percent_mito", "louvain"]].copy()
    obs[cell_type_key] = base.obs["bulk_labels"].astype(str).astype("category")
    obs[conv.condition_key] = np.where(stimulated, conv.perturbed, conv.control)
    obs[conv.condition_key] = obs[conv.condition_key].astype("category")
    obs["activation"] = np.where(stimulated, activation, 0.0)
    obs["responsiveness"] = responsiveness
    out = ad.AnnData(
        X=sp.csr_matrix(Xout) if sparse else Xout,
        obs=obs,
        var=base.raw.var.copy() if base.raw.var.shape[1] else None,
    )
    out.var_names = genes
    out.layers["counterfactual"] = counterfactual
    if response == "programme":
        out.obsm["programme_drive"] = drive.astype(np.float32)
    out.uns["perturbation_truth"] = {
        "seed": int(seed),
        "response": response,
        "cell_types": np.array(type_names, dtype=object),
        "strength": strength,
        "loadings": loadings,
        "induction": induction,
        "program_genes": np.array([genes[j] for j in program], dtype=object),
        "noise": float(noise),
        **({"programme_loadings": V} if response == "programme" else {}),
    }
    return out


def _programme_response(
    X: np.ndarray, rng: np.random.Generator, program: np.ndarray, program_w: np.ndarray,
    induction: np.ndarray, n_programmes: int, n_genes_each: int, responsiveness: np.ndarray,
    heterogeneity: float, type_idx: np.ndarray, n_types: int,
) -> tuple[np.ndarray, ...]:
    """Return (W (n_cells, n_genes) signed loadings, activation (n_cells,), strength (n_types,)
    all 1, loadings (n_types, n_genes) type means of W, V (K, n_genes) the programmes' gene
    loadings, drive (n_cells, K) tanh of the cells' programme scores).

    W_ig = w_g [g in program] + sum_k v_kg tanh(s_ik): s_ik is cell i's standardised score on
    the k-th principal component of X; v_k holds `n_genes_each` seeded genes (among genes
    expressed somewhere, outside the shared program) with random signs and |v| in [1, 2], so a
    gene goes up in cells at one end of a programme and down at the other.
    """
    n_cells, n_genes = X.shape
    centred = X - X.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    scores = centred @ vt[:n_programmes].T
    scores = (scores - scores.mean(0)) / (scores.std(0) + 1e-8)
    drive = np.tanh(scores)  # (n_cells, K) in (-1, 1): up in some programmes, down in others
    pool = np.setdiff1d(np.flatnonzero(X.mean(0) > 0.1), program)
    V = np.zeros((n_programmes, n_genes))
    for k in range(n_programmes):
        genes = rng.choice(np.setdiff1d(pool, np.flatnonzero(V.any(0))), size=n_genes_each,
                           replace=False)
        signs = np.where(rng.random(n_genes_each) < 0.5, 1.0, -1.0)
        V[k, genes] = signs * rng.uniform(1.0, 2.0, size=n_genes_each)
        induction[genes] = np.maximum(induction[genes], rng.uniform(0.5, 2.0, size=n_genes_each))
    W = drive @ V
    W[:, program] += program_w[None, :]
    activation = responsiveness * rng.gamma(heterogeneity, 1.0 / heterogeneity, size=n_cells)
    loadings = np.stack([W[type_idx == t].mean(0) for t in range(n_types)])
    return W, activation, np.ones(n_types), loadings, V, drive
