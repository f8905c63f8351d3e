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
balance and average again; the interval is the 2.5-97.5 percentile band per coordinate. Without
draws, or when every draw gives the same |delta| (e.g. one cell per group), there is no interval:
the bounds are None and ``ci_unavailable`` says why.

``regressed_delta`` is the cell-type specific alternative (as in scVIDR): one delta per training
type, ``delta_t = mean z(perturbed, t) - mean z(control, t)``, regressed on the type's control mean
``mu_t`` by ridge regression, ``delta(z) = delta_bar + B (z - mu_bar)``, and evaluated at every
query cell. Types weigh equally (as after balancing); the ridge penalty is relative to the spread
of the type means, and a large one gives back the mean of the per-type deltas.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from gensci.errors import ConfigError, DataError

BALANCE_MODES = ("upsample", "downsample", "none")
DELTA_MODES = ("mean", "regression")


@dataclass
class DeltaResult:
    """A perturbation vector with its bootstrap interval."""

    delta: np.ndarray  # (d,)
    ci_low: np.ndarray | None  # (d,) 2.5 percentile; None when there is no interval
    ci_high: np.ndarray | None  # (d,)
    norm: float
    norm_ci: tuple[float, float] | None
    cell_types: list[str] = field(default_factory=list)
    balance: str = "upsample"  # "type-means" for the regression: every type weighs the same
    n_bootstrap: int = 0
    mode: str = "mean"  # one of DELTA_MODES
    ci_unavailable: str = ""  # why there is no interval ("" when there is one)

    def to_uns(self) -> dict:
        """Return a dict fit for ``adata.uns`` (arrays and plain values only).

        Without an interval, ci_low / ci_high / norm_ci are left out and ``ci_unavailable``
        holds the reason.
        """
        out = {
            "delta": self.delta.astype(np.float32),
            "norm": float(self.norm),
            "cell_types": np.array(self.cell_types, dtype=object),
            "balance": self.balance,
            "n_bootstrap": int(self.n_bootstrap),
            "mode": self.mode,
        }
        if self.norm_ci is None or self.ci_low is None or self.ci_high is None:
            out["ci_unavailable"] = self.ci_unavailable or "no bootstrap interval"
        else:
            out["ci_low"] = self.ci_low.astype(np.float32)
            out["ci_high"] = self.ci_high.astype(np.float32)
            out["norm_ci"] = np.array(self.norm_ci, dtype=np.float32)
        return out


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


def _groups(
    labels: np.ndarray, pert: np.ndarray, types: list[str]
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Return the index groups (control, perturbed), one per type of `types`."""
    return ([np.flatnonzero((labels == t) & ~pert) for t in types],
            [np.flatnonzero((labels == t) & pert) for t in types])


Interval = tuple[np.ndarray | None, np.ndarray | None, tuple[float, float] | None, str]


def _interval(
    delta: np.ndarray,
    estimate,  # type: ignore[no-untyped-def]
    ctrl_groups: list[np.ndarray],
    pert_groups: list[np.ndarray],
    n_bootstrap: int,
    rng: np.random.Generator,
) -> Interval:
    """Return (ci_low, ci_high, norm_ci, reason) of `estimate(ctrl_groups, pert_groups)` (d,) over
    `n_bootstrap` resamplings of every group with replacement.

    Without draws, or when the draws' |delta| band has zero width (they all agree, e.g. one cell
    per group), there is no interval: (None, None, None, the reason).
    """
    if n_bootstrap <= 0:
        return None, None, None, "no bootstrap draws (n_bootstrap = 0)"
    reps = np.empty((n_bootstrap, len(delta)))
    for b in range(n_bootstrap):
        cg = [rng.choice(g, size=len(g), replace=True) for g in ctrl_groups]
        pg = [rng.choice(g, size=len(g), replace=True) for g in pert_groups]
        reps[b] = estimate(cg, pg)
    lo, hi = np.percentile(reps, [2.5, 97.5], axis=0)
    norms = np.linalg.norm(reps, axis=1)
    band = (float(np.percentile(norms, 2.5)), float(np.percentile(norms, 97.5)))
    if not band[1] > band[0]:
        sizes = sorted({len(g) for g in ctrl_groups + pert_groups})
        return None, None, None, (
            f"all {n_bootstrap} bootstrap draws give the same |delta| (group sizes {sizes}); "
            "the resampling shows no spread, so no interval is reported"
        )
    return lo, hi, band, ""


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
    ctrl_groups, pert_groups = _groups(labels, pert, both)
    rng = np.random.default_rng(seed)

    def estimate(cg: list[np.ndarray], pg: list[np.ndarray]) -> np.ndarray:
        return _balanced_mean(values, pg, balance, rng) - _balanced_mean(values, cg, balance, rng)

    delta = estimate(ctrl_groups, pert_groups)
    lo, hi, norm_ci, why = _interval(delta, estimate, ctrl_groups, pert_groups, n_bootstrap, rng)
    return DeltaResult(
        delta=delta,
        ci_low=lo,
        ci_high=hi,
        norm=float(np.linalg.norm(delta)),
        norm_ci=norm_ci,
        cell_types=both,
        balance=balance,
        n_bootstrap=n_bootstrap,
        ci_unavailable=why,
    )


def _per_type_stats(
    values: np.ndarray, ctrl_groups: list[np.ndarray], pert_groups: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Return (control means (k, d), deltas (k, d)) of the k types' index groups."""
    mu = np.stack([values[g].mean(axis=0) for g in ctrl_groups])
    de = np.stack([values[p].mean(axis=0) for p in pert_groups]) - mu
    return mu, de


def _ridge_predict(mu: np.ndarray, de: np.ndarray, query: np.ndarray, ridge: float) -> np.ndarray:
    """Return delta(query) (m, d) of the ridge regression of the deltas `de` on the means `mu`.

    Kernel (dual) form, exact for k types in d dimensions: with M = mu - mu_bar and
    D = de - de_bar, delta(q) = de_bar + (q - mu_bar) M^T (M M^T + ridge * s I)^-1 D, where
    s = trace(M M^T) / k makes `ridge` independent of the latent scale.
    """
    mbar, dbar = mu.mean(axis=0), de.mean(axis=0)
    M, D = mu - mbar, de - dbar
    K = M @ M.T
    s = float(np.trace(K)) / len(K)
    if s <= 0:  # every type has the same control mean: nothing to regress on
        return np.broadcast_to(dbar, (len(query), len(dbar))).copy()
    alpha = np.linalg.solve(K + ridge * s * np.eye(len(K)), D)
    return dbar + ((query - mbar) @ M.T) @ alpha


def regressed_delta(
    values: np.ndarray,
    cell_types: Sequence[str] | np.ndarray,
    is_perturbed: np.ndarray,
    query: np.ndarray,
    ridge: float = 1.0,
    restrict_to: Sequence[str] | None = None,
    seed: int = 0,
    n_bootstrap: int = 0,
) -> tuple[np.ndarray, DeltaResult]:
    """Return (per-query deltas (m, d), DeltaResult of their mean) of the cell-type regression.

    values (n, d), cell_types (n,), is_perturbed (n,): the training cells; query (m, d): the
    cells to shift (e.g. a held-out type's controls). Needs >= 2 types with cells in both
    conditions. The bootstrap resamples every (type, condition) group with replacement, refits,
    and gives the 2.5-97.5% band of the query cells' mean delta.
    """
    if not ridge > 0 or not np.isfinite(ridge):
        raise ConfigError(f"ridge must be a positive number, got {ridge}")
    values = np.asarray(values, dtype=np.float64)
    query = np.asarray(query, dtype=np.float64)
    if query.ndim != 2 or values.ndim != 2 or query.shape[1] != values.shape[1]:
        raise DataError(
            f"query {query.shape} and values {values.shape} must be 2-D with the same columns"
        )
    # reuse balanced_delta's checks and type selection; its delta is not used here
    chosen = balanced_delta(values, cell_types, is_perturbed, "none", restrict_to).cell_types
    if len(chosen) < 2:
        raise DataError(
            f"the regression delta needs >= 2 cell types with both conditions, found {chosen}; "
            "use the mean delta"
        )
    labels = np.asarray(cell_types).astype(str)
    pert = np.asarray(is_perturbed, dtype=bool)
    ctrl_groups, pert_groups = _groups(labels, pert, chosen)
    per_cell = _ridge_predict(*_per_type_stats(values, ctrl_groups, pert_groups), query, ridge)
    delta = per_cell.mean(axis=0)
    qbar = query.mean(axis=0, keepdims=True)  # the mean delta is linear in the query

    def estimate(cg: list[np.ndarray], pg: list[np.ndarray]) -> np.ndarray:
        return _ridge_predict(*_per_type_stats(values, cg, pg), qbar, ridge)[0]

    lo, hi, norm_ci, why = _interval(delta, estimate, ctrl_groups, pert_groups, n_bootstrap,
                                     np.random.default_rng(seed))
    return per_cell, DeltaResult(
        delta=delta, ci_low=lo, ci_high=hi, norm=float(np.linalg.norm(delta)),
        norm_ci=norm_ci, cell_types=list(chosen), balance="type-means",
        n_bootstrap=n_bootstrap, mode="regression", ci_unavailable=why,
    )
