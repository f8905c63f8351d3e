"""Train and load the anatomy priors: a score-based diffusion model and a VAE over axial slices.

Both are core models (gensci.models) fitted by the core Trainer and saved with gensci.checkpoint;
this module only chooses their configs, feeds them slices and records where the slices came from.
The diffusion model works on u = 2x - 1 (x in [0, 1]); the VAE on x itself.
"""

from __future__ import annotations

import json
import shlex
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gensci import checkpoint
from gensci.errors import CheckpointError, ConfigError
from gensci.inverse.posterior import DiffusionPrior
from gensci.models.diffusion import DiffusionConfig, DiffusionModel
from gensci.models.vae import VAE, VAEConfig
from gensci.runtime import (
    atomic_write_text,
    barrier,
    is_main_process,
    on_main_process,
    prepare_out_dir,
)
from gensci.tomography.data import SliceSplit
from gensci.train import TrainConfig, Trainer

PRIOR_KINDS = ("diffusion", "vae")
DIFFUSION_SCALE, DIFFUSION_SHIFT = 2.0, -1.0


@dataclass
class PriorSpec:
    """What to train: the kind, its size and the optimisation schedule."""

    kind: str = "diffusion"
    resolution: int = 64
    steps: int = 4000
    batch_size: int = 16
    lr: float = 5e-4
    lr_schedule: str = "constant"  # or "cosine" (decays to 0 at schedule_steps, default steps)
    schedule_steps: int | None = None  # cosine length when training stops before its end
    ema_decay: float = 0.999
    base_channels: int = 16
    channel_mults: tuple[int, ...] = (1, 2, 2, 2)
    latent_dim: int = 32
    seed: int = 0
    checkpoint_every: int = 250
    augment: int = 0  # random affine copies of each (mirrored) training slice
    accumulate: int = 1  # micro-batches per step and process (see TrainConfig)
    window: tuple[float, float] | None = None  # HU window mapped to [0, 1] (None: data's range)

    def __post_init__(self) -> None:
        if self.augment < 0:
            raise ConfigError(f"augment={self.augment} must be >= 0")
        if self.schedule_steps is not None and (
            self.lr_schedule != "cosine" or self.schedule_steps < self.steps
        ):
            raise ConfigError(
                f"--schedule-steps {self.schedule_steps} needs --lr-schedule cosine and must be "
                f">= --steps {self.steps}"
            )
        if self.kind not in PRIOR_KINDS:
            raise ConfigError(f"unknown prior kind {self.kind!r}; choose one of {PRIOR_KINDS}")
        factor = 2 ** (len(self.channel_mults) - 1)
        if self.kind == "diffusion" and self.resolution % factor:
            raise ConfigError(
                f"resolution {self.resolution} is not divisible by {factor}, which a UNet with "
                f"channel_mults {self.channel_mults} needs"
            )


def build_model(spec: PriorSpec) -> torch.nn.Module:
    """Return an untrained core model for spec: DiffusionModel (UNet) or VAE (MLP)."""
    n = spec.resolution
    if spec.kind == "diffusion":
        return DiffusionModel(
            DiffusionConfig(
                data_shape=(1, n, n), net="unet", base_channels=spec.base_channels,
                channel_mults=tuple(spec.channel_mults), num_res_blocks=1,
            )
        )
    return VAE(
        VAEConfig(
            data_dim=n * n, latent_dim=spec.latent_dim, hidden=(512, 256),
            gaussian_std=0.05, kl_warmup_steps=min(500, spec.steps // 4),
        )
    )


def augment_slices(
    images: np.ndarray,
    copies: int,
    seed: int = 0,
    max_rotation: float = 10.0,
    scale_range: tuple[float, float] = (0.9, 1.1),
    max_shift: float = 0.04,
) -> np.ndarray:
    """Return images (S, N, N) followed by `copies` random affine copies of each: (S (1 + copies), N, N).

    Each copy rotates by U(-max_rotation, max_rotation) degrees about the centre, scales each
    axis by U(scale_range) and shifts by U(-max_shift, max_shift) N pixels (bilinear, zero
    outside): anatomy of other heads and positions, so that one template's slices teach a prior
    that generalises beyond them. Seeded; values stay in [0, 1].
    """
    from skimage.transform import AffineTransform, warp

    if copies == 0:
        return images
    rng = np.random.default_rng(seed)
    n = images.shape[-1]
    centre = np.array([(n - 1) / 2, (n - 1) / 2])
    out = [images]
    for _ in range(copies):
        batch = np.empty_like(images)
        for i, img in enumerate(images):
            angle = np.deg2rad(rng.uniform(-max_rotation, max_rotation))
            scale = rng.uniform(*scale_range, size=2)
            shift = rng.uniform(-max_shift, max_shift, size=2) * n
            to_centre = AffineTransform(translation=-centre)
            move = AffineTransform(scale=scale, rotation=angle, translation=centre + shift)
            tform = AffineTransform(matrix=move.params @ to_centre.params)
            batch[i] = warp(img, tform.inverse, order=1, mode="constant", cval=0.0,
                            preserve_range=True)
        out.append(batch)
    return np.clip(np.concatenate(out, axis=0), 0.0, 1.0).astype(images.dtype)


def training_tensor(split: SliceSplit, kind: str, augment: int = 0, seed: int = 0) -> torch.Tensor:
    """Return the training slices, their left-right mirror images and `augment` random affine
    copies of each (`augment_slices`), in the model's units.

    diffusion: (2S (1 + augment), 1, N, N) in [-1, 1]; vae: (2S (1 + augment), N * N) in [0, 1].
    """
    x = np.concatenate([split.train, split.train[:, :, ::-1]], axis=0)
    x = augment_slices(np.ascontiguousarray(x), augment, seed=seed)
    t = torch.from_numpy(np.ascontiguousarray(x)).float()
    if kind == "diffusion":
        return (DIFFUSION_SCALE * t + DIFFUSION_SHIFT)[:, None]
    return t.reshape(t.shape[0], -1)


def train_prior(
    spec: PriorSpec,
    split: SliceSplit,
    out_dir: Path,
    data_name: str,
    device: str = "auto",
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Fit the prior on split.train and write out_dir/prior.safetensors; return its path.

    Resumable: a folder holding train/last.pt from an earlier run of the same spec continues from
    it (to a larger `steps`, or to finish an interrupted run) and then replaces prior.safetensors.
    """
    out_dir = Path(out_dir)
    state = out_dir / "train" / "last.pt"
    # only rank 0 checks and writes; a folder holding a run's state resumes, --overwrite restarts
    out_dir = prepare_out_dir(out_dir, overwrite, resumable=lambda d: (d / "train/last.pt").exists())
    resuming = state.exists()
    on_main_process(_check_same_spec, out_dir / "train" / "spec.json", spec, data_name, resuming)
    torch.manual_seed(spec.seed)
    model = build_model(spec)
    data = training_tensor(split, spec.kind, spec.augment, spec.seed)
    trainer = Trainer(
        model,
        data,
        TrainConfig(
            steps=spec.steps, batch_size=spec.batch_size, lr=spec.lr,
            lr_schedule=spec.lr_schedule, schedule_steps=spec.schedule_steps,
            accumulate=spec.accumulate,
            ema_decay=spec.ema_decay if spec.kind == "diffusion" else 0.0, seed=spec.seed,
            log_every=50, checkpoint_every=spec.checkpoint_every,
            out_dir=str(out_dir / "train"), resume=True, device=device, progress=progress,
        ),
    )
    history = trainer.fit()
    losses = [row["loss"] for row in history if "loss" in row]
    meta: dict[str, Any] = {
        "kind": spec.kind,
        "resolution": spec.resolution,
        # the intensity map of the training data: a HU window [lo, hi] -> [0, 1], or None (each
        # volume / stack scaled by its own range); `check_prior_window` holds data to it
        "window": list(spec.window) if spec.window is not None else None,
        "scale": DIFFUSION_SCALE if spec.kind == "diffusion" else 1.0,
        "shift": DIFFUSION_SHIFT if spec.kind == "diffusion" else 0.0,
        "data": data_name,
        "train_z": [int(z) for z in split.train_z],
        "heldout_z": [int(z) for z in split.heldout_z],
        "n_train_images": int(data.shape[0]),
        "steps": trainer.step,
        "batch_size": spec.batch_size,
        "lr": spec.lr,
        "lr_schedule": spec.lr_schedule,
        "schedule_steps": spec.schedule_steps,
        "base_channels": spec.base_channels,
        "channel_mults": list(spec.channel_mults),
        "seed": spec.seed,
        "augment": spec.augment,
        "final_loss": losses[-1] if losses else None,
        "first_loss": losses[0] if losses else None,
        "command": " ".join(shlex.quote(a) for a in sys.argv),
    }
    model.to("cpu")
    path = out_dir / "prior.safetensors"
    if is_main_process():
        checkpoint.save(model, path, overwrite=True, metadata=meta)
    barrier()
    return path


def _check_same_spec(path: Path, spec: PriorSpec, data_name: str, resuming: bool) -> None:
    """Record the spec of a new run; refuse to resume a run that was started with another one."""
    current = {**asdict(spec), "data": data_name}
    current["channel_mults"] = list(spec.channel_mults)
    current["window"] = list(spec.window) if spec.window is not None else None
    current.pop("steps")
    current.pop("checkpoint_every")
    current.pop("accumulate")  # the Trainer checks the shards of each step itself
    if resuming and path.exists():
        saved = json.loads(path.read_text())
        # a setting added after the run was started counts as its default
        defaults = asdict(PriorSpec())
        changed = {
            k: (saved.get(k, defaults.get(k)), v)
            for k, v in current.items()
            if saved.get(k, defaults.get(k)) != v
        }
        if changed:
            raise ConfigError(
                f"{path.parent.parent} holds a run started with other settings "
                f"(setting: (then, now)) {changed}; use another --out or the same settings"
            )
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(current, indent=1), overwrite=True)


SHIPPED_DIR = Path(__file__).parent / "data"


def shipped_prior(resolution: int, window: tuple[float, float] | None = None) -> Path | None:
    """Return the diffusion prior shipped with gensci for this resolution, or None.

    Data in a HU window (CT simulated with --window) get the shipped CT prior of that resolution
    when its metadata holds the same window (`prior-ct-N.safetensors`); all other data the
    MNI152 prior (`prior-N.safetensors`, 64 and 128).
    """
    if window is not None:
        ct = SHIPPED_DIR / f"prior-ct-{resolution}.safetensors"
        if ct.is_file():
            stored = checkpoint.load_metadata(ct).get("window")
            if stored is not None and np.allclose(stored, window, rtol=1e-6, atol=1e-6):
                return ct
    path = SHIPPED_DIR / f"prior-{resolution}.safetensors"
    return path if path.is_file() else None


def tuned_dds_lam(path: Path) -> float | None:
    """Return the DDS proximal weight chosen for the prior at path on its validation slices
    (metadata `dds_lam`, written when it was measured), or None."""
    value = checkpoint.load_metadata(path).get("dds_lam")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise CheckpointError(f"{path}: metadata 'dds_lam' is {value!r}, not a positive number")
    return float(value)


def load_diffusion_prior(path: Path, resolution: int, device: torch.device) -> DiffusionPrior:
    """Return the diffusion prior at path; raise CheckpointError if it is not one for resolution."""
    meta = checkpoint.load_metadata(path)
    model = checkpoint.load(path, device=device)
    if not isinstance(model, DiffusionModel):
        raise CheckpointError(f"{path} holds a {type(model).__name__}, not a diffusion prior")
    got = model.config.data_shape
    if tuple(got) != (1, resolution, resolution):
        raise CheckpointError(
            f"prior {path} was trained at {got[-2]}x{got[-1]} but the image is "
            f"{resolution}x{resolution}; train a prior at this resolution (gensci ct train-prior "
            f"--resolution {resolution}) or reconstruct at {got[-1]}"
        )
    scale, shift = meta.get("scale", DIFFUSION_SCALE), meta.get("shift", DIFFUSION_SHIFT)
    for name, value in (("scale", scale), ("shift", shift)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            raise CheckpointError(f"{path}: metadata {name!r} is {value!r}, not a number")
    if scale == 0:
        raise CheckpointError(f"{path}: metadata 'scale' is 0")
    return DiffusionPrior(model=model, scale=float(scale), shift=float(shift))


def _window_text(window: tuple[float, float] | None, intensity: str | None = None) -> str:
    if window is not None:
        return f"window [{window[0]:g}, {window[1]:g}]"
    scale = f" ({intensity} scale)" if intensity and intensity != "window" else ""
    return f"no window{scale}"


def check_prior_window(
    path: Path,
    intensity: str | None,
    window: tuple[float, float] | None,
    force: bool = False,
) -> str | None:
    """Return a note for the user, or None, after holding data to the prior's intensity window.

    The prior's metadata `window` ([lo, hi], or null for data scaled by their own range) must
    equal the data's (`intensity` 'window' with `window`; 'own' or 'normalise': no window). A
    mismatch raises DataError naming both, unless `force` (then the note warns). A prior written
    before windows were recorded, or data that store no intensity map: 'window unknown', not
    checked.
    """
    meta = checkpoint.load_metadata(path)
    if "window" not in meta:
        return f"prior {path}: window unknown (not recorded in its metadata); not checked"
    raw = meta["window"]
    prior_window: tuple[float, float] | None = None
    if raw is not None:
        ok = (
            isinstance(raw, list) and len(raw) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in raw)
            and raw[0] < raw[1]
        )
        if not ok:
            raise CheckpointError(f"{path}: metadata 'window' is {raw!r}, not [lo, hi]")
        prior_window = (float(raw[0]), float(raw[1]))
    if intensity is None:
        return (
            f"data window unknown (the sinogram stores no intensity map); prior {path} expects "
            f"{_window_text(prior_window)}"
        )
    data_window = window if intensity == "window" else None
    if prior_window is None and data_window is None:
        return None
    if (
        prior_window is not None
        and data_window is not None
        and np.allclose(prior_window, data_window, rtol=1e-6, atol=1e-6)
    ):
        return None
    message = (
        f"prior {path} was trained on {_window_text(prior_window)} but the data have "
        f"{_window_text(data_window, intensity)}; simulate the data with the prior's window "
        "(--window LO,HI) or give --force-window"
    )
    if force:
        return f"warning (--force-window): {message.split('; ')[0]}"
    from gensci.errors import DataError

    raise DataError(message)


def load_vae_prior(path: Path, resolution: int, device: torch.device) -> VAE:
    """Return the VAE prior at path; raise CheckpointError if it is not one for resolution."""
    model = checkpoint.load(path, device=device)
    if not isinstance(model, VAE):
        raise CheckpointError(f"{path} holds a {type(model).__name__}, not a VAE prior")
    if model.config.data_dim != resolution * resolution:
        side = int(round(model.config.data_dim**0.5))
        raise CheckpointError(
            f"VAE prior {path} was trained at {side}x{side} but the image is "
            f"{resolution}x{resolution}"
        )
    return model
