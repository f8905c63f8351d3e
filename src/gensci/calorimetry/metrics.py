"""The CaloChallenge evaluation: high-level observables and their separation power against the
truth, the distance between layer-energy correlation matrices, and classifier two-sample AUCs on
low-level (voxel) and high-level features (Krause et al., CaloChallenge 2022 evaluation).

Separation power of two normalised histograms h1, h2 (the same bins):
    S = 0.5 * sum_i (h1_i - h2_i)^2 / (h1_i + h2_i)      (0: identical, 1: disjoint).
Classifier AUC: an MLP (gensci.nn.MLP) fitted by the core Trainer to tell truth (1) from a
generated sample (0) on 60 % of both, stopped on 20 %, scored on the held-out 20 %: 0.5 means the
classifier cannot tell them apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.stats import rankdata
from torch import nn
from torch.nn import functional as F

from gensci.calorimetry.geometry import Geometry
from gensci.errors import ShapeError
from gensci.nn import MLP
from gensci.train import TrainConfig, Trainer


def layer_energies(showers: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Return the energy of each layer, (N, L) MeV, of showers (N, D)."""
    return np.stack([showers[:, sl].sum(1, dtype=np.float64) for sl in geometry.layer_slices()], 1)


def observables(
    energies: np.ndarray, showers: np.ndarray, geometry: Geometry
) -> dict[str, np.ndarray]:
    """Return the high-level observables, each (N,): E_dep/E_inc; per layer log10 of its energy
    (MeV, +1e-3), its sparsity (share of non-zero voxels) and, in layers with angular bins, the
    energy-weighted centre and width in x and y (mm)."""
    if showers.shape[1] != geometry.n_voxels:
        raise ShapeError(f"showers have {showers.shape[1]} voxels; {geometry.name} has "
                         f"{geometry.n_voxels}")
    e_layers = layer_energies(showers, geometry)
    out = {"E_dep/E_inc": e_layers.sum(1) / energies.reshape(-1)}
    for i, (layer, sl) in enumerate(zip(geometry.layers, geometry.layer_slices(), strict=True)):
        block = showers[:, sl].astype(np.float64)
        out[f"log10 E layer {layer.id}"] = np.log10(e_layers[:, i] + 1e-3)
        out[f"sparsity layer {layer.id}"] = (block > 0).mean(1)
        if layer.n_alpha > 1:
            x, y = geometry.voxel_centres(i)
            total = np.maximum(e_layers[:, i], 1e-12)
            for axis, pos in (("x", x), ("y", y)):
                mean = block @ pos / total
                var = block @ (pos**2) / total - mean**2
                out[f"centre {axis} layer {layer.id}"] = mean
                out[f"width {axis} layer {layer.id}"] = np.sqrt(np.maximum(var, 0.0))
    return out


def separation_power(truth: np.ndarray, other: np.ndarray, bins: int = 30) -> float:
    """Return 0.5 sum (h1 - h2)^2 / (h1 + h2) of the two normalised histograms (bins over the
    truth's 0.5-99.5 % range; values outside fall into the edge bins)."""
    lo, hi = np.quantile(truth, [0.005, 0.995])
    if not hi > lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)
    h1 = np.histogram(np.clip(truth, lo, hi), edges)[0] / len(truth)
    h2 = np.histogram(np.clip(other, lo, hi), edges)[0] / len(other)
    s = h1 + h2
    ok = s > 0
    return float(0.5 * ((h1[ok] - h2[ok]) ** 2 / s[ok]).sum())


def correlation_matrix(showers: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Return the Pearson correlation matrix (L, L) of the layer energies (0 where undefined)."""
    e = layer_energies(showers, geometry)
    with np.errstate(invalid="ignore", divide="ignore"):
        c = np.corrcoef(e, rowvar=False)
    return np.nan_to_num(np.atleast_2d(c))


def correlation_distance(truth: np.ndarray, other: np.ndarray, geometry: Geometry) -> float:
    """Return ||C_truth - C_other||_F of the layer-energy correlation matrices."""
    return float(np.linalg.norm(correlation_matrix(truth, geometry)
                                - correlation_matrix(other, geometry)))


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Return the area under the ROC curve (Mann-Whitney U / (n1 n0)) of scores for labels 0/1."""
    labels = labels.astype(bool)
    n1, n0 = labels.sum(), (~labels).sum()
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


class TwoSampleClassifier(nn.Module):
    """An MLP logit f(features): (B, F) -> (B,); trained with binary cross-entropy."""

    def __init__(self, n_features: int, hidden: tuple[int, ...] = (128, 128),
                 dropout: float = 0.2) -> None:
        super().__init__()
        self.config = {"n_features": n_features, "hidden": hidden}
        self.net = MLP(n_features, 1, hidden, dropout=dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)

    def loss(self, batch: tuple[torch.Tensor, ...], step: int = 0) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(self(batch[0]), batch[1])


@dataclass
class ClassifierSettings:
    hidden: tuple[int, ...] = (128, 128)
    steps: int = 3000
    batch_size: int = 256
    lr: float = 1e-3
    val_every: int = 100
    patience: int = 6
    device: str = "cpu"


def classifier_auc(
    truth: np.ndarray, other: np.ndarray, settings: ClassifierSettings | None = None, seed: int = 0
) -> float:
    """Return the held-out AUC of a classifier telling truth (N1, F) from other (N0, F).

    Both samples are cut to the smaller size, split 60/20/20 (train / early stopping / test) by
    `seed`; the features are standardised with the training split's mean and std."""
    s = settings or ClassifierSettings()
    n = min(len(truth), len(other))
    rng = np.random.default_rng(seed)
    x = np.concatenate([truth[rng.permutation(len(truth))[:n]],
                        other[rng.permutation(len(other))[:n]]]).astype(np.float64)
    y = np.concatenate([np.ones(n), np.zeros(n)])
    perm = rng.permutation(2 * n)
    a, b = int(0.6 * 2 * n), int(0.8 * 2 * n)
    tr, va, te = perm[:a], perm[a:b], perm[b:]
    mean, std = x[tr].mean(0), x[tr].std(0)
    std[std < 1e-8] = 1.0
    xt = torch.from_numpy(np.clip((x - mean) / std, -50, 50)).float()
    yt = torch.from_numpy(y).float()
    torch.manual_seed(seed)
    net = TwoSampleClassifier(xt.shape[1], s.hidden)
    cfg = TrainConfig(steps=s.steps, batch_size=s.batch_size, lr=s.lr, seed=seed,
                      val_every=s.val_every, patience=s.patience, progress=False,
                      device=s.device)
    Trainer(net, (xt[tr], yt[tr]), cfg, val_data=(xt[va], yt[va])).fit()
    with torch.no_grad():
        dev = next(net.parameters()).device
        scores = net.eval()(xt[te].to(dev)).cpu().numpy()
    return auc(scores, y[te])


def low_level_features(energies: np.ndarray, showers: np.ndarray) -> np.ndarray:
    """Return the CaloChallenge low-level classifier input: E_v / E_inc per voxel and
    log10 E_inc, (N, D + 1)."""
    e = energies.reshape(-1, 1)
    return np.concatenate([showers / e, np.log10(e)], 1)


def high_level_features(obs: dict[str, np.ndarray], energies: np.ndarray) -> np.ndarray:
    """Return the observables stacked with log10 E_inc, (N, K + 1)."""
    return np.stack([*obs.values(), np.log10(energies.reshape(-1))], 1)


def evaluate(
    truth: tuple[np.ndarray, np.ndarray],
    other: tuple[np.ndarray, np.ndarray],
    geometry: Geometry,
    settings: ClassifierSettings | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Return the CaloChallenge metrics of a sample `other` against `truth`, each given as
    (energies (N,) MeV, showers (N, D) MeV): separation powers, correlation distance, AUCs."""
    (e1, x1), (e0, x0) = truth, other
    o1, o0 = observables(e1, x1, geometry), observables(e0, x0, geometry)
    seps = {k: separation_power(o1[k], o0[k]) for k in o1}
    return {
        "n_truth": int(len(e1)), "n_other": int(len(e0)),
        "separation_power": seps,
        "separation_power_mean": float(np.mean(list(seps.values()))),
        "correlation_distance": correlation_distance(x1, x0, geometry),
        "auc_low_level": classifier_auc(low_level_features(e1, x1), low_level_features(e0, x0),
                                        settings, seed),
        "auc_high_level": classifier_auc(high_level_features(o1, e1),
                                         high_level_features(o0, e0), settings, seed + 1),
    }
