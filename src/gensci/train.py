"""One Trainer for every model: any nn.Module with `loss(batch, step) -> scalar` trains with it.

Seeded batches, AdamW, gradient clipping, EMA weights, periodic validation with early stopping,
a progress bar, a CSV metrics log and resumable checkpoints. Under `torchrun --nproc_per_node=N`
the same code runs data-parallel (DDP; gloo on CPU, nccl on GPU): every rank draws the same global
batch from the shared seed and takes its shard. The loss's random draws (noise, dropout) are seeded
per (seed, step, shard), so N processes step exactly as one process with `accumulate=N` would, and
a killed run resumed from last.pt ends where the uninterrupted run ends.
"""

from __future__ import annotations

import copy
import csv
import io
import math
import os
import pickle
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from gensci.errors import CheckpointError, ConfigError, DataError, ShapeError, check_finite
from gensci.runtime import atomic_save, atomic_write_text, init_distributed, resolve_device

Batch = tuple[torch.Tensor, ...]


@dataclass
class TrainConfig:
    steps: int = 1000
    batch_size: int = 128
    lr: float = 1e-3
    lr_schedule: str = "constant"  # "constant" | "cosine" (decays to 0 at `steps`)
    warmup_steps: int = 0  # linear warm-up of the learning rate from 0
    schedule_steps: int | None = None  # length of the cosine schedule (default: steps)
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW; adversarial training prefers (0.5, 0.9)
    grad_clip: float = 1.0  # max gradient norm; 0 = off
    accumulate: int = 1  # micro-batches per step and process (gradient accumulation)
    ema_decay: float = 0.0  # 0 = off; after fit the model holds the EMA weights
    seed: int = 0
    log_every: int = 50
    val_every: int = 0  # 0 = validate only at the end (if val_data is given)
    patience: int = 0  # early stopping after this many validations without improvement; 0 = off
    checkpoint_every: int = 0  # 0 = only at the end (if out_dir is given)
    out_dir: str | None = None  # holds last.pt (training state) and metrics.csv
    resume: bool = True
    device: str = "auto"
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "log_every", "accumulate"):
            if getattr(self, name) < 1:
                raise ConfigError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "weight_decay", "grad_clip", "ema_decay"):
            if not math.isfinite(getattr(self, name)):
                raise ConfigError(f"TrainConfig.{name} must be finite, got {getattr(self, name)}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"TrainConfig.ema_decay must lie in [0, 1), got {self.ema_decay}")
        if self.lr <= 0:
            raise ConfigError(f"TrainConfig.lr must be > 0, got {self.lr}")
        if self.weight_decay < 0 or self.grad_clip < 0:
            raise ConfigError(
                f"TrainConfig.weight_decay ({self.weight_decay}) and grad_clip ({self.grad_clip}) "
                "must be >= 0"
            )
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise ConfigError(f"TrainConfig.betas must lie in [0, 1), got {self.betas}")
        for name in ("val_every", "patience", "checkpoint_every"):
            if getattr(self, name) < 0:
                raise ConfigError(f"TrainConfig.{name} must be >= 0, got {getattr(self, name)}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ConfigError(
                f"TrainConfig.lr_schedule must be 'constant' or 'cosine', got {self.lr_schedule!r}"
            )
        if self.warmup_steps < 0:
            raise ConfigError(f"TrainConfig.warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.schedule_steps is not None:
            if self.lr_schedule != "cosine":
                raise ConfigError("TrainConfig.schedule_steps applies to the cosine schedule only")
            if self.schedule_steps < self.steps:
                raise ConfigError(
                    f"TrainConfig.schedule_steps ({self.schedule_steps}) must be >= steps "
                    f"({self.steps}): the schedule would reach 0 before training ends"
                )

    def lr_at(self, step: int) -> float:
        """Return the learning rate of step `step` (0-based): warm-up, then constant or cosine.

        A function of the step alone, so a resumed run with the same `steps` follows the same
        schedule (resuming to a larger `steps` stretches the rest of a cosine schedule). A cosine
        spans `schedule_steps` when given: training can stop part-way along a longer schedule.
        """
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        if self.lr_schedule == "constant":
            return self.lr
        length = self.steps if self.schedule_steps is None else self.schedule_steps
        span = max(length - self.warmup_steps, 1)
        progress = min((step - self.warmup_steps) / span, 1.0)
        return self.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


class _LossModule(nn.Module):
    """Makes `model.loss` the forward pass, so DDP can wrap it and synchronise gradients."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Batch, step: int) -> torch.Tensor:
        return self.model.loss(batch, step)  # type: ignore[operator]


def _as_tensors(data: torch.Tensor | Batch, name: str) -> Batch:
    """Return `data` as a tuple of tensors sharing their first dimension; check for NaN/inf."""
    tensors = (data,) if isinstance(data, torch.Tensor) else tuple(data)
    if not tensors or not all(isinstance(t, torch.Tensor) for t in tensors):
        raise ShapeError(f"{name} must be a tensor or a tuple of tensors")
    n = tensors[0].shape[0]
    if n == 0:
        raise DataError(f"{name} is empty")
    for i, t in enumerate(tensors):
        if t.shape[0] != n:
            raise ShapeError(f"{name}[{i}] has {t.shape[0]} examples, {name}[0] has {n}")
        if t.is_floating_point():
            check_finite(t, f"{name}[{i}]")
    return tensors


# Settings that fix the trajectory of a run: resuming with any of them changed is refused.
_RUN_SETTINGS = (
    "batch_size", "lr", "lr_schedule", "warmup_steps", "weight_decay", "betas", "grad_clip",
    "ema_decay", "seed",
)


class Trainer:
    """Fits `model` on in-memory `data` (a tensor or tuple of tensors, examples along dim 0)."""

    def __init__(
        self,
        model: nn.Module,
        data: torch.Tensor | Batch,
        config: TrainConfig | None = None,
        val_data: torch.Tensor | Batch | None = None,
        sample_weights: torch.Tensor | None = None,
    ) -> None:
        if not callable(getattr(model, "loss", None)):
            raise ConfigError(f"{type(model).__name__} has no loss(batch, step) method to train")
        self.config = config or TrainConfig()
        self.model = model
        self.data = _as_tensors(data, "data")
        self.val_data = _as_tensors(val_data, "val_data") if val_data is not None else None
        self.n = self.data[0].shape[0]
        if sample_weights is not None:
            sample_weights = sample_weights.detach().double().cpu().reshape(-1)
            if sample_weights.numel() != self.n:
                raise ShapeError(
                    f"sample_weights has {sample_weights.numel()} entries for {self.n} examples"
                )
            check_finite(sample_weights, "sample_weights")
            if (sample_weights < 0).any() or sample_weights.sum() <= 0:
                raise DataError("sample_weights must be >= 0 with a positive sum")
        self.sample_weights = sample_weights
        self.history: list[dict[str, float]] = []
        self.step = 0
        self._resume_pos: int | None = None
        self.optimizer: torch.optim.Optimizer
        self.rank, self.world = 0, 1

    # -- batches --------------------------------------------------------------------------------
    def _global_indices(self) -> Iterator[torch.Tensor]:
        """Yield the global batch indices of each step, the same on every rank.

        The generator's state at the start of the current epoch and the position in it are kept
        (and saved), so a resumed run draws exactly the batches the uninterrupted run would.
        Drawing with replacement (weighted, or data smaller than a batch) keeps the state after
        each draw instead, for the same reason.
        """
        bs = self.config.batch_size
        with_replacement = self.sample_weights is not None or self.n < bs
        while True:
            if self._resume_pos is None:
                self._epoch_state = self._gen.get_state()
                start = 0
            else:
                self._gen.set_state(self._epoch_state)
                start, self._resume_pos = self._resume_pos, None
            if with_replacement:
                if self.sample_weights is not None:
                    batch = torch.multinomial(
                        self.sample_weights, bs, replacement=True, generator=self._gen
                    )
                else:  # tiny data: sample with replacement rather than fail
                    batch = torch.randint(0, self.n, (bs,), generator=self._gen)
                self._epoch_state, self._pos = self._gen.get_state(), 0
                yield batch
                continue
            perm = torch.randperm(self.n, generator=self._gen)
            for i in range(start, self.n - bs + 1, bs):
                self._pos = i + bs
                yield perm[i : i + bs]

    def _batch(self, idx: torch.Tensor) -> Batch:
        return tuple(t[idx].to(self.device, non_blocking=True) for t in self.data)

    def _shards(self, idx: torch.Tensor) -> list[tuple[int, torch.Tensor]]:
        """Return this rank's (global shard number, indices) pairs of the global batch `idx`.

        The batch is cut into world x accumulate equal shards; rank r takes shards r*a ... r*a+a-1.
        """
        a = self.config.accumulate
        size = self.config.batch_size // (self.world * a)
        return [
            (s, idx[s * size : (s + 1) * size]) for s in range(self.rank * a, (self.rank + 1) * a)
        ]

    def _noise_seed(self, shard: int) -> int:
        """Return the seed of the loss's random draws (noise, dropout) for one shard of this step.

        A function of (seed, step, shard) alone: N processes, or one process accumulating N
        shards, draw the same noise for the same examples, and a resumed run draws what the
        uninterrupted run would have, on CPU and CUDA alike.
        """
        words = np.random.SeedSequence([self.config.seed, self.step, shard]).generate_state(2)
        return int(words[0]) << 31 ^ int(words[1])

    def _seed_noise(self, seed: int) -> None:
        # the default generators directly: torch.manual_seed also visits every accelerator
        # back-end, which costs more than a small model's whole step
        torch.default_generator.manual_seed(seed)
        if self.device.type == "cuda":
            torch.cuda.manual_seed(seed)

    # -- EMA ------------------------------------------------------------------------------------
    def _init_ema(self) -> None:
        self.ema: dict[str, torch.Tensor] | None = None
        if self.config.ema_decay > 0:
            self.ema = {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    @torch.no_grad()
    def _update_ema(self) -> None:
        if self.ema is None:
            return
        # warm-up: early on, average over the few iterates there are rather than keep the random
        # initial weights (with decay 0.999 they would still weigh 37% after 1,000 steps)
        d = min(self.config.ema_decay, (1 + self.step) / (10 + self.step))
        for k, v in self.model.state_dict().items():
            if v.is_floating_point():
                self.ema[k].mul_(d).add_(v.detach(), alpha=1 - d)
            else:
                self.ema[k].copy_(v)

    @contextmanager
    def _ema_weights(self) -> Iterator[None]:
        """Temporarily load the EMA weights into the model (no-op without EMA)."""
        if self.ema is None:
            yield
            return
        saved = copy.deepcopy(self.model.state_dict())
        self.model.load_state_dict(self.ema)
        try:
            yield
        finally:
            self.model.load_state_dict(saved)

    # -- validation -----------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> float:
        """Return the mean loss over val_data, with fixed noise so that values are comparable."""
        assert self.val_data is not None
        was = self.model.training
        self.model.eval()
        total, count = 0.0, 0
        n_val = self.val_data[0].shape[0]
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.config.seed + 7919)
            for i in range(0, n_val, self.config.batch_size):
                batch = tuple(
                    t[i : i + self.config.batch_size].to(self.device) for t in self.val_data
                )
                k = batch[0].shape[0]
                total += float(self.model.loss(batch, self.step)) * k  # type: ignore[operator]
                count += k
        self.model.train(was)
        return total / count

    # -- checkpoints ----------------------------------------------------------------------------
    def _ckpt_path(self) -> Path | None:
        return Path(self.config.out_dir) / "last.pt" if self.config.out_dir else None

    def _run_settings(self) -> dict[str, Any]:
        cfg = self.config
        settings = {k: getattr(cfg, k) for k in _RUN_SETTINGS}
        settings["betas"] = list(cfg.betas)
        settings["shards"] = self.world * cfg.accumulate
        settings["n_examples"] = self.n
        return settings

    def save_state(self) -> None:
        """Write the training state (weights, EMA, optimizer, step, RNG) to out_dir/last.pt atomically.

        Only tensors and plain values are stored, so it loads without unpickling any code.
        """
        path = self._ckpt_path()
        if path is None:
            return
        state = {
            "model": self.model.state_dict(),
            "ema": self.ema,
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "generator": self._gen.get_state(),
            "epoch_state": self._epoch_state,
            "epoch_pos": self._pos,
            "history": self.history,
            "best": (self._best_val, self._best_state, self._bad_vals),
            "settings": self._run_settings(),
        }
        buf = io.BytesIO()
        torch.save(state, buf)
        atomic_save(path, lambda p: p.write_bytes(buf.getvalue()), overwrite=True)

    def _load_state(self, path: Path) -> None:
        state = read_training_state(path)
        saved = state.get("settings")
        if saved is not None:
            now = self._run_settings()
            changed = {k: (saved.get(k), v) for k, v in now.items() if saved.get(k) != v}
            if changed:
                diff = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changed.items())
                raise CheckpointError(
                    f"{path} was written by a run with other settings ({diff}); resume with the "
                    "same settings, or start over in another folder (or with --overwrite)"
                )
        try:
            self.model.load_state_dict(state["model"])
        except (KeyError, RuntimeError) as exc:
            raise CheckpointError(
                f"cannot resume from {path}: it holds another model ({exc})"
            ) from None
        try:
            ema = state["ema"]
            self.ema = None if ema is None else {k: v.to(self.device) for k, v in ema.items()}
            self.optimizer.load_state_dict(state["optimizer"])
            self.step = int(state["step"])
            self._gen.set_state(state["generator"])
            self.history = list(state["history"])
            self._best_val, self._best_state, self._bad_vals = state["best"]
        except (KeyError, ValueError, RuntimeError, TypeError, AttributeError) as exc:
            raise CheckpointError(f"{path} is not a complete training state ({exc!r})") from exc
        if "epoch_state" in state:
            self._epoch_state, self._resume_pos = state["epoch_state"], state["epoch_pos"]
        # (a state from before the position in the epoch was kept starts a fresh epoch)

    _FIELDS = ("step", "loss", "val_loss", "lr", "seconds")

    def _write_metrics(self) -> None:
        """Write metrics.csv anew from the history (after a resume: no row twice, none stale)."""
        if not self.config.out_dir or self.rank != 0:
            return
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self._FIELDS, extrasaction="ignore")
        writer.writeheader()
        for row in self.history:
            writer.writerow({k: row.get(k, "") for k in self._FIELDS})
        atomic_write_text(Path(self.config.out_dir) / "metrics.csv", buf.getvalue(), True)

    def _log(self, row: dict[str, float]) -> None:
        self.history.append(row)
        if not self.config.out_dir or self.rank != 0:
            return
        with (Path(self.config.out_dir) / "metrics.csv").open("a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=self._FIELDS, extrasaction="ignore")
            writer.writerow({k: row.get(k, "") for k in self._FIELDS})

    # -- the loop -------------------------------------------------------------------------------
    def fit(self) -> list[dict[str, float]]:
        """Train for `config.steps` steps (continuing a resumed run); return the logged history."""
        cfg = self.config
        self.device = resolve_device(cfg.device)
        self.rank, self.world, _ = init_distributed(self.device)
        if self.world > 1 and self.device.type == "cuda":
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        shards = self.world * cfg.accumulate
        if cfg.batch_size % shards:
            raise ConfigError(
                f"batch_size {cfg.batch_size} is not divisible into {shards} equal shards "
                f"({self.world} processes x accumulate {cfg.accumulate})"
            )
        self.model.to(self.device).train()
        self._gen = torch.Generator().manual_seed(cfg.seed)
        self._epoch_state, self._pos, self._resume_pos = self._gen.get_state(), 0, None
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(),
            lr=cfg.lr,
            weight_decay=cfg.weight_decay,
            betas=(cfg.betas[0], cfg.betas[1]),
        )
        self._init_ema()
        self._best_val, self._best_state, self._bad_vals = math.inf, None, 0
        path = self._ckpt_path()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            if cfg.resume and path.exists():
                self._load_state(path)
            self._write_metrics()
        wrapped: nn.Module = _LossModule(self.model)
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            wrapped = DDP(
                wrapped,
                device_ids=ids,
                find_unused_parameters=bool(getattr(self.model, "has_unused_parameters", False)),
            )

        batches = self._global_indices()  # a resumed run continues from the saved generator state
        bar = tqdm(
            total=cfg.steps,
            initial=self.step,
            desc=f"training {type(self.model).__name__}",
            disable=not cfg.progress or self.rank != 0,
            dynamic_ncols=True,
        )
        t0, running, seen = time.perf_counter(), 0.0, 0
        stop = False
        try:
            while self.step < cfg.steps and not stop:
                loss = self._train_step(wrapped, next(batches))
                self._update_ema()
                self.step += 1
                running += loss
                seen += 1
                bar.update(1)
                row: dict[str, float] = {}
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    row = {
                        "step": self.step,
                        "loss": running / seen,
                        "lr": cfg.lr_at(self.step - 1),
                        "seconds": time.perf_counter() - t0,
                    }
                    running, seen = 0.0, 0
                    bar.set_postfix(loss=f"{row['loss']:.4g}")
                validate_now = self.val_data is not None and (
                    (cfg.val_every and self.step % cfg.val_every == 0) or self.step == cfg.steps
                )
                if validate_now:
                    with self._ema_weights():
                        val = self.validate()
                    row = row or {"step": self.step, "seconds": time.perf_counter() - t0}
                    row["val_loss"] = val
                    stop = self._early_stop(val)
                if row:
                    self._log(row)
                if (
                    cfg.checkpoint_every
                    and self.step % cfg.checkpoint_every == 0
                    and self.rank == 0
                ):
                    self.save_state()
        except KeyboardInterrupt:
            if self.rank == 0:
                self.save_state()
            raise
        finally:
            bar.close()
        if self.rank == 0:
            self.save_state()
        self._finish()
        return self.history  # (a process group started here ends when the process exits)

    def _train_step(self, wrapped: nn.Module, idx: torch.Tensor) -> float:
        """Take one optimiser step on the global batch `idx`; return its mean loss (all ranks)."""
        cfg = self.config
        self.optimizer.zero_grad(set_to_none=True)
        shards = self._shards(idx)
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        for i, (shard, part) in enumerate(shards):
            self._seed_noise(self._noise_seed(shard))
            last = i == len(shards) - 1
            sync = nullcontext() if last or self.world == 1 else wrapped.no_sync()  # type: ignore[operator]
            with sync:
                loss = wrapped(self._batch(part), self.step)
                (loss / len(shards)).backward()
            total += loss.detach().double()
        mean = total / len(shards)
        if self.world > 1:
            dist.all_reduce(mean)
            mean /= self.world
        value = float(mean)
        if not math.isfinite(value):
            raise DataError(
                f"loss became {value} at step {self.step}; lower the learning rate "
                f"(now {cfg.lr}) or check the data"
            )
        lr = cfg.lr_at(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.optimizer.step()
        return value

    def _early_stop(self, val: float) -> bool:
        """Track the best validation loss; return True when patience has run out."""
        if val < self._best_val:
            self._best_val, self._bad_vals = val, 0
            if self.config.patience:
                src = self.ema if self.ema is not None else self.model.state_dict()
                self._best_state = {k: v.detach().clone() for k, v in src.items()}
            return False
        self._bad_vals += 1
        return bool(self.config.patience) and self._bad_vals >= self.config.patience

    def _finish(self) -> None:
        """Leave the model with its best (early stopping) or EMA weights, in eval mode."""
        if self.config.patience and self._best_state is not None:
            self.model.load_state_dict(self._best_state)
        elif self.ema is not None:
            self.model.load_state_dict(self.ema)
        self.model.eval()


def read_training_state(path: str | Path) -> dict[str, Any]:
    """Return the training state stored at `path` (a last.pt), refusing anything but data.

    The file is read with torch's restricted unpickler (weights_only): tensors, numbers, strings,
    lists, tuples and dicts load; any other object, such as a pickle that would run code, is
    refused before it is built.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"no training state at {p}")
    if p.stat().st_size == 0:
        raise CheckpointError(f"{p} is empty (a run killed while writing it?); delete it")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"refused to load {p}: it holds Python objects other than tensors and plain values "
            f"(loading them could run code): {str(exc).splitlines()[0][:200]}"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(f"{p} is not a readable training state (corrupt or truncated): "
                              f"{str(exc).splitlines()[0][:200]}") from None
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{p} is not a gensci training state (no model weights in it)")
    return state


def train(model: nn.Module, data: torch.Tensor | Batch, **config: Any) -> list[dict[str, float]]:
    """Return the history of fitting `model` on `data` with TrainConfig(**config)."""
    from gensci.config import config_from_dict

    return Trainer(model, data, config_from_dict(TrainConfig, config)).fit()
