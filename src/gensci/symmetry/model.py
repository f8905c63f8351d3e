"""Training and loading the generators of the study: the core EquivariantVAE, C4 or plain, fitted
by the core Trainer; a small classifier whose features give a Frechet distance."""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from gensci import checkpoint
from gensci.errors import CheckpointError, ShapeError
from gensci.models.equivariant import EquivariantVAE, EquivariantVAEConfig
from gensci.train import TrainConfig, Trainer

MODEL_FILE = "model.safetensors"


def train_generator(
    train: torch.Tensor,
    val: torch.Tensor,
    config: EquivariantVAEConfig,
    train_config: TrainConfig,
) -> tuple[EquivariantVAE, dict[str, Any]]:
    """Return (the VAE fitted to train: (N, 1, H, W) by the core Trainer, its record).

    Validation (val: (M, 1, H, W)) picks the kept weights when train_config.patience is set.
    """
    if tuple(train.shape[1:]) != (1, config.image_size, config.image_size):
        raise ShapeError(
            f"training images have shape {tuple(train.shape[1:])}, the model expects "
            f"(1, {config.image_size}, {config.image_size})"
        )
    torch.manual_seed(train_config.seed)
    model = EquivariantVAE(config)
    t0 = time.perf_counter()
    history = Trainer(model, (train,), train_config, val_data=(val,)).fit()
    vals = [r["val_loss"] for r in history if "val_loss" in r]
    record = {
        "n_train": int(train.shape[0]),
        "steps": train_config.steps,
        "seconds": time.perf_counter() - t0,
        "best_val_loss_per_pixel": min(vals) if vals else None,
        "train_config": {k: v for k, v in asdict(train_config).items() if k != "out_dir"},
    }
    return model.eval(), record


def save_generator(
    model: EquivariantVAE, path: str | Path, metadata: dict[str, Any], overwrite: bool = False
) -> Path:
    """Write the model (weights + config + metadata) to a .safetensors file."""
    return checkpoint.save(model, path, overwrite=overwrite, metadata=metadata)


def load_generator(path: str | Path, device: str | None = None) -> EquivariantVAE:
    """Return the generator stored at `path` (a .safetensors file or a folder holding one)."""
    p = Path(path)
    if p.is_dir():
        p = p / MODEL_FILE
    model = checkpoint.load(p, device=device)
    if not isinstance(model, EquivariantVAE):
        raise CheckpointError(f"{p} holds a {type(model).__name__}, not an EquivariantVAE")
    return model


@torch.no_grad()
def heldout_elbo(
    model: EquivariantVAE, x: torch.Tensor, n_samples: int = 4, seed: int = 0
) -> float:
    """Return the mean ELBO of held-out images x: (N, 1, H, W) in nats per image."""
    gen = torch.Generator().manual_seed(seed)
    out = [model.elbo(x[i : i + 256], n_samples=n_samples, generator=gen)
           for i in range(0, x.shape[0], 256)]
    return float(torch.cat(out).mean())


# -- the feature network of the sample-quality distance -------------------------------------------
class FeatureNet(nn.Module):
    """A small CNN classifier x: (B, 1, H, W) -> logits (B, classes); its pooled features
    (B, width) are the embedding of the Frechet distance."""

    def __init__(self, classes: int = 10, width: int = 32) -> None:
        super().__init__()
        self.config = {"classes": classes, "width": width}
        self.body = nn.Sequential(
            nn.Conv2d(1, width // 2, 3, padding=1), nn.SiLU(), nn.AvgPool2d(2),
            nn.Conv2d(width // 2, width, 3, padding=1), nn.SiLU(), nn.AvgPool2d(2),
            nn.Conv2d(width, width, 3, padding=1), nn.SiLU(),
        )
        self.head = nn.Linear(width, classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).mean((-2, -1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def loss(self, batch: tuple[torch.Tensor, ...], step: int = 0) -> torch.Tensor:
        return F.cross_entropy(self(batch[0]), batch[1])


def train_feature_net(
    x: torch.Tensor, labels: torch.Tensor, steps: int = 1500, seed: int = 0
) -> FeatureNet:
    """Return a FeatureNet trained by the core Trainer on images x: (N, 1, H, W) and labels (N,)."""
    torch.manual_seed(seed)
    net = FeatureNet(int(labels.max()) + 1)
    Trainer(net, (x, labels), TrainConfig(steps=steps, batch_size=64, lr=2e-3, seed=seed,
                                          progress=False)).fit()
    return net.eval()


@torch.no_grad()
def accuracy(net: FeatureNet, x: torch.Tensor, labels: torch.Tensor) -> float:
    """Return the share of x: (N, 1, H, W) that net classifies as labels (N,)."""
    return float((net(x).argmax(1) == labels).float().mean())


@torch.no_grad()
def frechet_distance(net: FeatureNet, a: torch.Tensor, b: torch.Tensor) -> float:
    """Return the Frechet distance between Gaussians fitted to net's features of a and b:
    ||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)) (Heusel et al. 2017)."""
    from scipy.linalg import sqrtm

    fa = net.features(a).double().numpy()
    fb = net.features(b).double().numpy()
    mu_a, mu_b = fa.mean(0), fb.mean(0)
    sa, sb = np.cov(fa, rowvar=False), np.cov(fb, rowvar=False)
    root = sqrtm(sa @ sb)
    if np.iscomplexobj(root):
        root = root.real
    value = float(((mu_a - mu_b) ** 2).sum() + np.trace(sa + sb - 2 * root))
    return max(value, 0.0) if math.isfinite(value) else math.inf
