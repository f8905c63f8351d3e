"""Sequence weights: 1 / (number of rows above an identity threshold), as DeepSequence and EVE.

Identity of row i to row j = (columns where both hold the same residue) / (non-gap columns of
row i); a row counts itself. The pairwise identities are one matrix product of one-hot codes
(gaps are zero vectors), done in row chunks so memory stays at `chunk_size x N`. Results are
cached on disk, keyed by a hash of the codes and the threshold.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from gensci.errors import DataError
from gensci.protein.io import GAP_INDEX, N_LETTERS


def default_cache_dir() -> Path:
    """Return the weights cache folder ($GENSCI_CACHE/protein/weights or ~/.cache/gensci/...)."""
    root = os.environ.get("GENSCI_CACHE") or Path.home() / ".cache" / "gensci"
    return Path(root) / "protein" / "weights"


def one_hot(codes: np.ndarray | torch.Tensor, drop_gap: bool = True) -> torch.Tensor:
    """Return the one-hot codes flattened: (N, L * 20) float32 with gaps as zeros (drop_gap)."""
    x = torch.as_tensor(np.asarray(codes), dtype=torch.long)
    oh = torch.nn.functional.one_hot(x, N_LETTERS).to(torch.float32)
    if drop_gap:
        oh = oh[..., GAP_INDEX + 1 :]
    return oh.reshape(x.shape[0], -1)


def _matches(block: torch.Tensor, ref_t: torch.Tensor) -> torch.Tensor:
    """Return block @ ref_t as float: shared residues per pair, (B, M).

    One-hot codes are 0/1, so an int8 product with int32 accumulation is exact and several
    times faster than float32 on CPUs with integer dot-product units; float32 where the
    int8 kernel is missing.
    """
    if block.device.type == "cpu" and hasattr(torch, "_int_mm"):
        try:
            return torch._int_mm(block.to(torch.int8), ref_t.to(torch.int8)).float()
        except (RuntimeError, NotImplementedError):
            pass
    return block.float() @ ref_t.float()


def neighbour_counts(
    codes: np.ndarray,
    threshold: float = 0.8,
    chunk_size: int = 1024,
    progress: bool = False,
    reference: np.ndarray | None = None,
) -> np.ndarray:
    """Return for each row the number of rows of `reference` (default: itself) above `threshold`.

    codes: (N, L) int codes; reference: (M, L). Result: (N,) int64.
    """
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.shape[0] == 0:
        raise DataError(f"codes must be a non-empty (N, L) array, got shape {codes.shape}")
    ref = codes if reference is None else np.asarray(reference)
    x_ref = one_hot(ref).to(torch.int8).T.contiguous()
    counts = np.zeros(codes.shape[0], dtype=np.int64)
    nongap = (codes != GAP_INDEX).sum(axis=1)
    starts = range(0, codes.shape[0], chunk_size)
    for s in tqdm(starts, desc="identity", disable=not progress, leave=False):
        matches = _matches(one_hot(codes[s : s + chunk_size]), x_ref)
        denom = torch.as_tensor(np.maximum(nongap[s : s + chunk_size], 1), dtype=torch.float32)
        ident = matches / denom[:, None]
        counts[s : s + chunk_size] = (ident > threshold).sum(dim=1).numpy()
    return counts


def nearest_identity(
    codes: np.ndarray, reference: np.ndarray, chunk_size: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """Return (identity to the nearest reference row, its index): (N,) float, (N,) int.

    Identity = same non-gap residue / non-gap columns of the query row.
    """
    codes = np.asarray(codes)
    x_ref = one_hot(reference).to(torch.int8).T.contiguous()
    best = np.zeros(codes.shape[0], dtype=np.float64)
    arg = np.zeros(codes.shape[0], dtype=np.int64)
    nongap = np.maximum((codes != GAP_INDEX).sum(axis=1), 1)
    for s in range(0, codes.shape[0], chunk_size):
        matches = _matches(one_hot(codes[s : s + chunk_size]), x_ref)
        ident = matches / torch.as_tensor(nongap[s : s + chunk_size], dtype=torch.float32)[:, None]
        v, i = ident.max(dim=1)
        best[s : s + chunk_size] = v.numpy()
        arg[s : s + chunk_size] = i.numpy()
    return best, arg


def sequence_weights(
    codes: np.ndarray,
    threshold: float = 0.8,
    chunk_size: int = 1024,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    progress: bool = False,
) -> np.ndarray:
    """Return the weights 1 / (neighbours with identity > threshold): (N,) float64.

    The effective number of sequences is `weights.sum()` (Neff).
    """
    codes = np.ascontiguousarray(np.asarray(codes, dtype=np.int8))
    if not 0.0 < threshold <= 1.0:
        raise DataError(f"identity threshold must lie in (0, 1], got {threshold}")
    key = hashlib.sha256(codes.tobytes() + str(codes.shape).encode() + f"{threshold}".encode())
    cache_file = Path(cache_dir or default_cache_dir()) / f"{key.hexdigest()[:32]}.npy"
    if use_cache and cache_file.exists():
        w = np.load(cache_file)
        if w.shape == (codes.shape[0],):
            return w
    counts = neighbour_counts(codes, threshold, chunk_size, progress)
    w = 1.0 / np.maximum(counts, 1)
    if use_cache:
        try:
            from gensci.runtime import atomic_save

            atomic_save(cache_file, lambda p: np.save(p, w), overwrite=True, suffix=".npy")
        except OSError:
            pass  # a read-only cache folder must not stop training
    return w


def effective_number(weights: np.ndarray) -> float:
    """Return Neff, the sum of the sequence weights."""
    return float(np.sum(weights))
