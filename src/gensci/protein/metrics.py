"""Metrics of designs against the natural family: covariation fidelity, novelty, and how well a
model tells held-out naturals from column-shuffled decoys.

Connected pair correlations: C_ij(a, b) = f_ij(a, b) - f_i(a) f_j(b) over all columns i < j and
all letter pairs (a, b) (gap included). Fidelity is the Pearson r between the designs' C and the
natural alignment's (weighted) C.
"""

from __future__ import annotations

import numpy as np
import torch

from gensci.errors import DataError
from gensci.protein.io import N_LETTERS


def pair_correlations(codes: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Return C_ij(a, b) for i < j, flattened: (L (L-1) / 2 * K * K,) float32.

    codes: (N, L) aligned rows; weights: (N,) sequence weights (uniform when None).
    """
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.shape[0] < 2:
        raise DataError(f"need an (N >= 2, L) array of rows, got shape {codes.shape}")
    n, length = codes.shape
    w_np = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    w = torch.as_tensor(w_np / w_np.sum(), dtype=torch.float32)
    x = torch.nn.functional.one_hot(torch.as_tensor(codes), N_LETTERS).float().reshape(n, -1)
    fi = (w[:, None] * x).sum(0)  # (L K,)
    fij = (x * w[:, None]).T @ x  # (L K, L K)
    c = (fij - fi[:, None] * fi[None, :]).reshape(length, N_LETTERS, length, N_LETTERS)
    iu, ju = np.triu_indices(length, k=1)
    return c[iu, :, ju, :].reshape(-1).numpy()


def covariation_fidelity(
    design_codes: np.ndarray,
    natural_codes: np.ndarray,
    natural_weights: np.ndarray | None = None,
) -> float:
    """Return Pearson r between designs' and naturals' connected pair correlations."""
    if design_codes.shape[1] != natural_codes.shape[1]:
        raise DataError(
            f"designs have {design_codes.shape[1]} columns, naturals {natural_codes.shape[1]}"
        )
    a = pair_correlations(design_codes).astype(np.float64)
    b = pair_correlations(natural_codes, natural_weights).astype(np.float64)
    if a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def auc(positives: np.ndarray, negatives: np.ndarray) -> float:
    """Return the ROC AUC: probability that a positive outscores a negative (ties count half)."""
    pos = np.asarray(positives, dtype=np.float64)
    neg = np.asarray(negatives, dtype=np.float64)
    if pos.size == 0 or neg.size == 0:
        raise DataError("AUC needs at least one positive and one negative score")
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([pos, neg]))
    return float((ranks[: pos.size].sum() - pos.size * (pos.size + 1) / 2) / (pos.size * neg.size))


def column_shuffled(codes: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Return n decoys: each column drawn by shuffling that column of `codes` independently.

    The decoys keep every column's composition and lose the coupling between columns: (n, L).
    """
    codes = np.asarray(codes)
    replace = n > codes.shape[0]
    cols = [rng.choice(codes[:, j], size=n, replace=replace) for j in range(codes.shape[1])]
    return np.stack(cols, axis=1)


def position_shuffled(codes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Return each row with its letters permuted across its own positions: (N, L)."""
    return np.stack([rng.permutation(row) for row in np.asarray(codes)])
