"""Site-independent model: a profile of per-column letter frequencies, the reference every
VAE figure is set beside. It knows each column's composition and nothing of their coupling."""

from __future__ import annotations

import numpy as np
import torch

from gensci.errors import DataError
from gensci.protein.io import N_LETTERS


class SiteIndependent:
    """p(x) = prod_i f_i(x_i), with weighted frequencies and a pseudocount."""

    def __init__(self, probs: np.ndarray) -> None:
        self.probs = np.asarray(probs, dtype=np.float64)  # (L, K)
        with np.errstate(divide="ignore"):  # a letter never seen without pseudocount: -inf
            self.log_probs = np.log(self.probs)

    @classmethod
    def fit(
        cls, codes: np.ndarray, weights: np.ndarray | None = None, pseudocount: float = 0.5
    ) -> SiteIndependent:
        """Return the profile of aligned rows `codes` (N, L) with sequence `weights` (N,)."""
        codes = np.asarray(codes)
        if codes.ndim != 2 or codes.shape[0] == 0:
            raise DataError(f"codes must be a non-empty (N, L) array, got shape {codes.shape}")
        w = np.ones(codes.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
        counts = np.zeros((codes.shape[1], N_LETTERS))
        for k in range(N_LETTERS):
            counts[:, k] = ((codes == k) * w[:, None]).sum(axis=0)
        counts += pseudocount
        return cls(counts / counts.sum(axis=1, keepdims=True))

    @property
    def length(self) -> int:
        """Return the number of aligned positions."""
        return self.probs.shape[0]

    def log_prob(self, codes: np.ndarray) -> np.ndarray:
        """Return log p(x) per row of `codes` (N, L): (N,)."""
        codes = np.asarray(codes)
        return self.log_probs[np.arange(self.length)[None, :], codes].sum(axis=1)

    def sample(self, n: int, generator: torch.Generator, temperature: float = 1.0) -> np.ndarray:
        """Return n aligned rows, each position drawn independently: (n, L) int.

        temperature 0 gives the consensus (argmax) row n times.
        """
        if temperature == 0:
            return np.tile(self.probs.argmax(axis=1), (n, 1))
        logits = torch.as_tensor(self.log_probs / temperature)
        p = torch.softmax(logits, dim=-1)  # (L, K)
        draws = torch.multinomial(p, n, replacement=True, generator=generator)  # (L, n)
        return draws.T.numpy().astype(np.int64)
