"""The perturbation vector: mean perturbed minus mean control, after cell-type balancing.

Balancing keeps an abundant cell type from dominating the vector. It is applied to each condition
separately, over the cell types present in *both* conditions (a type seen in one condition only
would confound composition with response), optionally restricted to chosen types:

* ``"upsample"`` (default, scGen's choice, here seeded): every type's cells are drawn **with
  replacement** up to the size of the largest type;
* ``"downsample"``: every type's cells are drawn **without replacement** down to the size of the
  smallest type;
* ``"none"``: plain means over all cells.

Bootstrap intervals resample the cells of every (type, condition) group with replacement, then
balance and average again; the interval is the 2.5-97.5 percentile band per coordinate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from gensci.errors import ConfigError, DataError

BALANCE_MODES = ("upsample", "downsample", "none")


@dataclass
class DeltaResult:
    """A perturbation vector with its bootstrap interval."""

    delta: np.ndarray  # (d,)
    ci_low: np.ndarray  # (d,) 2.5 percentile; equal to delta when n_bootstrap == 0
    ci_high: np.ndarray  # (d,)
    norm: float
    norm_ci: tuple[float, float]
    cell_types: list[str] = field(default_factory=list)
    balance: str = "upsample"
    n_bootstrap: int = 0

    def to_uns(self) -> dict:
        """Return a dict fit for ``adata.uns`` (arrays and plain values only)."""
        return {
            "delta": self.delta.astype(np.float32),
            "ci_low": self.ci_low.astype(np.float32),
            "ci_high": self.ci_high.astype(np.float32),
            "norm": float(self.norm),
            "norm_ci": np.array(self.norm_ci, dtype=np.float32),
            "cell_types": np.array(self.cell_types, dtype=object),
            "balance": self.balance,
            "n_bootstrap": int(self.n_bootstrap),
        }


def _balanced_mean(
    values: np.ndarray, groups: list[np.ndarray], balance: str, rng: np.random.Generator
) -> np.ndarray:
    """Return the balanced mean (d,) of `values` over the index groups (one per cell type)."""
    if balance == "none":
        return values[np.concatenate(groups)].mean(axis=0)
    sizes = [len(g) for g in groups]
    if balance == "upsample":
        n = max(sizes)
        picks = [rng.choice(g, size=n, replace=True) for g in groups]
    else:
        n = min(sizes)
        picks = [rng.choice(g, size=n, replace=False) for g in groups]
    return values[np.concatenate(picks)].mean(axis=0)


def balanced_delta(
    values: np.ndarray,
    cell_types: Sequence[str] | np.ndarray,
    is_perturbed: np.ndarray,
    balance: str = "upsample",
    restrict_to: Sequence[str] | None = None,
    seed: int = 0,
    n_bootstrap: int = 0,
) -> DeltaResult:
    """Return the balanced delta = mean(perturbed) - mean(control) of `values` (n, d).

    cell_types: (n,) labels; is_perturbed: (n,) bool. Only types with cells in both conditions
    (and in `restrict_to`, if given) contribute. Raises DataError if none do.
    """
    if balance not in BALANCE_MODES:
        raise ConfigError(f"unknown balance {balance!r}; choose one of {BALANCE_MODES}")
    values = np.asarray(values, dtype=np.float64)
    labels = np.asarray(cell_types).astype(str)
    pert = np.asarray(is_perturbed, dtype=bool)
    if values.ndim != 2 or len(values) != len(labels) or len(labels) != len(pert):
        raise DataError(
            f"values {values.shape}, cell_types ({len(labels)},) and is_perturbed ({len(pert)},) "
            "must agree in their first dimension"
        )
    both = sorted(set(labels[pert]) & set(labels[~pert]))
    if restrict_to is not None:
        unknown = sorted(set(restrict_to) - set(labels))
        if unknown:
            raise DataError(f"cell types {unknown} not in the data (types: {sorted(set(labels))})")
        both = [t for t in both if t in set(restrict_to)]
    if not both:
        raise DataError(
            "no cell type has both control and perturbed cells"
            + (f" among {list(restrict_to)}" if restrict_to is not None else "")
            + "; the perturbation vector cannot be estimated"
        )
    ctrl_groups = [np.flatnonzero((labels == t) & ~pert) for t in both]
    pert_groups = [np.flatnonzero((labels == t) & pert) for t in both]
    rng = np.random.default_rng(seed)
    delta = _balanced_mean(values, pert_groups, balance, rng) - _balanced_mean(
        values, ctrl_groups, balance, rng
    )
    if n_bootstrap > 0:
        reps = np.empty((n_bootstrap, values.shape[1]))
        for b in range(n_bootstrap):
            cg = [rng.choice(g, size=len(g), replace=True) for g in ctrl_groups]
            pg = [rng.choice(g, size=len(g), replace=True) for g in pert_groups]
            reps[b] = _balanced_mean(values, pg, balance, rng) - _balanced_mean(
                values, cg, balance, rng
            )
        lo, hi = np.percentile(reps, [2.5, 97.5], axis=0)
        norms = np.linalg.norm(reps, axis=1)
        norm_ci = (float(np.percentile(norms, 2.5)), float(np.percentile(norms, 97.5)))
    else:
        lo, hi = delta.copy(), delta.copy()
        norm_ci = (float(np.linalg.norm(delta)),) * 2
    return DeltaResult(
        delta=delta,
        ci_low=lo,
        ci_high=hi,
        norm=float(np.linalg.norm(delta)),
        norm_ci=norm_ci,
        cell_types=both,
        balance=balance,
        n_bootstrap=n_bootstrap,
    )
