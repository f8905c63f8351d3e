"""How close a predicted perturbed population is to the real one.

All metrics compare per-gene means over cells (log-normalised expression):

* ``r2_pearson``: squared Pearson r of predicted vs real per-gene means (scipy ``linregress``), the
  figure scGen reports as "R^2". It is inflated on all genes (most genes do not move and line up
  whatever the prediction), so the top-100 DEGs are reported too.
* ``r2``: the true coefficient of determination ``1 - SS_res / SS_tot`` of the same means; it can
  be negative and punishes a wrong scale or offset that Pearson forgives.
* ``delta_corr``: Pearson r between the predicted and real response (mean minus control mean).
* ``direction_acc``: fraction of DEGs whose predicted response has the sign of the real one.
* ``r2_pearson_std``: squared Pearson r of predicted vs real per-gene standard deviations over
  cells (scGen's variance figure): does the prediction spread like the real cells?

DEGs: the Wilcoxon test (``scanpy.tl.rank_genes_groups``) of the held-out type's real perturbed vs
control cells, ranked by absolute score, so that down-regulated genes count as DEGs too.
Intervals: bootstrap over cells, 2.5-97.5%: real perturbed cells are resampled with replacement,
and control cells with their predictions as pairs (a prediction is a function of its control
cell). Resampled means carry extra noise that biases correlation-type metrics down, so the
percentile band is re-centred on the point estimate (median of the replicates moved onto it).
A band of zero width (no draws, or draws that all agree, e.g. a control used as its own
prediction) is no interval: ci_low / ci_high are then None and ``ci_unavailable`` says why.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats

from gensci.errors import DataError

METRICS = (
    "r2_pearson_all", "r2_pearson_deg", "r2_all", "r2_deg",
    "delta_corr_all", "delta_corr_deg", "direction_acc_deg", "r2_pearson_std_all",
    "r2_pearson_std_deg",
)


def r2_pearson(pred_mean: np.ndarray, real_mean: np.ndarray) -> float:
    """Return the squared Pearson r of two per-gene mean vectors (scGen's "R^2")."""
    if np.std(pred_mean) == 0 or np.std(real_mean) == 0:
        return 0.0
    return float(stats.linregress(pred_mean, real_mean).rvalue ** 2)


def r2_score(pred_mean: np.ndarray, real_mean: np.ndarray) -> float:
    """Return the coefficient of determination 1 - SS_res/SS_tot of `pred_mean` for `real_mean`."""
    ss_tot = float(np.sum((real_mean - real_mean.mean()) ** 2))
    if ss_tot == 0:
        return 0.0
    return 1.0 - float(np.sum((real_mean - pred_mean) ** 2)) / ss_tot


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Return Pearson's r of two vectors (0 when either is constant)."""
    if np.std(a) == 0 or np.std(b) == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def top_degs(
    real_control: np.ndarray,
    real_perturbed: np.ndarray,
    gene_names: Sequence[str] | None = None,
    n: int = 100,
) -> np.ndarray:
    """Return indices (n,) of the top-`n` DEGs, perturbed vs control, by |Wilcoxon score|."""
    import anndata as ad
    import scanpy as sc

    if len(real_control) < 2 or len(real_perturbed) < 2:
        raise DataError(
            f"DEGs need >= 2 cells per condition, got {len(real_control)} control and "
            f"{len(real_perturbed)} perturbed"
        )
    n_genes = real_control.shape[1]
    names = [str(g) for g in gene_names] if gene_names is not None else [
        f"g{j}" for j in range(n_genes)
    ]
    X = np.vstack([real_control, real_perturbed]).astype(np.float32)
    cond = ["control"] * len(real_control) + ["perturbed"] * len(real_perturbed)
    tmp = ad.AnnData(X=X)
    tmp.var_names = names
    tmp.obs["condition"] = np.array(cond)
    tmp.obs["condition"] = tmp.obs["condition"].astype("category")
    sc.tl.rank_genes_groups(
        tmp, groupby="condition", groups=["perturbed"], reference="control",
        method="wilcoxon", n_genes=n_genes,
    )
    df = sc.get.rank_genes_groups_df(tmp, group="perturbed")
    df = df.assign(abs_score=df["scores"].abs()).sort_values("abs_score", ascending=False)
    index = {g: j for j, g in enumerate(names)}
    return np.array([index[g] for g in df["names"].head(n)], dtype=int)


def _metrics_from_means(
    pred: np.ndarray, real: np.ndarray, ctrl: np.ndarray, deg: np.ndarray,
    pred_sd: np.ndarray, real_sd: np.ndarray,
) -> dict[str, float]:
    d_pred, d_real = pred - ctrl, real - ctrl
    return {
        "r2_pearson_std_all": r2_pearson(pred_sd, real_sd),
        "r2_pearson_std_deg": r2_pearson(pred_sd[deg], real_sd[deg]),
        "r2_pearson_all": r2_pearson(pred, real),
        "r2_pearson_deg": r2_pearson(pred[deg], real[deg]),
        "r2_all": r2_score(pred, real),
        "r2_deg": r2_score(pred[deg], real[deg]),
        "delta_corr_all": pearson(d_pred, d_real),
        "delta_corr_deg": pearson(d_pred[deg], d_real[deg]),
        "direction_acc_deg": float(np.mean(np.sign(d_pred[deg]) == np.sign(d_real[deg]))),
    }


def evaluate_prediction(
    predicted: np.ndarray,
    real_perturbed: np.ndarray,
    control: np.ndarray,
    deg_index: np.ndarray,
    n_bootstrap: int = 200,
    seed: int = 0,
) -> dict[str, dict]:
    """Return {metric: {"value", "ci_low", "ci_high", "replicates"}} for one predicted population.

    predicted: (n_pred, G); real_perturbed: (n_real, G); control: (n_ctrl, G) of the same cell
    type; deg_index: gene indices of the DEGs. Replicates: the bootstrap values (n_bootstrap,).
    """
    for name, arr in (("predicted", predicted), ("real", real_perturbed), ("control", control)):
        if arr.ndim != 2 or arr.shape[1] != control.shape[1] or len(arr) == 0:
            raise DataError(f"{name} cells have shape {arr.shape}; need (n>0, {control.shape[1]})")
    deg = np.asarray(deg_index, dtype=int)
    point = _metrics_from_means(
        predicted.mean(0), real_perturbed.mean(0), control.mean(0), deg, predicted.std(0),
        real_perturbed.std(0),
    )
    rng = np.random.default_rng(seed)
    paired = len(predicted) == len(control)
    reps: dict[str, list[float]] = {k: [] for k in point}
    for _ in range(n_bootstrap):
        ic = rng.integers(0, len(control), len(control))
        ip = ic if paired else rng.integers(0, len(predicted), len(predicted))
        pc = predicted[ip]
        rc = real_perturbed[rng.integers(0, len(real_perturbed), len(real_perturbed))]
        c = control[ic].mean(0)
        for k, v in _metrics_from_means(pc.mean(0), rc.mean(0), c, deg, pc.std(0),
                                        rc.std(0)).items():
            reps[k].append(v)
    out: dict[str, dict] = {}
    for k, v in point.items():
        arr = np.array(reps[k])
        if len(arr):
            # Resampled means carry extra noise that pulls correlation-type metrics down; the
            # band is re-centred on the point estimate (its width is the bootstrap's).
            arr = arr + (v - np.median(arr))
        out[k] = {"value": v, **_band(arr), "replicates": arr}
    return out


def _band(replicates: np.ndarray) -> dict[str, float | str | None]:
    """Return {"ci_low", "ci_high"} of the 2.5-97.5% band of `replicates`, or, when there is
    no band of positive width, None bounds and the reason in "ci_unavailable"."""
    if len(replicates) == 0:
        return {"ci_low": None, "ci_high": None, "ci_unavailable": "no bootstrap draws"}
    lo, hi = (float(b) for b in np.percentile(replicates, [2.5, 97.5]))
    if not hi > lo:  # also catches NaN
        return {"ci_low": None, "ci_high": None, "ci_unavailable": (
            f"all {len(replicates)} bootstrap draws agree ({lo:.4g}); no interval")}
    return {"ci_low": lo, "ci_high": hi}


def summarise(per_type: dict[str, dict[str, dict]]) -> dict[str, dict]:
    """Return {metric: {"value", "ci_low", "ci_high"}}: the mean over cell types.

    The interval of the mean is the percentile band of the replicate-wise mean (replicate b of
    every type averaged), i.e. cell-level bootstrap uncertainty carried into the average.
    """
    if not per_type:
        raise DataError("no cell types to summarise")
    first = next(iter(per_type.values()))
    out: dict[str, dict] = {}
    for k in first:
        values = [per_type[t][k]["value"] for t in per_type]
        reps = [per_type[t][k].get("replicates") for t in per_type]
        mean = float(np.mean(values))
        if all(r is not None and len(r) for r in reps) and len({len(r) for r in reps}) == 1:
            out[k] = {"value": mean, **_band(np.mean(np.stack(reps), axis=0))}
        else:
            out[k] = {"value": mean, "ci_low": None, "ci_high": None,
                      "ci_unavailable": "the cell types have no bootstrap draws of equal number"}
    return out


def strip_replicates(result: dict[str, dict]) -> dict[str, dict]:
    """Return `result` without the bootstrap replicate arrays (JSON-ready)."""
    return {k: {kk: vv for kk, vv in v.items() if kk != "replicates"} for k, v in result.items()}
