"""Measures of disentangled control and of stain normalisation.

Networks trained here on the known factors (no pretrained network can be downloaded): a segmenter of
the shape mask (content), a style probe of (texture, hue, contrast) whose penultimate features serve
as the feature space of the perceptual path length. DCI (Eastwood & Williams 2018) and MIG (Chen et
al. 2018) follow disentanglement_lib: gradient-boosted trees' importances on discretised factors,
codes discretised into 20 histogram bins for the mutual information. Stain normalisation: SSIM of the
haematoxylin map of the output against the source's, and the distance of optical-density statistics.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from gensci.style.data import TEXTURES, deconvolve
from gensci.train import TrainConfig, Trainer


class Segmenter(nn.Module):
    """Mask logits of an image: (B, 3, S, S) -> (B, 1, S, S); trained with binary cross-entropy."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=2, dilation=2), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=4, dilation=4), nn.ReLU(),
            nn.Conv2d(width, 1, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def loss(self, batch: tuple[torch.Tensor, ...], step: int = 0) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(self(batch[0]), batch[1])


class StyleProbe(nn.Module):
    """Predicts (texture class, hue as (cos, sin), contrast) from an image (B, 3, S, S)."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(2 * width, 2 * width, 4, stride=2, padding=1), nn.ReLU())
        self.head = nn.Linear(4 * width, len(TEXTURES) + 3)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Return channel means and stds of the last layer: (B, 4 width)."""
        h = self.body(x)
        return torch.cat([h.mean(dim=(2, 3)), h.std(dim=(2, 3))], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return (B, 8): texture logits (5), cos 2 pi hue, sin 2 pi hue, contrast."""
        return self.head(self.features(x))

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Return the style vector (B, 8): texture probabilities, cos, sin of hue, contrast."""
        out = self(x)
        k = len(TEXTURES)
        return torch.cat([out[:, :k].softmax(1), out[:, k:]], dim=1)

    def loss(self, batch: tuple[torch.Tensor, ...], step: int = 0) -> torch.Tensor:
        x, style = batch[0], batch[1]  # style (B, 3): texture, hue, contrast
        out = self(x)
        k = len(TEXTURES)
        hue = 2 * np.pi * style[:, 1]
        target = torch.stack([hue.cos(), hue.sin(), style[:, 2]], dim=1)
        return F.cross_entropy(out[:, :k], style[:, 0].long()) + (out[:, k:] - target).pow(2).sum(1).mean()


def train_judges(images: np.ndarray, masks: np.ndarray, style: np.ndarray, steps: int, seed: int,
                 device: str = "cpu", progress: bool = False) -> tuple[Segmenter, StyleProbe]:
    """Train the segmenter on (images, masks) and the style probe on (images, style (N, 3))."""
    x = torch.from_numpy(images)
    tc = TrainConfig(steps=steps, batch_size=64, lr=3e-3, seed=seed, device=device,
                     progress=progress, log_every=max(steps, 1), lr_schedule="cosine")
    seg = Segmenter()
    # the segmenter must judge generated images too: it also sees blurred, desaturated,
    # lower-contrast copies (what a blurry decoder makes), with the same masks
    xa = degrade(x, seed)
    Trainer(seg, (torch.cat([x, xa]), torch.from_numpy(masks).repeat(2, 1, 1, 1)), tc).fit()
    probe = StyleProbe()
    Trainer(probe, (x, torch.from_numpy(style).float()), tc).fit()
    return seg.eval(), probe.eval()


def degrade(x: torch.Tensor, seed: int) -> torch.Tensor:
    """Return copies of images (N, 3, S, S) blurred (3 x 3 box), desaturated and shrunk in
    contrast by random amounts."""
    g = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    blur = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    a = torch.rand(n, 1, 1, 1, generator=g)
    y = a * blur + (1 - a) * x
    gray = y.mean(1, keepdim=True)
    sat = torch.rand(n, 1, 1, 1, generator=g)
    y = gray + sat * (y - gray)
    mean = y.mean(dim=(1, 2, 3), keepdim=True)
    con = 0.5 + 0.5 * torch.rand(n, 1, 1, 1, generator=g)
    return (mean + con * (y - mean)).clamp(0, 1)


def iou(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Return the IoU per image of binary masks (B, 1, S, S): (B,)."""
    p, t = pred.bool().flatten(1), truth.bool().flatten(1)
    inter = (p & t).sum(1).float()
    union = (p | t).sum(1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(inter))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Return Spearman's rank correlation of two 1-D arrays (nan if either is constant)."""
    from scipy.stats import spearmanr

    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def chord_progress(path: np.ndarray) -> np.ndarray:
    """Return each point's progress along the chord from the first to the last: (T, D) -> (T,)."""
    chord = path[-1] - path[0]
    return (path - path[0]) @ chord / max(float(chord @ chord), 1e-12)


# -- disentanglement ------------------------------------------------------------------------------
def discretize(values: np.ndarray, bins: int = 20) -> np.ndarray:
    """Return histogram bin indices per column (as disentanglement_lib): (N, K) -> (N, K) ints."""
    out = np.zeros(values.shape, dtype=np.int64)
    for j in range(values.shape[1]):
        col = values[:, j]
        edges = np.histogram(col, bins)[1]
        out[:, j] = np.digitize(col, edges[:-1])
    return out


def factor_labels(factors: np.ndarray, names: tuple[str, ...], bins: int = 10) -> np.ndarray:
    """Return integer labels of each factor (categorical kept, continuous cut into bins)."""
    cols = []
    for j, name in enumerate(names):
        col = factors[:, j]
        if name in ("shape", "texture"):
            cols.append(col.astype(np.int64))
        else:
            cols.append(discretize(col[:, None], bins)[:, 0])
    return np.stack(cols, axis=1)


def _entropy(p: np.ndarray, base: int) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum() / np.log(base)) if base > 1 else 0.0


@dataclass
class DCI:
    disentanglement: float
    completeness: float
    informativeness: float  # mean held-out accuracy of the factor classifiers
    importance: np.ndarray  # (codes, factors)


def dci(codes_train: np.ndarray, labels_train: np.ndarray, codes_test: np.ndarray,
        labels_test: np.ndarray, seed: int = 0, n_estimators: int = 50) -> DCI:
    """Return DCI from gradient-boosted trees' importances (Eastwood & Williams 2018)."""
    from sklearn.ensemble import GradientBoostingClassifier

    n_codes, n_factors = codes_train.shape[1], labels_train.shape[1]
    r = np.zeros((n_codes, n_factors))
    acc = []
    for j in range(n_factors):
        clf = GradientBoostingClassifier(n_estimators=n_estimators, random_state=seed)
        clf.fit(codes_train, labels_train[:, j])
        r[:, j] = np.abs(clf.feature_importances_)
        acc.append(float(np.mean(clf.predict(codes_test) == labels_test[:, j])))
    total = r.sum()
    if total <= 0:
        return DCI(0.0, 0.0, float(np.mean(acc)), r)
    d_i = np.array([1 - _entropy(row / max(row.sum(), 1e-12), n_factors) for row in r])
    rho = r.sum(1) / total
    c_j = np.array([1 - _entropy(col / max(col.sum(), 1e-12), n_codes) for col in r.T])
    rho_j = r.sum(0) / total
    return DCI(float((d_i * rho).sum()), float((c_j * rho_j).sum()), float(np.mean(acc)), r)


def mig(codes: np.ndarray, labels: np.ndarray, bins: int = 20) -> float:
    """Return the mutual information gap: mean over factors of (I_1 - I_2) / H(factor)."""
    from sklearn.metrics import mutual_info_score

    dc = discretize(codes, bins)
    gaps = []
    for j in range(labels.shape[1]):
        mi = np.sort([mutual_info_score(labels[:, j], dc[:, i]) for i in range(dc.shape[1])])
        h = mutual_info_score(labels[:, j], labels[:, j])
        gaps.append((mi[-1] - (mi[-2] if len(mi) > 1 else 0.0)) / max(h, 1e-12))
    return float(np.mean(gaps))


@torch.no_grad()
def perceptual_path_length(model, probe: StyleProbe, content: torch.Tensor,  # type: ignore[no-untyped-def]
                           seed: int, eps: float = 1e-2) -> tuple[float, float]:
    """Return (PPL, normalised PPL) in w (Karras et al. 2019).

    PPL = E ||phi(G(lerp(w1, w2, t))) - phi(G(lerp(w1, w2, t + eps)))||^2 / eps^2, phi the probe's
    features, the 1 % tails dropped as in the paper. PPL grows with how far the images move at
    all; the normalised PPL divides each path's term by its end-to-end squared distance
    ||phi(G(w1)) - phi(G(w2))||^2, so a path that moves at an even pace scores 1 whatever its length.
    content: (B, C, S, S), one path per content; noise fixed along each path."""
    g = torch.Generator().manual_seed(seed)
    n = content.shape[0]
    z1 = torch.randn(n, model.config.latent_dim, generator=g)
    z2 = torch.randn(n, model.config.latent_dim, generator=g)
    t = torch.rand(n, 1, generator=g)
    noise = model.noise_inputs(n, g) if model.config.noise else None
    w1, w2 = model.mapping(z1), model.mapping(z2)
    wa = w1 + t * (w2 - w1)
    wb = w1 + (t + eps) * (w2 - w1)
    fa = probe.features(model.synthesize(wa, content, noise))
    fb = probe.features(model.synthesize(wb, content, noise))
    d = ((fa - fb).pow(2).sum(1) / eps**2).numpy()
    ends = (probe.features(model.synthesize(w1, content, noise))
            - probe.features(model.synthesize(w2, content, noise))).pow(2).sum(1).numpy()
    r = d / np.maximum(ends, 1e-12)
    lo, hi = np.percentile(d, [1, 99])
    rlo, rhi = np.percentile(r, [1, 99])
    return float(d[(d >= lo) & (d <= hi)].mean()), float(r[(r >= rlo) & (r <= rhi)].mean())


# -- stain normalisation ---------------------------------------------------------------------------
def od_stats(rgb: np.ndarray) -> np.ndarray:
    """Return the mean and std of the optical density per RGB channel: (H, W, 3) -> (6,)."""
    od = -np.log10(np.clip(rgb, 1e-3, 1.0)).reshape(-1, 3)
    return np.concatenate([od.mean(0), od.std(0)])


def structure_ssim(output: np.ndarray, source_h: np.ndarray, stains: np.ndarray, gain_h: float
                   ) -> float:
    """Return SSIM of the output's haematoxylin map (deconvolved with the target stains, divided by
    the target's H gain) against the source's H concentration map (H, W)."""
    from skimage.metrics import structural_similarity

    h_out = deconvolve(output, stains)[..., 0] / gain_h
    rng = float(source_h.max() - source_h.min()) or 1.0
    return float(structural_similarity(source_h, h_out, data_range=rng))


def stain_distance(output: np.ndarray, target: np.ndarray) -> float:
    """Return the Euclidean distance of optical-density statistics of two RGB images."""
    return float(np.linalg.norm(od_stats(output) - od_stats(target)))

