"""A family check that tells members from look-alikes: the Potts model's pseudo-log-likelihood
per position, against the distribution of natural members the model was not fitted on.

A profile HMM scores each column on its own, so it cannot tell a natural from a column-shuffled
decoy (same column compositions, coupling lost): on WW its bit scores give AUC 0.50 between
them and it "recognises" 100% of decoys. A pair model sees the coupling. The threshold is the
`quantile` of held-out naturals' scores (whole identity clusters held out from the Potts fit),
so about 1 - quantile of new naturals pass by construction; what fails is reported per sequence
as a percentile among those naturals.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from gensci.errors import ConfigError, DataError
from gensci.protein.baseline import Potts, PottsConfig, fit_potts
from gensci.protein.split import clustered_split


@dataclass
class FamilyCheck:
    """Potts pseudo-log-likelihood per position, calibrated on held-out naturals."""

    potts: Potts
    natural_scores: np.ndarray  # (M,) per-position scores of calibration naturals
    quantile: float = 0.05

    def __post_init__(self) -> None:
        if not 0.0 <= self.quantile < 1.0:
            raise ConfigError(f"family check quantile must lie in [0, 1), got {self.quantile}")
        self.natural_scores = np.sort(np.asarray(self.natural_scores, dtype=np.float64))
        if self.natural_scores.size == 0:
            raise DataError("the family check needs at least one calibration natural")

    @property
    def threshold(self) -> float:
        """Return the score a sequence must reach: the naturals' `quantile`."""
        return float(np.quantile(self.natural_scores, self.quantile))

    @torch.no_grad()
    def scores(self, codes: np.ndarray) -> np.ndarray:
        """Return the pseudo-log-likelihood per position of aligned rows `codes` (N, L): (N,)."""
        codes = np.asarray(codes)
        x = torch.as_tensor(codes, dtype=torch.long)
        out = [self.potts.pseudo_log_likelihood(x[s : s + 4096]) for s in range(0, len(x), 4096)]
        return (torch.cat(out).numpy() / codes.shape[1]).astype(np.float64)

    def percentile(self, codes: np.ndarray) -> np.ndarray:
        """Return, per row, the fraction of calibration naturals scoring below it: (N,)."""
        return np.searchsorted(self.natural_scores, self.scores(codes)) / self.natural_scores.size

    def passes(self, codes: np.ndarray) -> np.ndarray:
        """Return whether each row reaches the threshold: (N,) bool."""
        return self.scores(codes) >= self.threshold


def fit_family_check(
    codes: np.ndarray,
    weights: np.ndarray | None = None,
    quantile: float = 0.05,
    calibration_fraction: float = 0.1,
    max_identity: float = 0.8,
    config: PottsConfig | None = None,
    seed: int = 0,
    progress: bool = False,
) -> FamilyCheck:
    """Return a FamilyCheck: a Potts model fitted on the family's rows less whole identity
    clusters (`calibration_fraction` of rows below `max_identity` to the rest), whose scores
    set the threshold."""
    codes = np.asarray(codes)
    fit_rows, cal_rows = clustered_split(codes, calibration_fraction, max_identity, seed)
    w = None if weights is None else np.asarray(weights)[fit_rows]
    potts, _ = fit_potts(codes[fit_rows], w, config, progress=progress)
    check = FamilyCheck(potts, np.zeros(1), quantile)
    check.natural_scores = np.sort(check.scores(codes[cal_rows]))
    return check
