"""Figures of the cells study: mean-expression scatter and an embedding of the three populations."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gensci.cells.metrics import r2_pearson, r2_score
from gensci.errors import ConfigError
from gensci.runtime import atomic_save


def _save(fig, path: str | Path, overwrite: bool) -> Path:  # type: ignore[no-untyped-def]
    import matplotlib.pyplot as plt

    suffix = Path(path).suffix or ".png"
    out = atomic_save(
        path, lambda tmp: fig.savefig(tmp, dpi=120, bbox_inches="tight",
                                      format=suffix.lstrip(".")),
        overwrite=overwrite, suffix=suffix,
    )
    plt.close(fig)
    return out


def mean_scatter(
    predicted: np.ndarray,
    real: np.ndarray,
    gene_names: Sequence[str],
    deg_index: np.ndarray,
    path: str | Path,
    title: str = "",
    n_labels: int = 10,
    overwrite: bool = False,
) -> Path:
    """Return the path of a scatter of per-gene means, predicted vs real, DEGs marked.

    predicted: (n_pred, G); real: (n_real, G). The top `n_labels` DEGs are named.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p, r = predicted.mean(0), real.mean(0)
    deg = np.asarray(deg_index, dtype=int)
    fig, ax = plt.subplots(figsize=(5.2, 5))
    ax.scatter(r, p, s=6, c="0.6", label="all genes", rasterized=True)
    ax.scatter(r[deg], p[deg], s=12, c="tab:red", label=f"top-{len(deg)} DEGs")
    for j in deg[:n_labels]:
        ax.annotate(str(gene_names[j]), (r[j], p[j]), fontsize=7, xytext=(3, 3),
                    textcoords="offset points")
    lim = [min(r.min(), p.min()), max(r.max(), p.max())]
    ax.plot(lim, lim, "k--", lw=0.8)
    ax.set_xlabel("real perturbed: mean expression")
    ax.set_ylabel("predicted: mean expression")
    ax.set_title(
        f"{title}\nPearson r^2 all {r2_pearson(p, r):.3f}, DEGs {r2_pearson(p[deg], r[deg]):.3f}; "
        f"R^2 DEGs {r2_score(p[deg], r[deg]):.3f}",
        fontsize=9,
    )
    ax.legend(fontsize=8, loc="upper left")
    return _save(fig, path, overwrite)


def embedding_plot(
    control: np.ndarray,
    real: np.ndarray,
    predicted: np.ndarray,
    path: str | Path,
    method: str = "pca",
    title: str = "",
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Return the path of a 2-D PCA or UMAP of control, real perturbed and predicted cells.

    Each input is (n_i, G); the embedding is fitted on the three populations together.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if method not in ("pca", "umap"):
        raise ConfigError(f"unknown embedding {method!r}; choose 'pca' or 'umap'")
    X = np.vstack([control, real, predicted]).astype(np.float32)
    Xc = X - X.mean(0)
    _, _, vt = np.linalg.svd(Xc, full_matrices=False)
    k = min(30, vt.shape[0])
    pcs = Xc @ vt[:k].T
    if method == "pca":
        emb = pcs[:, :2]
        labels = ("PC1", "PC2")
    else:
        import anndata as ad
        import scanpy as sc

        tmp = ad.AnnData(X=X)
        tmp.obsm["X_pca"] = pcs
        sc.pp.neighbors(tmp, n_neighbors=min(15, len(X) - 1), use_rep="X_pca", random_state=seed)
        sc.tl.umap(tmp, random_state=seed)
        emb = tmp.obsm["X_umap"]
        labels = ("UMAP1", "UMAP2")
    n1, n2 = len(control), len(real)
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    for sl, name, col in (
        (slice(0, n1), "control", "tab:blue"),
        (slice(n1, n1 + n2), "real perturbed", "tab:red"),
        (slice(n1 + n2, None), "predicted", "tab:green"),
    ):
        ax.scatter(emb[sl, 0], emb[sl, 1], s=8, c=col, label=name, alpha=0.7)
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    return _save(fig, path, overwrite)


def step_curve(
    steps: Sequence[float],
    loss: Sequence[float],
    path: str | Path,
    title: str = "",
    overwrite: bool = False,
) -> Path:
    """Return the path of the step calibration curve: the training types' mean squared error
    on their DEGs against the latent step, the chosen (least) step and scGen's step 1 marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s, v = np.asarray(steps, dtype=float), np.asarray(loss, dtype=float)
    if s.shape != v.shape or s.ndim != 1 or len(s) == 0:
        raise ConfigError(f"steps {s.shape} and loss {v.shape} must be equal-length 1-D arrays")
    best = int(np.argmin(v))
    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.plot(s, v, "-", c="tab:blue")
    ax.axvline(1.0, c="0.5", ls="--", lw=0.8, label="step 1 (scGen)")
    ax.plot([s[best]], [v[best]], "o", c="tab:red", label=f"chosen step {s[best]:.2f}")
    ax.set_xlabel("latent step (multiple of the delta)")
    ax.set_ylabel("training types: MSE on their DEGs")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _save(fig, path, overwrite)
