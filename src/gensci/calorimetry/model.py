"""The energy-conditioned shower generators, built from the core and fitted by its Trainer.

All work in one preprocessed space (ShowerSpace): per voxel u = (log((E_v + theta) / E_inc) - m) / s,
theta the noise threshold, m and s the training mean and std of that voxel, and the condition
c = normalised log E_inc in [-1, 1]. The offset theta puts an empty voxel just below the
smallest deposit (a gap of log 2), whatever E_inc: a fixed offset eps would leave a gap of many
units between "empty" and "hit" that inflates s, and exp() would turn small errors in u into
large errors in energy. A generated u is clipped to the voxel's training range, mapped back,
E_v = E_inc exp(s u + m) - theta, and voxels below theta are set to 0.

- LayerAR ("ar"): p(x | E) = prod_l p(x_l | E, x_<l); each factor a hurdle density of layer l
  given [c, u_<l] (exact likelihood), sampled layer after layer: L sequential passes.
- FactorisedParallel ("parallel"): every voxel conditionally independent given E, a hurdle
  density P(u_v empty | E) = sigmoid(l_v(E)), else u_v ~ N(mu_v(E), sigma_v(E)); one pass.
- CorrelatedParallel ("correlated"): the layer energies drawn jointly from a full-covariance
  conditional Gaussian, then every voxel in parallel given them, each layer rescaled to its
  energy (the CaloFlow split into layer energies and shapes); two passes, none per layer.
- DiffusionParallel ("diffusion"): one conditional score model (gensci.models.DiffusionModel) of
  all voxels, sampled jointly with few DDIM steps.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from gensci import checkpoint
from gensci.errors import CheckpointError, ConfigError, ShapeError
from gensci.models import DiffusionConfig, DiffusionModel
from gensci.nn import MLP
from gensci.train import TrainConfig, Trainer

MODEL_FILE = "model.safetensors"


@dataclass
class CaloConfig:
    geometry: str = "ds1-photon"
    layer_sizes: tuple[int, ...] = (8, 160, 190, 5, 5)
    log_e_min: float = math.log(1_000.0)  # the energy range of the training data (MeV)
    log_e_max: float = math.log(100_000.0)
    threshold: float = 1.5  # MeV: theta, the offset of u and the zero-suppression of samples
    hidden: tuple[int, ...] = (256, 256, 256)
    time_dim: int = 32
    prediction: str = "v"  # diffusion: what the network predicts (gensci.models.diffusion)
    sampler_steps: int = 10  # diffusion: DDIM steps
    std_floor: float = 0.05

    def __post_init__(self) -> None:
        self.layer_sizes = tuple(int(n) for n in self.layer_sizes)
        self.hidden = tuple(int(h) for h in self.hidden)
        if not self.layer_sizes or min(self.layer_sizes) < 1:
            raise ConfigError(f"layer_sizes must be positive, got {self.layer_sizes}")
        if not self.log_e_max >= self.log_e_min:
            raise ConfigError(f"log_e_max {self.log_e_max} < log_e_min {self.log_e_min}")
        if self.sampler_steps < 1:
            raise ConfigError(f"sampler_steps must be >= 1, got {self.sampler_steps}")

    @property
    def data_dim(self) -> int:
        return sum(self.layer_sizes)


class ShowerSpace(nn.Module):
    """The preprocessing: showers (N, D) MeV and energies (N,) MeV <-> (u (N, D), c (N, 1))."""

    mean: torch.Tensor  # (D,) buffers: per-voxel mean and std of log((E_v + theta) / E_inc)
    std: torch.Tensor
    lo: torch.Tensor  # (D,) the training range of u
    hi: torch.Tensor

    def __init__(self, config: CaloConfig) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("mean", torch.zeros(config.data_dim))
        self.register_buffer("std", torch.ones(config.data_dim))
        self.register_buffer("lo", torch.full((config.data_dim,), -10.0))
        self.register_buffer("hi", torch.full((config.data_dim,), 10.0))

    @property
    def theta(self) -> float:
        return max(self.config.threshold, 1e-6)

    def condition(self, energies: torch.Tensor) -> torch.Tensor:
        """Return c = 2 (ln E - ln E_min) / (ln E_max - ln E_min) - 1, (N, 1), for energies (N,)."""
        c = self.config
        span = max(c.log_e_max - c.log_e_min, 1e-6)
        return (2 * (energies.double().log() - c.log_e_min) / span - 1).float().reshape(-1, 1)

    def log_energy(self, c: torch.Tensor) -> torch.Tensor:
        """Return ln E_inc (B, 1) of conditions c (B, 1): the inverse of `condition`."""
        cfg = self.config
        return (c + 1) / 2 * (cfg.log_e_max - cfg.log_e_min) + cfg.log_e_min

    def empty(self, c: torch.Tensor) -> torch.Tensor:
        """Return u of an empty voxel, (B, D), at conditions c (B, 1)."""
        return (math.log(self.theta) - self.log_energy(c) - self.mean) / self.std

    def fit(self, log_x: torch.Tensor) -> None:
        """Set the per-voxel mean, std and range from log((E_v + theta) / E_inc) (N, D) of the
        training set."""
        self.mean.copy_(log_x.mean(0))
        self.std.copy_(log_x.std(0).clamp_min(self.config.std_floor))
        u_lo, u_hi = ((log_x.amin(0) - self.mean) / self.std, (log_x.amax(0) - self.mean) / self.std)
        self.lo.copy_(u_lo)
        self.hi.copy_(u_hi)

    def log_fraction_(self, energies: np.ndarray, showers: np.ndarray) -> np.ndarray:
        """Turn showers (N, D) float32 MeV into log((E_v + theta) / E_inc) in place; return it."""
        showers += np.float32(self.theta)
        showers /= energies.reshape(-1, 1).astype(np.float32)
        np.log(showers, out=showers)
        return showers

    def standardise_(self, log_x: np.ndarray) -> np.ndarray:
        """Turn log fractions (N, D) into u in place; return it."""
        log_x -= self.mean.cpu().numpy()
        log_x /= self.std.cpu().numpy()
        return log_x

    def invert(self, u: torch.Tensor, energies: torch.Tensor) -> torch.Tensor:
        """Return showers (N, D) in MeV from u (N, D) and energies (N,): zero below threshold."""
        u = torch.maximum(torch.minimum(u, self.hi), self.lo)
        e = torch.exp(u * self.std + self.mean) * energies.reshape(-1, 1).to(u) - self.theta
        return torch.where(e < self.config.threshold, torch.zeros_like(e), e)


class HurdleHead(nn.Module):
    """A zero-or-Gaussian (hurdle) density of n voxels given a condition h: (B, in_dim).

    P(u_v = empty | h) = sigmoid(l_v(h)), else u_v ~ N(mu_v(h), sigma_v(h)); voxels are
    conditionally independent given h."""

    def __init__(self, in_dim: int, n: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        self.net = MLP(in_dim, 3 * n, hidden)

    def params(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return (empty logits, means, log stds), each (B, n)."""
        logit, mu, log_s = self.net(h).chunk(3, dim=-1)
        return logit, mu, log_s.clamp(-7.0, 3.0)

    def nll(self, u: torch.Tensor, empty_u: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """Return -log p(u | h) per example and voxel, (B, n): the empty point mass counted as a
        probability, a hit as a Gaussian density."""
        logit, mu, log_s = self.params(h)
        empty = (u <= empty_u + 1e-3).float()
        nll_gauss = 0.5 * ((u - mu) / log_s.exp()) ** 2 + log_s + 0.5 * math.log(2 * math.pi)
        return F.binary_cross_entropy_with_logits(logit, empty, reduction="none") + (
            1 - empty) * nll_gauss

    def sample(self, empty_u: torch.Tensor, h: torch.Tensor,
               generator: torch.Generator | None) -> torch.Tensor:
        """Return u (B, n): each voxel empty with its probability, else Gaussian."""
        logit, mu, log_s = self.params(h)
        uni = torch.rand(mu.shape, generator=generator).to(mu)
        z = torch.randn(mu.shape, generator=generator).to(mu)
        return torch.where(uni < torch.sigmoid(logit), empty_u, mu + log_s.exp() * z)


class LayerAR(nn.Module):
    """p(x | E) = prod_l p(x_l | E, x_<l), each layer a hurdle density given [c, u_<l]:
    exact likelihood, sampled layer after layer (L sequential passes)."""

    def __init__(self, config: CaloConfig) -> None:
        super().__init__()
        self.config = config
        self.space = ShowerSpace(config)
        self.starts = [int(o) for o in np.cumsum((0,) + config.layer_sizes)[:-1]]
        self.heads = nn.ModuleList([HurdleHead(1 + st, n, config.hidden)
                                    for n, st in zip(config.layer_sizes, self.starts, strict=True)])

    def _heads(self) -> list[HurdleHead]:
        return [h for h in self.heads if isinstance(h, HurdleHead)]

    def loss(self, batch: tuple[torch.Tensor, ...], step: int = 0) -> torch.Tensor:
        """Return -log p(u | c) per voxel, averaged over the batch."""
        u, c = batch[0], batch[1]
        empty = self.space.empty(c)
        total = u.new_zeros(())
        for head, st, n in zip(self._heads(), self.starts, self.config.layer_sizes, strict=True):
            h = torch.cat([c, u[:, :st]], 1)
            total = total + head.nll(u[:, st:st + n], empty[:, st:st + n], h).sum(1).mean()
        return total / self.config.data_dim

    @torch.no_grad()
    def sample_space(self, c: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Return u (B, D) drawn layer after layer for conditions c (B, 1)."""
        empty = self.space.empty(c)
        u = c.new_zeros(c.shape[0], 0)
        for head, st, n in zip(self._heads(), self.starts, self.config.layer_sizes, strict=True):
            u = torch.cat([u, head.sample(empty[:, st:st + n], torch.cat([c, u], 1), generator)], 1)
        return u


class FactorisedParallel(nn.Module):
    """p(x | E) = prod_v p(x_v | E): one hurdle density per voxel given c, one pass."""

    def __init__(self, config: CaloConfig) -> None:
        super().__init__()
        self.config = config
        self.space = ShowerSpace(config)
        self.head = HurdleHead(1, config.data_dim, config.hidden)

    def loss(self, batch: tuple[torch.Tensor, ...], step: int = 0) -> torch.Tensor:
        """Return -log p(u | c) per voxel, averaged over the batch."""
        u, c = batch[0], batch[1]
        return self.head.nll(u, self.space.empty(c), c).mean()

    @torch.no_grad()
    def sample_space(self, c: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Return u (B, D): every voxel drawn on its own given c (B, 1)."""
        return self.head.sample(self.space.empty(c), c, generator)


class CorrelatedParallel(nn.Module):
    """Two one-pass stages (the CaloFlow split of layer energies and shower shapes):
    (1) the log layer energies y = log((E_l + theta) / E_inc), (B, L), from a conditional
        Gaussian with full covariance, y ~ N(m(c), L(c) L(c)^T), L lower triangular;
    (2) every voxel from a hurdle density given [c, y] (conditionally independent), then each
        layer rescaled to sum to its stage-1 energy. The correlations between layers live in
        L(c) and reach every voxel through the rescaling; nothing is sequential over layers."""

    def __init__(self, config: CaloConfig) -> None:
        super().__init__()
        self.config = config
        self.space = ShowerSpace(config)
        n_layers = len(config.layer_sizes)
        self.n_layers = n_layers
        self.energy_net = MLP(1, n_layers + n_layers * (n_layers + 1) // 2, config.hidden)
        self.head = HurdleHead(1 + n_layers, config.data_dim, config.hidden)
        self.tril: torch.Tensor
        self.register_buffer("tril", torch.tril_indices(n_layers, n_layers), persistent=False)
        self.starts = [int(o) for o in np.cumsum((0,) + config.layer_sizes)[:-1]]

    def _cholesky(self, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (means (B, L), lower Cholesky factors (B, L, L), positive diagonal)."""
        out = self.energy_net(c)
        n = self.n_layers
        mean, flat = out[:, :n], out[:, n:]
        chol = c.new_zeros(c.shape[0], n, n)
        chol[:, self.tril[0], self.tril[1]] = flat
        diag = torch.diagonal(chol, dim1=1, dim2=2)
        chol = chol - torch.diag_embed(diag) + torch.diag_embed(
            F.softplus(diag) + 1e-3)
        return mean, chol

    def layer_log_energies(self, u: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Return y = log((E_l + theta) / E_inc), (B, L), of showers given in u (B, D)."""
        log_e = self.space.log_energy(c)
        e = self.space.invert(u, log_e.exp().reshape(-1))
        sums = torch.stack([e[:, st:st + n].sum(1) for st, n in
                            zip(self.starts, self.config.layer_sizes, strict=True)], 1)
        return torch.log(sums + self.space.theta) - log_e

    def loss(self, batch: tuple[torch.Tensor, ...], step: int = 0) -> torch.Tensor:
        """Return (-log p(y | c) - log p(u | c, y)) per voxel: both stages, exact likelihoods."""
        u, c = batch[0], batch[1]
        y = self.layer_log_energies(u, c)
        mean, chol = self._cholesky(c)
        nll_y = -torch.distributions.MultivariateNormal(mean, scale_tril=chol).log_prob(y)
        nll_u = self.head.nll(u, self.space.empty(c), torch.cat([c, y], 1)).sum(1)
        return (nll_y + nll_u).mean() / (self.config.data_dim + self.n_layers)

    @torch.no_grad()
    def sample_space(self, c: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Return u (B, D) for conditions c (B, 1): layer energies, then all voxels at once."""
        mean, chol = self._cholesky(c)
        z = torch.randn(mean.shape, generator=generator).to(mean)
        y = mean + (chol @ z.unsqueeze(-1)).squeeze(-1)
        u = self.head.sample(self.space.empty(c), torch.cat([c, y], 1), generator)
        # rescale each layer to its stage-1 energy, in energy space, and map back to u
        e_inc = self.space.log_energy(c).exp()
        e = self.space.invert(u, e_inc.reshape(-1))
        target = (y.exp() * e_inc - self.space.theta).clamp_min(0.0)
        for i, (st, n) in enumerate(zip(self.starts, self.config.layer_sizes, strict=True)):
            block = e[:, st:st + n]
            total = block.sum(1, keepdim=True)
            scale = torch.where(total > 0, target[:, i:i + 1] / total.clamp_min(1e-12),
                                torch.zeros_like(total))
            e[:, st:st + n] = block * scale
        log_x = torch.log((e + self.space.theta) / e_inc)
        return (log_x - self.space.mean) / self.space.std


class DiffusionParallel(nn.Module):
    """One conditional score model (gensci.models.DiffusionModel) of all D voxels, sampled jointly
    with few DDIM steps: a one-shot-in-voxels, few-step alternative for the correlated model."""

    def __init__(self, config: CaloConfig) -> None:
        super().__init__()
        self.config = config
        self.space = ShowerSpace(config)
        self.net = DiffusionModel(DiffusionConfig(
            data_shape=(config.data_dim,), cond_dim=1, hidden=config.hidden,
            time_dim=config.time_dim, prediction=config.prediction))

    def loss(self, batch: tuple[torch.Tensor, ...], step: int = 0) -> torch.Tensor:
        """Return the denoising score matching loss per voxel."""
        return self.net.loss((batch[0], batch[1]), step)

    @torch.no_grad()
    def sample_space(self, c: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Return u (B, D) for conditions c (B, 1), all voxels at once."""
        return self.net.sample(c.shape[0], "ddim", cond=c, generator=generator,
                               steps=self.config.sampler_steps)


CaloModel = LayerAR | FactorisedParallel | CorrelatedParallel | DiffusionParallel
MODELS: dict[str, type[nn.Module]] = {
    "ar": LayerAR, "parallel": FactorisedParallel, "correlated": CorrelatedParallel,
    "diffusion": DiffusionParallel,
}
for _cls in MODELS.values():
    checkpoint.register_model(_cls, CaloConfig)


def kind_of(model: nn.Module) -> str:
    """Return the CLI name (ar | parallel | correlated) of a model."""
    return next(k for k, v in MODELS.items() if isinstance(model, v))


def make_model(kind: str, config: CaloConfig) -> CaloModel:
    """Return a fresh model of `kind`."""
    if kind not in MODELS:
        raise ConfigError(f"unknown model {kind!r}; choose one of {tuple(MODELS)}")
    return MODELS[kind](config)  # type: ignore[return-value]


def prepare(
    model: CaloModel, energies: np.ndarray, showers: np.ndarray, fit: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (u (N, D), c (N, 1)) for energies (N,) and showers (N, D) float32 MeV.

    The showers array is turned into u in place (no second copy); with `fit`, the space's mean
    and std are set from it first (the training split only)."""
    log_x = model.space.log_fraction_(energies, showers)
    if fit:
        model.space.fit(torch.from_numpy(log_x))
    u = torch.from_numpy(model.space.standardise_(log_x))
    c = model.space.condition(torch.from_numpy(np.asarray(energies)))
    return u, c


def train_model(
    kind: str,
    config: CaloConfig,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    train_config: TrainConfig,
) -> tuple[CaloModel, dict[str, Any]]:
    """Return (a model of `kind` fitted by the core Trainer, its record).

    train, val: (energies (N,), showers (N, D) float32 MeV); the showers arrays are consumed
    (preprocessed in place)."""
    if train[1].shape[1] != config.data_dim:
        raise ShapeError(f"showers have {train[1].shape[1]} voxels, the model expects "
                         f"{config.data_dim} ({config.geometry})")
    torch.manual_seed(train_config.seed)
    model = make_model(kind, config)
    u, c = prepare(model, *train, fit=True)
    u_val, c_val = prepare(model, *val)
    t0 = time.perf_counter()
    history = Trainer(model, (u, c), train_config, val_data=(u_val, c_val)).fit()
    vals = [r["val_loss"] for r in history if "val_loss" in r]
    record = {
        "model": kind, "n_train": int(u.shape[0]), "n_val": int(u_val.shape[0]),
        "steps": train_config.steps, "train_seconds": time.perf_counter() - t0,
        "final_val_loss": vals[-1] if vals else None,
        "parameters": sum(p.numel() for p in model.parameters()),
        "config": asdict(config),
        "train_config": {k: v for k, v in asdict(train_config).items() if k != "out_dir"},
    }
    return model.eval(), record


@torch.no_grad()
def generate(
    model: CaloModel,
    energies: np.ndarray,
    seed: int | np.random.SeedSequence = 0,
    batch_size: int = 2000,
    progress: bool = False,
) -> np.ndarray:
    """Return showers (N, D) float32 in MeV for incident energies (N,) MeV."""
    if isinstance(seed, np.random.SeedSequence):
        seed = int(seed.generate_state(1)[0])
    gen = torch.Generator().manual_seed(int(seed))
    device = next(model.parameters()).device
    e = torch.as_tensor(np.asarray(energies, dtype=np.float64).reshape(-1))
    out = np.empty((len(e), model.config.data_dim), dtype=np.float32)
    for start in tqdm(range(0, len(e), batch_size), desc="generate", disable=not progress,
                      leave=False):
        eb = e[start:start + batch_size]
        c = model.space.condition(eb).to(device)
        u = model.sample_space(c, generator=gen)
        out[start:start + len(eb)] = model.space.invert(u, eb.to(device)).cpu().numpy()
    return out


def throughput(model: CaloModel, n: int = 2000, batch_size: int = 2000, seed: int = 0) -> float:
    """Return generated showers per second at energies log-uniform over the model's range."""
    rng = np.random.default_rng(seed)
    energies = np.exp(rng.uniform(model.config.log_e_min, model.config.log_e_max, n))
    generate(model, energies[: min(n, 64)], seed=seed, batch_size=batch_size)  # warm-up
    t0 = time.perf_counter()
    generate(model, energies, seed=seed, batch_size=batch_size)
    return n / (time.perf_counter() - t0)


def save_model(model: CaloModel, path: str | Path, metadata: dict[str, Any],
               overwrite: bool = False) -> Path:
    """Write the model (weights, preprocessing, config, provenance) to a .safetensors file."""
    return checkpoint.save(model, path, overwrite=overwrite, metadata=metadata)


def load_model(path: str | Path, device: str | None = None) -> CaloModel:
    """Return the generator stored at `path` (a .safetensors file or a folder holding one)."""
    p = Path(path)
    if p.is_dir():
        p = p / MODEL_FILE
    model = checkpoint.load(p, device=device)
    if not isinstance(model, tuple(MODELS.values())):
        raise CheckpointError(f"{p} holds a {type(model).__name__}, not a calorimetry generator")
    return model  # type: ignore[return-value]
