"""The `gensci symmetry` commands: train, recover, study."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from gensci.runtime import AccumulateOption, DeviceOption, OverwriteOption, SeedOption

app = typer.Typer(
    help="Rotation-equivariant generators as priors: fewer measurements, fewer training images.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.command("train")
def train_cmd(
    data: Annotated[
        str, typer.Option("--data", help="digits | galaxies | galaxies-raw | galaxies-isolated | "
                          "a folder of .npy/.png images")
    ],
    out: Annotated[Path, typer.Option("--out", help="output folder (model.safetensors)")],
    group: Annotated[str, typer.Option("--group", help="C4 (equivariant) | plain")] = "C4",
    channels: Annotated[
        str, typer.Option("--channels", help="fields per level, coarse to fine (C4 widths)")
    ] = "16,8",
    latent_fields: Annotated[
        int, typer.Option("--latent-fields", help="C4 latent fields F (d = 4 F)")
    ] = 8,
    n_train: Annotated[
        int | None, typer.Option("--n-train", help="use only the first N training images")
    ] = None,
    steps: Annotated[int, typer.Option("--steps")] = 1500,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 32,
    lr: Annotated[float, typer.Option("--lr")] = 2e-3,
    kl_weight: Annotated[float, typer.Option("--kl-weight")] = 0.25,
    checkpoint_every: Annotated[int, typer.Option("--checkpoint-every")] = 250,
    accumulate: AccumulateOption = 1,
    seed: SeedOption = 0,
    device: DeviceOption = "auto",
    overwrite: OverwriteOption = False,
) -> None:
    """Train a C4-equivariant generator (or its plain twin of the same size) with the core
    Trainer; write OUT/model.safetensors with its provenance. Rerun to resume."""
    from dataclasses import asdict, replace

    from gensci.errors import ConfigError
    from gensci.models.equivariant import matched_plain_config, n_parameters
    from gensci.runtime import init_distributed, is_main_process, prepare_out_dir, resolve_device
    from gensci.symmetry.data import load_images, split
    from gensci.symmetry.model import MODEL_FILE, heldout_elbo, save_generator, train_generator
    from gensci.symmetry.study import Scale, model_configs, train_config

    init_distributed(resolve_device(device))  # under torchrun: before any rank looks at --out
    if group not in ("C4", "plain"):
        raise ConfigError(f"unknown --group {group!r}; choose C4 or plain")
    try:
        widths = tuple(int(c) for c in channels.split(",") if c.strip())
    except ValueError:
        widths = ()
    if not widths or min(widths) < 1:
        raise ConfigError(f"--channels must be positive integers like 16,8; got {channels!r}")
    images = load_images(data, seed)
    scale = Scale(channels=widths, latent_fields=latent_fields, kl_weight=kl_weight,
                  steps=steps, batch_size=batch_size, lr=lr)
    c4 = model_configs(images.size, scale)["C4"]
    config = c4 if group == "C4" else matched_plain_config(c4)
    sp = split(len(images), seed=seed)
    if n_train is not None and n_train > len(sp.train):
        raise ConfigError(
            f"--n-train {n_train} exceeds the {len(sp.train)} training images of {data} "
            f"({len(images)} images less the validation and test splits)"
        )
    train_idx = sp.train if n_train is None else sp.train[:n_train]
    prepare_out_dir(out, overwrite, resumable=lambda d: (d / "last.pt").exists())
    _refuse_another_model(out, asdict(config))
    tc = replace(train_config(scale, seed, device, progress=is_main_process(), out_dir=str(out)),
                 checkpoint_every=checkpoint_every, accumulate=accumulate)
    model, record = train_generator(images.images[train_idx], images.images[sp.val], config, tc)
    if not is_main_process():
        return
    test = images.images[sp.test]
    record.update({
        "data": data, "n_images": len(images), "parameters": n_parameters(model),
        "heldout_elbo_nats": heldout_elbo(model, test), "config": asdict(config),
        "command": "gensci symmetry train " + " ".join(
            [f"--data {data}", f"--group {group}", f"--channels {channels}",
             f"--latent-fields {latent_fields}", f"--steps {steps}", f"--seed {seed}"]
            + ([f"--n-train {n_train}"] if n_train is not None else [])),
    })
    save_generator(model, out / MODEL_FILE, record, overwrite=True)
    from gensci.runtime import atomic_write_text

    atomic_write_text(out / "provenance.json", json.dumps(record, indent=2, default=str), True)
    typer.echo(f"{group} generator ({record['parameters']} parameters, d = {config.latent_dim}) "
               f"on {len(train_idx)} images: held-out ELBO {record['heldout_elbo_nats']:.1f} "
               f"nats/image -> {out / MODEL_FILE}")


def _refuse_another_model(out: Path, config: dict) -> None:
    """Keep the model config of a run in out/generator_config.json; raise ConfigError if a run
    resumed from out asks for another model (before the Trainer meets mismatched weights)."""
    from gensci.errors import ConfigError
    from gensci.files import parse_json_object, read_text
    from gensci.runtime import atomic_write_text, is_main_process

    path = out / "generator_config.json"
    if (out / "last.pt").exists() and path.exists():
        saved = parse_json_object(read_text(path, "generator config"), str(path))
        plain = json.loads(json.dumps(config))
        changed = {k: (saved.get(k), v) for k, v in plain.items() if saved.get(k) != v}
        if changed:
            diff = ", ".join(f"{k}: {a} -> {b}" for k, (a, b) in changed.items())
            raise ConfigError(
                f"{out} holds a run of another model ({diff}); resume with the same settings, "
                "or start over with --overwrite or another --out"
            )
    elif is_main_process():
        atomic_write_text(path, json.dumps(config), overwrite=True)


def _read_measurements(path: Path, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Return (A: (m, n), y: (B, m), truth: (B, size, size) or None) from a .npz file."""
    from gensci.errors import DataError, FormatError, ShapeError, check_numeric
    from gensci.files import check_input_file, require_keys

    check_input_file(path, "measurement file")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (ValueError, OSError, EOFError) as exc:
        raise FormatError(f"{path} is not a readable .npz file: {str(exc)[:200]}") from None
    require_keys(arrays, ["A", "y"], str(path), FormatError)
    if arrays["A"].ndim == 2 and arrays["A"].shape[0] == 0:
        raise DataError(f"{path}:A has m = 0 rows: at least one measurement is needed")
    a = check_numeric(arrays["A"], f"{path}:A", ndim=2)
    y = check_numeric(arrays["y"], f"{path}:y", ndim=(1, 2))
    y = y[None] if y.ndim == 1 else y
    if y.shape[1] != a.shape[0]:
        raise ShapeError(
            f"{path}: A has {a.shape[0]} rows (measurements) but y has {y.shape[1]} entries "
            "per image; they must match"
        )
    if a.shape[1] != size * size:
        raise ShapeError(
            f"{path}:A has {a.shape[1]} columns but the model makes {size} x {size} = "
            f"{size * size}-pixel images"
        )
    truth = None
    if "x" in arrays:
        truth = check_numeric(arrays["x"], f"{path}:x", ndim=(2, 3))
        truth = truth[None] if truth.ndim == 2 else truth
        if truth.shape != (y.shape[0], size, size):
            raise ShapeError(
                f"{path}:x has shape {arrays['x'].shape}; expected ({size}, {size}) or "
                f"({y.shape[0]}, {size}, {size}) to match y"
            )
    return a, y, truth


@app.command("recover")
def recover_cmd(
    model: Annotated[Path, typer.Argument(help="generator (model.safetensors or its folder)")],
    measurements: Annotated[
        Path, typer.Option("--measurements", help=".npz with A (m, n), y (m,) or (B, m), "
                           "optionally the truth x (H, W) or (B, H, W)")
    ],
    out: Annotated[Path, typer.Option("--out", help="output .npz (x_hat, errors)")],
    noise_std: Annotated[float, typer.Option("--noise-std", help="noise std of y")] = 0.01,
    steps: Annotated[int, typer.Option("--steps", help="Adam steps of the latent MAP")] = 300,
    restarts: Annotated[int, typer.Option("--restarts")] = 3,
    baseline: Annotated[
        bool, typer.Option("--baseline", help="also solve by Lasso in a Haar basis")
    ] = False,
    seed: SeedOption = 0,
    device: DeviceOption = "auto",
    overwrite: OverwriteOption = False,
) -> None:
    """Recover images from y = A x + noise by latent MAP under the generator (Bora et al. 2017);
    report each fit's residual against the noise level, and the error if the truth is given."""
    import torch

    from gensci.files import check_suffix
    from gensci.runtime import atomic_save, check_writable, resolve_device
    from gensci.symmetry.model import load_generator
    from gensci.symmetry.task import (
        GaussianMeasurement,
        lasso_haar,
        recover_latent,
        relative_error,
    )

    check_suffix(out, (".npz",), "the recovery")
    check_writable(out, overwrite)
    dev = resolve_device(device)
    g = load_generator(model, device=str(dev))
    size = g.config.image_size
    a, y, truth = _read_measurements(measurements, size)
    op = GaussianMeasurement(torch.from_numpy(a).float().to(dev), size)
    yt = torch.from_numpy(y).float().to(dev)
    rec = recover_latent(g, op, yt, noise_std, steps=steps, restarts=restarts, seed=seed,
                         progress=True)
    arrays: dict[str, np.ndarray] = {
        "x_hat": rec.x_hat[:, 0].cpu().numpy(), "noise_residual": rec.residual.cpu().numpy(),
    }
    for i, r in enumerate(arrays["noise_residual"]):
        flag = "" if r < 2 else "  (well above the noise: the image may lie outside the prior)"
        typer.echo(f"image {i}: residual {r:.2f} x noise level{flag}")
    if baseline:
        x_l = lasso_haar(op, yt, 0.01)
        arrays["x_lasso"] = x_l[:, 0].cpu().numpy()
    if truth is not None:
        x = torch.from_numpy(truth).float()[:, None].to(dev)
        err = relative_error(rec.x_hat, x).cpu().numpy()
        arrays["relative_error"] = err
        typer.echo(f"relative error: median {np.median(err):.3f} (success < 0.1: "
                   f"{np.mean(err < 0.1):.0%})")
        if baseline:
            err_l = relative_error(x_l, x).cpu().numpy()
            arrays["relative_error_lasso"] = err_l
            typer.echo(f"Lasso (Haar) relative error: median {np.median(err_l):.3f}")
            if np.median(err_l) < np.median(err):
                typer.echo("the Lasso baseline beats the generative prior on these images")
    typer.echo(f"recovery: {rec.seconds:.3f} s per image on {dev}")

    def writer(p: Path) -> None:
        with open(p, "wb") as fh:
            np.savez_compressed(fh, **arrays)

    atomic_save(out, writer, overwrite=overwrite)
    typer.echo(f"wrote {out}")


@app.command("study")
def study_cmd(
    out: Annotated[Path, typer.Option("--out", help="report folder")],
    data: Annotated[
        str, typer.Option("--data", help="digits | galaxies[-raw|-isolated] | a folder")
    ] = "digits",
    scale: Annotated[str, typer.Option("--scale", help="tiny | small")] = "small",
    seed: SeedOption = 0,
    device: DeviceOption = "auto",
    overwrite: OverwriteOption = False,
) -> None:
    """Train both generators, measure equivariance and compressed-sensing success vs m against
    Lasso; write report.json, report.md and success_vs_m.png."""
    from gensci.errors import ConfigError
    from gensci.runtime import prepare_out_dir, resolve_device
    from gensci.symmetry.study import SCALES, markdown_summary, run_study

    if scale not in SCALES:
        raise ConfigError(f"unknown --scale {scale!r}; choose one of {tuple(SCALES)}")
    dev = str(resolve_device(device))
    prepare_out_dir(out, overwrite)
    report = run_study(data, out, scale, seed=seed, device=dev, progress=True)
    from gensci.report.records import record_symmetry

    record_symmetry(out, report)  # the report section: `gensci report` renders this folder
    typer.echo(markdown_summary(report))
    typer.echo(f"report in {out}")
