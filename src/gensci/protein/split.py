"""Held-out splits of a family: random, and clustered by sequence identity.

A random split leaves close relatives of most held-out rows in training, so held-out scores
measure recall more than generalisation. The clustered split joins every pair of rows whose
identity reaches `max_identity` (in either direction: shared residues / non-gap columns of
either row) into one cluster and holds out whole clusters, so every held-out row lies below
`max_identity` to every training row, whichever row's length the identity is divided by.
"""

from __future__ import annotations

import numpy as np
import torch

from gensci.errors import ConfigError, DataError
from gensci.protein.io import GAP_INDEX
from gensci.protein.weights import _matches, one_hot


def _check_fraction(test_fraction: float) -> None:
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"test_fraction must lie in (0, 1), got {test_fraction}")


def random_split(n: int, test_fraction: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Return (train rows, held-out rows), sorted, drawn uniformly with `seed`."""
    _check_fraction(test_fraction)
    if n < 2:
        raise DataError(f"need at least 2 rows to split, got {n}")
    perm = np.random.default_rng(seed).permutation(n)
    n_test = min(n - 1, max(1, int(round(test_fraction * n))))
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def identity_clusters(
    codes: np.ndarray, max_identity: float = 0.8, chunk_size: int = 1024
) -> np.ndarray:
    """Return a cluster label per row (N,): rows joined when their identity >= max_identity.

    Identity of a pair = shared residues / min(non-gap columns of the two rows), i.e. the larger
    of the two directed identities; single linkage (connected components).
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.shape[0] == 0:
        raise DataError(f"codes must be a non-empty (N, L) array, got shape {codes.shape}")
    if not 0.0 < max_identity <= 1.0:
        raise ConfigError(f"max_identity must lie in (0, 1], got {max_identity}")
    n = codes.shape[0]
    x_ref = one_hot(codes).to(torch.int8).T.contiguous()
    nongap = np.maximum((codes != GAP_INDEX).sum(axis=1), 1).astype(np.float32)
    rows, cols = [], []
    for s in range(0, n, chunk_size):
        matches = _matches(one_hot(codes[s : s + chunk_size]), x_ref).numpy()
        denom = np.minimum(nongap[s : s + chunk_size, None], nongap[None, :])
        i, j = np.nonzero(matches / denom >= max_identity)
        rows.append(i + s)
        cols.append(j)
    r, c = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(r.size, dtype=np.int8), (r, c)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def clustered_split(
    codes: np.ndarray,
    test_fraction: float = 0.1,
    max_identity: float = 0.8,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Return (train rows, held-out rows), sorted: whole identity clusters are held out.

    Clusters are visited in a seeded random order and held out while they fit in the held-out
    share, so every held-out row is below `max_identity` to every training row. Raises
    DataError when no cluster fits (one cluster holds nearly every row).
    """
    _check_fraction(test_fraction)
    labels = identity_clusters(codes, max_identity)
    n = labels.size
    n_test = max(1, int(round(test_fraction * n)))
    sizes = np.bincount(labels)
    order = np.random.default_rng(seed).permutation(sizes.size)
    held = np.zeros(sizes.size, dtype=bool)
    total = 0
    for c in order:
        if total + sizes[c] <= n_test:
            held[c] = True
            total += int(sizes[c])
        if total == n_test:
            break
    if total == 0 or held.all():
        raise DataError(
            f"cannot hold out {test_fraction:.0%} of {n} rows by clusters at identity "
            f"{max_identity}: the largest of {sizes.size} clusters holds {sizes.max()} rows"
        )
    test = np.flatnonzero(held[labels])
    train = np.flatnonzero(~held[labels])
    return train, test
