"""The family model: the core VAE (categorical likelihood over aligned positions), fitted by the
core Trainer with sequence weights, saved with what it needs to be used on its own.

The checkpoint's metadata holds the alphabet, the alignment length, the kept column indices,
the training sequences (ids and aligned rows), their weights' Neff and the focus sequence.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gensci import checkpoint
from gensci.errors import CheckpointError, ConfigError
from gensci.models.vae import VAE, VAEConfig
from gensci.protein.io import ALPHABET, MSA
from gensci.protein.weights import effective_number, sequence_weights
from gensci.train import TrainConfig, Trainer

KIND = "gensci.protein.family_vae"


@dataclass
class FamilyConfig:
    """Model and training settings; defaults fit a few hundred aligned sequences on one CPU."""

    latent_dim: int = 8
    hidden: tuple[int, ...] = (128,)
    dropout: float = 0.2
    kl_weight: float = 1.0
    kl_warmup_steps: int = 1000
    steps: int = 3000
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    identity_threshold: float = 0.8  # sequence reweighting
    reweight: bool = True
    val_fraction: float = 0.0  # > 0: hold out this share of rows for early stopping
    val_split: str = "random"  # "random" | "clustered" (whole identity clusters, see split.py)
    val_identity: float = 0.8  # clustered validation: rows below this identity to training
    patience: int = 0  # validations (every 100 steps) without improvement before stopping
    seed: int = 0
    accumulate: int = 1  # micro-batches per step and process (see TrainConfig)
    # DeepSequence decoder (see gensci.models.vae), off by default; its prior counts once per
    # Neff of the training rows
    decoder_groups: int = 0  # 4: a sparsity scale per position and group of 4 hidden units
    decoder_temperature: bool = False  # learned softplus scale of the logits
    bayesian_decoder: bool = False  # mean-field Gaussian decoder weights (means used in eval)

    def __post_init__(self) -> None:
        self.hidden = tuple(int(h) for h in self.hidden)
        if self.decoder_groups < 0:
            raise ConfigError(f"decoder_groups must be >= 0, got {self.decoder_groups}")
        if self.decoder_groups and self.hidden and self.hidden[0] % self.decoder_groups:
            raise ConfigError(
                f"decoder_groups {self.decoder_groups} must divide the decoder's last hidden "
                f"width {self.hidden[0]} (the first of hidden={self.hidden})"
            )
        if self.latent_dim < 1:
            raise ConfigError(f"latent_dim must be >= 1, got {self.latent_dim}")
        if not 0.0 <= self.val_fraction < 0.5:
            raise ConfigError(f"val_fraction must lie in [0, 0.5), got {self.val_fraction}")
        if self.val_split not in ("random", "clustered"):
            raise ConfigError(f"val_split must be 'random' or 'clustered', got {self.val_split!r}")


@dataclass
class FamilyMeta:
    """What a family checkpoint knows about its alignment."""

    alphabet: str
    length: int
    columns: list[int]
    train_ids: list[str]
    train_seqs: list[str]
    neff: float
    focus: str | None = None
    source: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    train_seconds: float = 0.0
    residues: dict[str, list[int]] = field(default_factory=dict)  # id -> index per column
    width: int = 0  # columns of the alignment file the model's columns index into
    kind: str = KIND

    def train_codes(self) -> np.ndarray:
        """Return the training rows as integer codes: (N, L)."""
        from gensci.protein.io import encode

        return encode(self.train_seqs, self.train_ids)

    def msa(self) -> MSA:
        """Return the training alignment as an MSA."""
        return MSA(
            list(self.train_ids),
            list(self.train_seqs),
            np.asarray(self.columns),
            self.focus,
            self.source,
        )


def build_vae(length: int, config: FamilyConfig, neff: float = 1.0) -> VAE:
    """Return an untrained core VAE over `length` aligned positions of `ALPHABET`; `neff`, the
    training rows' effective number, weighs the prior of a sparse or Bayesian decoder."""
    return VAE(
        VAEConfig(
            data_dim=length,
            latent_dim=config.latent_dim,
            hidden=config.hidden,
            likelihood="categorical",
            n_categories=len(ALPHABET),
            kl_weight=config.kl_weight,
            kl_warmup_steps=config.kl_warmup_steps,
            dropout=config.dropout,
            decoder_groups=config.decoder_groups,
            decoder_temperature=config.decoder_temperature,
            bayesian_decoder=config.bayesian_decoder,
            decoder_prior_n=float(neff)
            if (config.decoder_groups or config.bayesian_decoder)
            else 0.0,
        )
    )


def train_family(
    msa: MSA,
    config: FamilyConfig | None = None,
    device: str = "cpu",
    out_dir: str | Path | None = None,
    progress: bool = True,
    weights: np.ndarray | None = None,
) -> tuple[VAE, FamilyMeta, list[dict[str, float]]]:
    """Return (trained VAE, its metadata, training history) for the aligned family `msa`.

    weights: (N,) sequence weights; computed by identity reweighting when None.
    """
    config = config or FamilyConfig()
    codes = msa.encode()
    if codes.shape[0] < 2:
        raise ConfigError(f"need at least 2 sequences to train, got {codes.shape[0]}")
    if weights is None:
        weights = (
            sequence_weights(codes, config.identity_threshold)
            if config.reweight
            else np.ones(codes.shape[0])
        )
    fit_rows = np.arange(codes.shape[0])
    val_data = None
    val_rows = None
    if config.val_fraction > 0:
        from gensci.protein.split import clustered_split, random_split

        if config.val_split == "clustered":
            fit_rows, val_rows = clustered_split(
                codes, config.val_fraction, config.val_identity, config.seed
            )
        else:
            fit_rows, val_rows = random_split(codes.shape[0], config.val_fraction, config.seed)
    torch.manual_seed(config.seed)
    model = build_vae(codes.shape[1], config, effective_number(weights[fit_rows]))
    if val_rows is not None:
        val_data = torch.as_tensor(codes[val_rows], dtype=torch.long)
    trainer = Trainer(
        model,
        torch.as_tensor(codes[fit_rows], dtype=torch.long),
        TrainConfig(
            steps=config.steps,
            batch_size=config.batch_size,
            lr=config.lr,
            weight_decay=config.weight_decay,
            seed=config.seed,
            accumulate=config.accumulate,
            device=device,
            progress=progress,
            out_dir=str(out_dir) if out_dir is not None else None,
            resume=False,
            log_every=max(1, min(100, config.steps // 10)),
            val_every=100 if val_data is not None else 0,
            patience=config.patience if val_data is not None else 0,
        ),
        val_data=val_data,
        sample_weights=torch.as_tensor(weights[fit_rows], dtype=torch.float64),
    )
    t0 = time.perf_counter()
    history = trainer.fit()
    seconds = time.perf_counter() - t0
    meta = FamilyMeta(
        alphabet=ALPHABET,
        length=int(codes.shape[1]),
        columns=[int(c) for c in msa.columns],
        train_ids=list(msa.ids),
        train_seqs=list(msa.seqs),
        neff=effective_number(weights),
        focus=msa.focus,
        source=msa.source,
        config=asdict(config),
        train_seconds=seconds,
        residues=_residue_table(msa),
        width=msa.width,
    )
    model.eval()
    return model, meta, history


def _residue_table(msa: MSA, max_cells: int = 500_000) -> dict[str, list[int]]:
    """Return id -> residue index per column, for every row if small, else the focus only."""
    if msa.residues is None:
        return {}
    rows: list[int] | range = range(msa.n_sequences)
    if msa.n_sequences * msa.length > max_cells:
        rows = [msa.index(msa.focus)] if msa.focus is not None else []
    return {msa.ids[r]: [int(v) for v in msa.residues[r]] for r in rows}


def save_family(model: VAE, meta: FamilyMeta, path: str | Path, overwrite: bool = False) -> Path:
    """Write the VAE and its family metadata to one checkpoint file; return its path."""
    return checkpoint.save(model, path, overwrite=overwrite, metadata=asdict(meta))


def _family_meta(raw: dict[str, Any], path: str | Path) -> FamilyMeta:
    """Return the FamilyMeta of a checkpoint's metadata; raise CheckpointError naming the file
    for missing or unknown keys and for values of the wrong kind."""
    import dataclasses

    from gensci.files import require_keys

    fields = {f.name for f in dataclasses.fields(FamilyMeta)}
    required = ("alphabet", "length", "columns", "train_ids", "train_seqs", "neff")
    require_keys(raw, required, f"the metadata of {path}", CheckpointError)
    unknown = sorted(set(raw) - fields)
    if unknown:
        raise CheckpointError(f"the metadata of {path} holds unknown keys {unknown}")
    kinds: dict[str, tuple[type, ...]] = {
        "alphabet": (str,),
        "length": (int,),
        "columns": (list,),
        "train_ids": (list,),
        "train_seqs": (list,),
        "neff": (int, float),
        "residues": (dict,),
        "width": (int,),
    }
    for key, kind in kinds.items():
        if key in raw and (not isinstance(raw[key], kind) or isinstance(raw[key], bool)):
            want = " or ".join(k.__name__ for k in kind)
            raise CheckpointError(
                f"{path}: metadata {key!r} is a {type(raw[key]).__name__}, expected {want}"
            )
    if not all(isinstance(x, str) for x in raw["train_ids"] + raw["train_seqs"]):
        raise CheckpointError(f"{path}: metadata train_ids / train_seqs must be lists of text")
    if len(raw["train_ids"]) != len(raw["train_seqs"]) or not raw["train_seqs"]:
        raise CheckpointError(
            f"{path}: metadata holds {len(raw['train_ids'])} ids for "
            f"{len(raw['train_seqs'])} training sequences"
        )
    return FamilyMeta(**raw)


def load_family_model(path: str | Path, device: str | None = None) -> tuple[VAE, FamilyMeta]:
    """Return (VAE, FamilyMeta) from a checkpoint written by `save_family`."""
    model = checkpoint.load(path, device=device)
    raw = checkpoint.load_metadata(path)
    if raw.get("kind") != KIND or not isinstance(model, VAE):
        raise CheckpointError(f"{path} is not a protein family checkpoint (gensci protein train)")
    meta = _family_meta(raw, path)
    if meta.alphabet != ALPHABET:
        raise CheckpointError(f"{path} uses alphabet {meta.alphabet!r}, expected {ALPHABET!r}")
    if model.config.data_dim != meta.length:
        raise CheckpointError(
            f"{path}: model has {model.config.data_dim} positions, metadata says {meta.length}"
        )
    return model, meta


def match_alignment(meta: FamilyMeta, msa: MSA) -> MSA:
    """Return `msa` on the model's columns; raise CheckpointError if it is another alignment.

    `msa` is either already on the model's columns (length L) or read unfiltered from a file
    of the same width as the training alignment.
    """
    if msa.length == meta.length and msa.width in (0, meta.width):
        return msa
    if msa.width == meta.width and meta.width > 0:
        return msa.select_columns(meta.columns)
    raise CheckpointError(
        f"the model was trained on an alignment of {meta.width} columns ({meta.length} kept) "
        f"but {msa.source or 'this alignment'} has {msa.width or msa.length}; use the "
        "alignment the model was trained on"
    )
