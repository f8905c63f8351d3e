"""Variational autoencoder and conditional VAE with Gaussian or categorical likelihoods.

ELBO(x) = E_q(z|x) [log p(x|z)] - KL(q(z|x) || N(0, I)), q(z|x) = N(mu(x), diag exp(logvar(x))).
A condition c (an integer label or a float vector) enters the decoder, and the encoder too if
`cond_in_encoder`.

Optional DeepSequence decoder (Riesselman et al. 2018), off by default: the output layer's
weights W (H, D, K) are scaled per position by a sigmoid over groups of hidden units,
W_hdk * sigmoid(S_{h mod H/g, d}), with a logit-normal prior on S; the logits are multiplied by
a learned softplus temperature; and the decoder's weights can be mean-field Gaussian with a
KL to N(0, 1), divided by the effective number of training rows (Bayesian decoder).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from gensci.errors import ConfigError, DataError, ShapeError, check_finite
from gensci.nn import MLP
from gensci.nn.mlp import activation as make_activation

LIKELIHOODS = ("gaussian", "categorical")
# DeepSequence's prior on the sparsity logits S: N(mu, sigma^2) with sigmoid(mu) about 0.001
SPARSITY_LOGIT_SIGMA = 4.0
SPARSITY_LOGIT_MU = math.sqrt(2.0) * SPARSITY_LOGIT_SIGMA * -2.1851242  # erfinv(2 * 0.001 - 1)
BAYES_INIT_LOG_SIGMA = -5.0  # initial log std of the decoder's weights (DeepSequence)


@dataclass
class VAEConfig:
    data_dim: int = 2
    latent_dim: int = 16
    hidden: tuple[int, ...] = (256, 256)
    likelihood: str = "gaussian"
    n_categories: int = 0  # categorical: letters per position
    n_labels: int = 0  # condition by integer label in [0, n_labels)
    cond_dim: int = 0  # condition by a float vector
    cond_in_encoder: bool = True
    kl_weight: float = 1.0
    kl_warmup_steps: int = 0  # KL weight rises linearly from 0 over these training steps
    gaussian_std: float | None = None  # None: a learned std per feature
    dropout: float = 0.0
    activation: str = "silu"
    # DeepSequence decoder (all off by default: the plain MLP decoder)
    decoder_groups: int = 0  # > 0: sparsity scale per position and group of this many units
    decoder_temperature: bool = False  # logits times a learned softplus scale
    bayesian_decoder: bool = False  # mean-field Gaussian decoder weights, KL to N(0, 1)
    decoder_prior_n: float = 0.0  # the decoder's prior counts once per this many rows (Neff)

    @property
    def deep_sequence_decoder(self) -> bool:
        """Return whether any DeepSequence decoder option is on."""
        return bool(self.decoder_groups or self.decoder_temperature or self.bayesian_decoder)

    def __post_init__(self) -> None:
        self.hidden = tuple(int(h) for h in self.hidden)
        if self.decoder_groups < 0:
            raise ConfigError(f"decoder_groups must be >= 0, got {self.decoder_groups}")
        if self.decoder_groups:
            last = (
                self.hidden[0]
                if self.hidden
                else self.latent_dim + (self.n_labels or self.cond_dim)
            )
            if last % self.decoder_groups:
                raise ConfigError(
                    f"decoder_groups {self.decoder_groups} must divide the decoder's last "
                    f"hidden width {last}"
                )
        needs_n = self.bayesian_decoder or self.decoder_groups > 0
        if needs_n and not (math.isfinite(self.decoder_prior_n) and self.decoder_prior_n > 0):
            raise ConfigError(
                "a sparse or Bayesian decoder needs decoder_prior_n > 0 (the effective number "
                f"of training rows), got {self.decoder_prior_n}"
            )
        if self.likelihood not in LIKELIHOODS:
            raise ConfigError(
                f"unknown likelihood {self.likelihood!r}; choose one of {LIKELIHOODS}"
            )
        if self.likelihood == "categorical" and self.n_categories < 2:
            raise ConfigError(
                f"categorical likelihood needs n_categories >= 2, got {self.n_categories}"
            )
        if self.n_labels and self.cond_dim:
            raise ConfigError(
                "give either n_labels (label condition) or cond_dim (vector), not both"
            )
        if self.data_dim < 1 or self.latent_dim < 1:
            raise ConfigError(
                f"data_dim and latent_dim must be >= 1, got {self.data_dim}, {self.latent_dim}"
            )


class DeepSequenceDecoder(nn.Module):
    """z: (B, in_dim) -> outputs (B, D * K): an MLP whose output layer is group-sparse per
    position, optionally temperature-scaled and optionally Bayesian (DeepSequence).

    logits_dk = softplus(t) * (sum_h a_h W_hdk sigmoid(S_{h mod H/g, d}) + b_dk), a: (B, H) the
    last hidden layer. With `bayesian`, every weight and bias w ~ N(mu, exp(log_sigma)^2) is
    sampled afresh per batch while training; in eval mode the means are used.
    """

    def __init__(
        self,
        in_dim: int,
        hidden: tuple[int, ...],
        data_dim: int,
        n_out: int,
        act: str,
        dropout: float,
        groups: int,
        temperature: bool,
        bayesian: bool,
    ) -> None:
        super().__init__()
        self.data_dim, self.n_out, self.groups, self.bayesian = data_dim, n_out, groups, bayesian
        self.mean = nn.ParameterDict()
        self.log_sigma = nn.ParameterDict()
        widths = (in_dim, *hidden)
        for i, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            self._add(f"w{i}", *_linear_init(fan_in, fan_out))
        self.n_hidden = len(hidden)
        self.acts = nn.ModuleList(make_activation(act) for _ in hidden)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        width = widths[-1]
        self._add("w_out", *_linear_init(width, data_dim * n_out))
        if groups:
            self._add_one("s_out", torch.zeros(width // groups, data_dim))
        self.t_raw = nn.Parameter(torch.tensor(math.log(math.e - 1.0))) if temperature else None

    def _add(self, name: str, weight: torch.Tensor, bias: torch.Tensor) -> None:
        self._add_one(name, weight)
        self._add_one("b" + name[1:], bias)

    def _add_one(self, name: str, value: torch.Tensor) -> None:
        self.mean[name] = nn.Parameter(value)
        if self.bayesian:
            self.log_sigma[name] = nn.Parameter(torch.full_like(value, BAYES_INIT_LOG_SIGMA))

    def param(self, name: str) -> torch.Tensor:
        """Return a parameter: a draw from q(w) while training a Bayesian decoder, else its mean."""
        mu = self.mean[name]
        if self.bayesian and self.training:
            return mu + self.log_sigma[name].exp() * torch.randn_like(mu)
        return mu

    def sparsity_scale(self) -> torch.Tensor:
        """Return sigmoid(S) tiled over the groups: (H, D), each entry in (0, 1)."""
        return torch.sigmoid(self.param("s_out")).repeat(self.groups, 1)

    def temperature(self) -> torch.Tensor:
        """Return the logits' scale softplus(t) (1 when the option is off)."""
        if self.t_raw is None:
            return torch.ones(())
        return F.softplus(self.t_raw)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = z
        for i in range(self.n_hidden):
            h = self.drop(self.acts[i](F.linear(h, self.param(f"w{i}"), self.param(f"b{i}"))))
        w = self.param("w_out")  # (D K, H) as nn.Linear stores it
        if self.groups:
            scale = self.sparsity_scale().T  # (D, H)
            w = (w.reshape(self.data_dim, self.n_out, -1) * scale[:, None, :]).reshape(w.shape)
        out = F.linear(h, w, self.param("b_out"))
        if self.t_raw is not None:
            out = out * F.softplus(self.t_raw)
        return out

    def prior_kl(self) -> torch.Tensor:
        """Return the decoder's prior term in nats: KL(q(w) || p(w)) summed over the weights when
        Bayesian (p = N(0, 1), and N(mu_S, sigma_S^2) for S), else -log p(S) of the point S."""
        total = torch.zeros((), device=self.mean["w_out"].device)
        for name, mu in self.mean.items():
            p_mu, p_sigma = (
                (SPARSITY_LOGIT_MU, SPARSITY_LOGIT_SIGMA) if name == "s_out" else (0.0, 1.0)
            )
            if self.bayesian:
                log_s = self.log_sigma[name]
                total = (
                    total
                    + (
                        math.log(p_sigma)
                        - log_s
                        + ((2 * log_s).exp() + (mu - p_mu).pow(2)) / (2 * p_sigma**2)
                        - 0.5
                    ).sum()
                )
            elif name == "s_out":
                total = total + ((mu - p_mu).pow(2) / (2 * p_sigma**2)).sum()
        return total


def _linear_init(fan_in: int, fan_out: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (weight (fan_out, fan_in), bias (fan_out,)) drawn as nn.Linear draws them."""
    layer = nn.Linear(fan_in, fan_out)
    return layer.weight.detach().clone(), layer.bias.detach().clone()


class VAE(nn.Module):
    """Encoder q(z|x, c) and decoder p(x|z, c).

    x: (B, D) floats (Gaussian) or, categorical, (B, D) letter indices / (B, D, K) one-hot.
    """

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = c = config
        self.c_dim = c.n_labels or c.cond_dim
        x_width = c.data_dim * (c.n_categories if c.likelihood == "categorical" else 1)
        enc_in = x_width + (self.c_dim if c.cond_in_encoder else 0)
        self.encoder = MLP(enc_in, 2 * c.latent_dim, c.hidden, c.activation, c.dropout)
        self.decoder: nn.Module
        if c.deep_sequence_decoder:
            self.decoder = DeepSequenceDecoder(
                c.latent_dim + self.c_dim,
                tuple(reversed(c.hidden)),
                c.data_dim,
                x_width // c.data_dim,
                c.activation,
                c.dropout,
                c.decoder_groups,
                c.decoder_temperature,
                c.bayesian_decoder,
            )
        else:
            self.decoder = MLP(
                c.latent_dim + self.c_dim,
                x_width,
                tuple(reversed(c.hidden)),
                c.activation,
                c.dropout,
            )
        if c.likelihood == "gaussian" and c.gaussian_std is None:
            self.log_std = nn.Parameter(torch.zeros(c.data_dim))

    # -- inputs ---------------------------------------------------------------------------------
    def _x(self, x: torch.Tensor) -> torch.Tensor:
        """Return x as the flat float input of the encoder, checking its shape and values."""
        c = self.config
        if c.likelihood == "categorical":
            if x.dim() == 2 and not x.is_floating_point():
                if x.shape[1] != c.data_dim:
                    raise ShapeError(f"x has shape {tuple(x.shape)}, expected (B, {c.data_dim})")
                if x.numel() and (x.min() < 0 or x.max() >= c.n_categories):
                    raise DataError(
                        f"x holds letter indices outside [0, {c.n_categories}): "
                        f"min {int(x.min())}, max {int(x.max())}"
                    )
                x = F.one_hot(x.long(), c.n_categories).float()
            if tuple(x.shape[1:]) != (c.data_dim, c.n_categories):
                raise ShapeError(
                    f"x has shape {tuple(x.shape)}, expected (B, {c.data_dim}) indices or "
                    f"(B, {c.data_dim}, {c.n_categories}) one-hot"
                )
            return x.reshape(x.shape[0], -1)
        if x.dim() != 2 or x.shape[1] != c.data_dim:
            raise ShapeError(f"x has shape {tuple(x.shape)}, expected (B, {c.data_dim})")
        return x

    def _c(self, c: torch.Tensor | None, batch: int) -> torch.Tensor | None:
        """Return the condition as a (B, c_dim) float tensor (one-hot for labels), or None."""
        cfg = self.config
        if not self.c_dim:
            if c is not None:
                raise ShapeError("this VAE is unconditional but a condition was given")
            return None
        if c is None:
            raise ShapeError("this VAE is conditional: pass a condition c")
        if cfg.n_labels:
            c = c.reshape(-1)
            if c.is_floating_point():
                c = c.long()
            if c.numel() and (c.min() < 0 or c.max() >= cfg.n_labels):
                raise DataError(f"labels must lie in [0, {cfg.n_labels}), got {c.min()}..{c.max()}")
            c = F.one_hot(c, cfg.n_labels).float()
        if tuple(c.shape) != (batch, self.c_dim):
            raise ShapeError(
                f"condition has shape {tuple(c.shape)}, expected ({batch}, {self.c_dim})"
            )
        return c.float()

    # -- the model ------------------------------------------------------------------------------
    def encode(
        self, x: torch.Tensor, c: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (mu, logvar) of q(z | x, c), each (B, latent_dim)."""
        flat = self._x(x)
        cc = self._c(c, flat.shape[0])
        h = torch.cat([flat, cc], -1) if (cc is not None and self.config.cond_in_encoder) else flat
        mu, logvar = self.encoder(h).chunk(2, dim=-1)
        return mu, logvar.clamp(-12.0, 8.0)

    def decode(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """Return p(x | z, c)'s parameters: Gaussian means (B, D) or categorical logits (B, D, K)."""
        cc = self._c(c, z.shape[0])
        out = self.decoder(torch.cat([z, cc], -1) if cc is not None else z)
        if self.config.likelihood == "categorical":
            return out.reshape(z.shape[0], self.config.data_dim, self.config.n_categories)
        return out

    def log_likelihood(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """Return log p(x | z) per example, (B,), for decoder outputs `params`."""
        cfg = self.config
        if cfg.likelihood == "categorical":
            onehot = self._x(x).reshape(params.shape)
            return (onehot * F.log_softmax(params, dim=-1)).sum((-1, -2))
        if cfg.gaussian_std is not None:
            log_std = torch.full_like(params, math.log(cfg.gaussian_std))
        else:
            log_std = self.log_std.expand_as(params)
        z = (x - params) / log_std.exp()
        return (-0.5 * z.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)

    @staticmethod
    def kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """Return KL(N(mu, exp(logvar)) || N(0, I)) per example, (B,)."""
        return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1)

    def elbo(
        self,
        x: torch.Tensor,
        c: torch.Tensor | None = None,
        n_samples: int = 1,
        kl_weight: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Return the ELBO per example in nats, (B,), averaged over n_samples draws of z."""
        mu, logvar = self.encode(x, c)
        rec = torch.zeros(mu.shape[0], device=mu.device)
        for _ in range(n_samples):
            noise = (
                torch.randn(mu.shape, generator=generator).to(mu)
                if generator
                else torch.randn_like(mu)
            )
            z = mu + (0.5 * logvar).exp() * noise
            rec = rec + self.log_likelihood(x, self.decode(z, c))
        return rec / n_samples - kl_weight * self.kl(mu, logvar)

    def kl_scale(self, step: int) -> float:
        """Return the KL weight at training step `step` (linear warm-up, then kl_weight)."""
        cfg = self.config
        if cfg.kl_warmup_steps <= 0:
            return cfg.kl_weight
        return cfg.kl_weight * min(1.0, step / cfg.kl_warmup_steps)

    def decoder_prior(self) -> torch.Tensor:
        """Return the decoder's prior term per training row, in nats: its KL (or -log prior)
        divided by decoder_prior_n; 0 for the plain decoder."""
        if not isinstance(self.decoder, DeepSequenceDecoder):
            return torch.zeros(())
        return self.decoder.prior_kl() / self.config.decoder_prior_n

    def loss(self, batch: tuple[torch.Tensor, ...], step: int = 0) -> torch.Tensor:
        """Return the negative annealed ELBO per data dimension, averaged over the batch (plus
        the decoder's prior per row, annealed alike, for the DeepSequence decoder)."""
        x = batch[0]
        c = batch[1] if len(batch) > 1 else None
        if x.is_floating_point():
            check_finite(x, "VAE training batch")
        loss = -self.elbo(x, c, kl_weight=self.kl_scale(step)).mean()
        if isinstance(self.decoder, DeepSequenceDecoder):
            cfg = self.config
            warm = 1.0 if cfg.kl_warmup_steps <= 0 else min(1.0, step / cfg.kl_warmup_steps)
            loss = loss + warm * self.decoder_prior()
        return loss / self.config.data_dim

    @torch.no_grad()
    def sample(
        self, n: int, c: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Return decoder outputs for z ~ N(0, I): Gaussian means (n, D) or logits (n, D, K)."""
        device = next(self.parameters()).device
        z = torch.randn(n, self.config.latent_dim, generator=generator).to(device)
        return self.decode(z, c)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """Return the decoder output at the posterior mean: means (B, D) or logits (B, D, K)."""
        mu, _ = self.encode(x, c)
        return self.decode(mu, c)
