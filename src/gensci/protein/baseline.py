"""Baselines every VAE figure is set beside.

Site-independent model: a profile of per-column letter frequencies; it knows each column's
composition and nothing of their coupling. Potts model: fields and pair couplings fitted by
pseudo-likelihood (plmDCA), the standard pairwise model of a family.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from gensci.errors import ConfigError, DataError
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


@dataclass
class PottsConfig:
    """Settings of the pseudo-likelihood Potts model (plmDCA's model, trained by the Trainer)."""

    length: int = 1
    n_letters: int = N_LETTERS
    reg: float = 1e-3  # L2 on fields and couplings, per sequence (as plmDCA's lambda)
    steps: int = 2000
    batch_size: int = 512
    lr: float = 0.02
    seed: int = 0

    def __post_init__(self) -> None:
        if self.length < 1 or self.n_letters < 2:
            raise ConfigError(
                f"PottsConfig needs length >= 1 and n_letters >= 2, got {self.length}, "
                f"{self.n_letters}"
            )
        if not (math.isfinite(self.reg) and self.reg >= 0):
            raise ConfigError(f"PottsConfig.reg must be finite and >= 0, got {self.reg}")


class Potts(nn.Module):
    """Pairwise model -E(x) = sum_i h_i(x_i) + sum_{i<j} J_ij(x_i, x_j) over aligned positions.

    Fitted by maximising the weighted pseudo-likelihood sum_i log p(x_i | x_-i) with an L2
    penalty (plmDCA); the partition function is never needed. The Trainer's weighted draws give
    the sequence weights.
    """

    def __init__(self, config: PottsConfig) -> None:
        super().__init__()
        self.config = c = config
        self.h = nn.Parameter(torch.zeros(c.length, c.n_letters))
        self.j = nn.Parameter(torch.zeros(c.length, c.n_letters, c.length, c.n_letters))
        self.mask: torch.Tensor
        self.register_buffer("mask", (1 - torch.eye(c.length))[:, None, :, None])

    def couplings(self) -> torch.Tensor:
        """Return J symmetrised with zero self-couplings: (L, K, L, K)."""
        jm = self.j * self.mask
        return (jm + jm.permute(2, 3, 0, 1)) / 2

    def _one_hot(self, codes: torch.Tensor) -> torch.Tensor:
        c = self.config
        if codes.dim() != 2 or codes.shape[1] != c.length:
            raise DataError(f"codes must be (N, {c.length}), got shape {tuple(codes.shape)}")
        return torch.nn.functional.one_hot(codes.long(), c.n_letters).float()

    def conditional_logits(self, codes: torch.Tensor) -> torch.Tensor:
        """Return the logits of p(x_i = a | x_-i) for rows `codes` (N, L): (N, L, K)."""
        x = self._one_hot(codes)
        c = self.config
        flat = self.couplings().reshape(c.length * c.n_letters, -1)
        return self.h[None] + (x.reshape(x.shape[0], -1) @ flat.T).reshape(x.shape)

    def pseudo_log_likelihood(self, codes: torch.Tensor) -> torch.Tensor:
        """Return sum_i log p(x_i | x_-i) per row (N,), in nats."""
        x = self._one_hot(codes)
        return (torch.log_softmax(self.conditional_logits(codes), -1) * x).sum((1, 2))

    def energy(self, codes: torch.Tensor) -> torch.Tensor:
        """Return -E(x) = sum h + sum_{i<j} J per row (N,): higher is more family-like."""
        x = self._one_hot(codes)
        n = x.shape[0]
        flat = x.reshape(n, -1)
        pair = ((flat @ self.couplings().reshape(flat.shape[1], -1)) * flat).sum(1)
        return (x * self.h[None]).sum((1, 2)) + 0.5 * pair

    def loss(self, batch: tuple[torch.Tensor, ...], step: int = 0) -> torch.Tensor:
        """Return -pseudo-log-likelihood per position, batch mean, plus the L2 penalty."""
        codes = batch[0]
        penalty = self.config.reg * (self.couplings().pow(2).sum() + self.h.pow(2).sum())
        return (-self.pseudo_log_likelihood(codes).mean() + penalty) / self.config.length


def fit_potts(
    codes: np.ndarray,
    weights: np.ndarray | None = None,
    config: PottsConfig | None = None,
    device: str = "cpu",
    progress: bool = False,
) -> tuple[Potts, list[dict[str, float]]]:
    """Return (Potts model, training history) fitted to aligned rows `codes` (N, L) by the
    core Trainer with batches drawn in proportion to `weights`."""
    from gensci.train import TrainConfig, Trainer

    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.shape[0] < 2:
        raise DataError(f"need an (N >= 2, L) array of rows, got shape {codes.shape}")
    base = config or PottsConfig()
    cfg = PottsConfig(**{**base.__dict__, "length": int(codes.shape[1])})
    torch.manual_seed(cfg.seed)
    model = Potts(cfg)
    w = np.ones(codes.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
    trainer = Trainer(
        model,
        torch.as_tensor(codes, dtype=torch.long),
        TrainConfig(
            steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed, device=device,
            progress=progress, grad_clip=0.0, lr_schedule="cosine",
            log_every=max(1, min(100, cfg.steps // 10)),
        ),
        sample_weights=torch.as_tensor(w, dtype=torch.float64),
    )
    history = trainer.fit()
    model.eval()
    return model, history


@torch.no_grad()
def potts_log_partition(
    model: Potts,
    reference: SiteIndependent,
    n_chains: int = 256,
    n_temperatures: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """Return (log Z, its standard error) of a Potts model by annealed importance sampling.

    The chains start exact from the site-independent `reference` (whose log-normaliser is 0)
    and anneal f_b(x) = (1 - b) log p0(x) + b (-E(x)) over evenly spaced b in [0, 1] with one
    Gibbs sweep per temperature; log Z = log mean exp of the accumulated log weights. The
    standard error is the delta-method one of that mean.
    """
    c = model.config
    if reference.length != c.length:
        raise DataError(f"reference has {reference.length} positions, the model {c.length}")
    gen = torch.Generator().manual_seed(seed)
    log_p0 = torch.as_tensor(reference.log_probs, dtype=torch.float32)  # (L, K)
    h, jj = model.h.detach().float(), model.couplings().detach().float()
    codes = torch.as_tensor(reference.sample(n_chains, gen), dtype=torch.long)
    x = torch.nn.functional.one_hot(codes, c.n_letters).float()  # (C, L, K)
    pos = torch.arange(c.length)
    j_rows = jj.reshape(c.length, c.n_letters, -1)  # (L, K, L K)

    def log_ratio(xx: torch.Tensor) -> torch.Tensor:  # -E(x) - log p0(x), (C,)
        flat = xx.reshape(xx.shape[0], -1)
        pair = ((flat @ jj.reshape(flat.shape[1], -1)) * flat).sum(1)
        return (xx * (h - log_p0)[None]).sum((1, 2)) + 0.5 * pair

    betas = torch.linspace(0.0, 1.0, n_temperatures + 1)
    log_w = torch.zeros(n_chains)
    for b_prev, b in zip(betas[:-1], betas[1:], strict=True):
        log_w += (b - b_prev) * log_ratio(x)
        for i in pos[torch.randperm(c.length, generator=gen)]:
            field = h[i] + x.reshape(n_chains, -1) @ j_rows[i].T  # (C, K)
            logits = (1 - b) * log_p0[i] + b * field
            draw = torch.multinomial(torch.softmax(logits, -1), 1, generator=gen)[:, 0]
            x[:, i] = torch.nn.functional.one_hot(draw, c.n_letters).float()
    log_z = torch.logsumexp(log_w, 0) - math.log(n_chains)
    w = torch.softmax(log_w, 0)
    se = float(torch.sqrt((w.pow(2)).sum() * n_chains - 1).clamp(min=0) / math.sqrt(n_chains))
    return float(log_z), se
