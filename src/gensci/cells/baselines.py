"""Baselines a perturbation model must beat, each on the same training cells as the model.

* ``control_as_prediction``: the held-out type's control cells, unchanged (no response at all).
* ``gene_shift_prediction``: control cells plus the balanced mean shift of the training types in
  gene space (one constant vector for every cell).
* ``pca_shift_prediction``: the same arithmetic in the space of the top principal components of
  the training cells (the linear analogue of latent arithmetic).

All take training cells `train_x` (n, G) with their `cell_types` (n,) and `is_perturbed` (n,)
and the control cells to transform `control_x` (m, G); they return predicted cells (m, G).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gensci.cells.delta import balanced_delta
from gensci.errors import ConfigError


def control_as_prediction(control_x: np.ndarray) -> np.ndarray:
    """Return the control cells themselves (m, G) as the prediction."""
    return np.array(control_x, dtype=np.float32, copy=True)


def gene_shift_prediction(
    train_x: np.ndarray,
    cell_types: Sequence[str] | np.ndarray,
    is_perturbed: np.ndarray,
    control_x: np.ndarray,
    balance: str = "upsample",
    seed: int = 0,
) -> np.ndarray:
    """Return control_x + balanced gene-space delta (m, G)."""
    d = balanced_delta(train_x, cell_types, is_perturbed, balance=balance, seed=seed).delta
    return (control_x + d[None, :]).astype(np.float32)


def pca_shift_prediction(
    train_x: np.ndarray,
    cell_types: Sequence[str] | np.ndarray,
    is_perturbed: np.ndarray,
    control_x: np.ndarray,
    n_components: int = 50,
    balance: str = "upsample",
    seed: int = 0,
) -> np.ndarray:
    """Return control cells projected on the training PCs, shifted by the PC-space delta,
    and mapped back to genes (m, G)."""
    if n_components < 1:
        raise ConfigError(f"n_components must be >= 1, got {n_components}")
    x = np.asarray(train_x, dtype=np.float64)
    mean = x.mean(axis=0)
    k = min(n_components, min(x.shape) - 1) if min(x.shape) > 1 else 1
    # Thin SVD of the centred training cells: rows of vt are the principal axes.
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    axes = vt[:k]  # (k, G)
    z_train = (x - mean) @ axes.T
    d = balanced_delta(z_train, cell_types, is_perturbed, balance=balance, seed=seed).delta
    z_ctrl = (np.asarray(control_x, dtype=np.float64) - mean) @ axes.T
    return ((z_ctrl + d[None, :]) @ axes + mean).astype(np.float32)
