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
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gensci import checkpoint
from gensci.errors import CheckpointError, ConfigError, DataError
from gensci.protein.baseline import Potts, PottsConfig, fit_potts
from gensci.protein.metrics import column_shuffled
from gensci.protein.split import clustered_split

KIND = "gensci.protein.family_check"
METHODS = ("potts",)
checkpoint.register_model(Potts, PottsConfig)


@dataclass
class FamilyCheck:
    """Potts pseudo-log-likelihood per position, calibrated on held-out naturals."""

    potts: Potts
    natural_scores: np.ndarray  # (M,) per-position scores of calibration naturals
    quantile: float = 0.05
    decoy_scores: np.ndarray | None = None  # scores of column-shuffled calibration naturals

    def __post_init__(self) -> None:
        if not 0.0 <= self.quantile < 1.0:
            raise ConfigError(f"family check quantile must lie in [0, 1), got {self.quantile}")
        self.natural_scores = np.sort(np.asarray(self.natural_scores, dtype=np.float64))
        if self.natural_scores.size == 0:
            raise DataError("the family check needs at least one calibration natural")
        if self.decoy_scores is not None:
            self.decoy_scores = np.sort(np.asarray(self.decoy_scores, dtype=np.float64))

    def decoy_fail_share(self) -> float:
        """Return the share of column-shuffled calibration decoys below the threshold (NaN
        when none are stored)."""
        if self.decoy_scores is None or self.decoy_scores.size == 0:
            return float("nan")
        return float(np.mean(self.decoy_scores < self.threshold))

    def quantile_failing(self, share: float) -> float:
        """Return the quantile of calibration naturals whose threshold fails `share` of the
        column-shuffled calibration decoys (both from rows held out of the Potts fit)."""
        if not 0.0 < share < 1.0:
            raise ConfigError(f"--family-decoys-fail must lie in (0, 1), got {share}")
        if self.decoy_scores is None or self.decoy_scores.size == 0:
            raise DataError("this family check stores no decoy scores; fit it again")
        t = float(np.quantile(self.decoy_scores, share))
        q = float(np.searchsorted(self.natural_scores, t) / self.natural_scores.size)
        return min(max(q, 1.0 / self.natural_scores.size), 1.0 - 1.0 / self.natural_scores.size)

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
    n_decoys: int = 5,
) -> FamilyCheck:
    """Return a FamilyCheck: a Potts model fitted on the family's rows less whole identity
    clusters (`calibration_fraction` of rows below `max_identity` to the rest), whose scores
    set the threshold; `n_decoys` x as many column-shuffled copies of those held-out rows are
    scored too (for `quantile_failing`)."""
    codes = np.asarray(codes)
    fit_rows, cal_rows = clustered_split(codes, calibration_fraction, max_identity, seed)
    w = None if weights is None else np.asarray(weights)[fit_rows]
    potts, _ = fit_potts(codes[fit_rows], w, config, progress=progress)
    check = FamilyCheck(potts, np.zeros(1), quantile)
    check.natural_scores = np.sort(check.scores(codes[cal_rows]))
    decoys = column_shuffled(codes[cal_rows], n_decoys * len(cal_rows), np.random.default_rng(seed))
    check.decoy_scores = np.sort(check.scores(decoys))
    return check


def check_quantile(quantile: float, name: str = "--family-quantile") -> float:
    """Return `quantile` if it lies in (0, 1); raise ConfigError naming it otherwise."""
    if not (isinstance(quantile, (int, float)) and 0.0 < float(quantile) < 1.0):
        raise ConfigError(f"{name} must lie in (0, 1), got {quantile}")
    return float(quantile)


def save_family_check(
    check: FamilyCheck,
    path: str | Path,
    overwrite: bool = False,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write the check's Potts model and calibration scores to one checkpoint; return its path."""
    meta = {
        "kind": KIND,
        "natural_scores": [float(v) for v in check.natural_scores],
        "quantile": check.quantile,
        "decoy_scores": []
        if check.decoy_scores is None
        else [float(v) for v in check.decoy_scores],
        **(extra or {}),
    }
    return checkpoint.save(check.potts, path, overwrite=overwrite, metadata=meta)


def load_family_check(
    path: str | Path, quantile: float | None = None, length: int | None = None
) -> FamilyCheck:
    """Return the FamilyCheck stored by `save_family_check` (with `quantile` if given); raise
    CheckpointError if the file holds something else or a model of another `length`."""
    model = checkpoint.load(path)
    raw = checkpoint.load_metadata(path)
    if raw.get("kind") != KIND or not isinstance(model, Potts):
        raise CheckpointError(
            f"{path} is not a family check file (written by protein design --family-check potts)"
        )
    scores = raw.get("natural_scores")
    if not isinstance(scores, list) or not scores:
        raise CheckpointError(f"{path}: metadata 'natural_scores' must be a non-empty list")
    if length is not None and model.config.length != length:
        raise CheckpointError(
            f"{path}: the family check covers {model.config.length} positions "
            f"but the model has {length}"
        )
    q = float(raw.get("quantile", 0.05)) if quantile is None else quantile
    decoys = raw.get("decoy_scores") or None
    return FamilyCheck(
        model,
        np.asarray(scores, dtype=np.float64),
        q,
        None if decoys is None else np.asarray(decoys, dtype=np.float64),
    )
