"""The `gensci style` commands: train, interpolate, transfer, normalize, study."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from gensci.runtime import AccumulateOption, DeviceOption, OverwriteOption, SeedOption

app = typer.Typer(
    help="Style apart from content: AdaIN generators, style interpolation, stain normalisation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

MODEL_KINDS = ("adain", "entangled", "transfer")
METHODS = ("adain", "reinhard", "macenko")
STATISTICS = ("slide", "tile")


@app.command("train")
def train_cmd(
    out: Annotated[Path, typer.Option("--out", help="output folder (the model file)")],
    model: Annotated[
        str,
        typer.Option(
            "--model",
            help="adain | entangled (generators on the shapes data) | "
            "transfer (AdaIN transfer net on re-stained tissue tiles)",
        ),
    ] = "adain",
    steps: Annotated[int, typer.Option("--steps", help="steps (transfer: decoder steps)")] = 1500,
    ae_steps: Annotated[
        int, typer.Option("--ae-steps", help="transfer: autoencoder steps of the encoder")
    ] = 600,
    n_images: Annotated[int, typer.Option("--n-images", help="training images / tiles")] = 4000,
    size: Annotated[int, typer.Option("--size", help="image side (multiple of 4)")] = 32,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 32,
    lr: Annotated[float, typer.Option("--lr")] = 2e-3,
    kl_weight: Annotated[float, typer.Option("--kl-weight")] = 1.0,
    accumulate: AccumulateOption = 1,
    seed: SeedOption = 0,
    device: DeviceOption = "auto",
    overwrite: OverwriteOption = False,
) -> None:
    """Train a style generator (per-layer AdaIN, or its entangled twin of the same size) on the
    shapes data, or the AdaIN transfer net on re-stained tissue tiles, with the core Trainer;
    write OUT/generator.safetensors or OUT/transfer.safetensors and provenance.json."""
    from dataclasses import asdict, replace

    import torch

    from gensci import checkpoint
    from gensci.errors import ConfigError
    from gensci.models.style import AdaINTransferConfig, matched_entangled_config, n_parameters
    from gensci.runtime import (
        atomic_write_text,
        init_distributed,
        is_main_process,
        prepare_out_dir,
        resolve_device,
    )
    from gensci.style.data import make_shapes
    from gensci.style.study import Scale, generator_config, stain_training_tiles, train_config
    from gensci.style.task import GENERATOR_FILE, TRANSFER_FILE, train_generator, train_transfer

    dev = resolve_device(device)
    init_distributed(dev)  # under torchrun: before any rank looks at --out
    if model not in MODEL_KINDS:
        raise ConfigError(f"unknown --model {model!r}; choose one of {MODEL_KINDS}")
    if size % 4 or size < 16:
        raise ConfigError(f"--size must be a multiple of 4 and >= 16, got {size}")
    from gensci import budget

    budget.check_need(
        budget.style_train_need(n_images, size, batch_size),
        f"style train of {n_images} images of {size} x {size}",
        "lower --n-images, --size or --batch-size",
        dev,
    )
    scale = Scale(
        size=size,
        n_train=n_images,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        kl_weight=kl_weight,
        tile=size,
        n_tiles=n_images,
        ae_steps=ae_steps,
        decoder_steps=steps,
    )
    prepare_out_dir(
        out,
        overwrite,
        resumable=lambda d: any(
            (d / s / "last.pt").exists() for s in (".", "autoencoder", "decoder")
        ),
    )
    tc = replace(
        train_config(scale, seed, str(dev), is_main_process(), str(out)), accumulate=accumulate
    )
    command = (
        f"gensci style train --model {model} --steps {steps} --n-images {n_images} "
        f"--size {size} --batch-size {batch_size} --lr {lr:g} --seed {seed}"
    )
    net: torch.nn.Module
    record: dict[str, Any]
    if model == "transfer":
        command += f" --ae-steps {ae_steps}"
        tiles = stain_training_tiles(scale, seed)
        cfg = AdaINTransferConfig()
        net, losses = train_transfer(
            cfg, tiles, ae_steps, steps, replace(tc, lr_schedule="constant")
        )
        record = {
            "data": "skimage.data.immunohistochemistry, left half, re-stained tiles",
            "final_losses": losses,
            "config": asdict(net.config),
        }
        path = out / TRANSFER_FILE
    else:
        shapes = make_shapes(n_images, size, seed)
        gcfg = generator_config(scale)
        if model == "entangled":
            gcfg = matched_entangled_config(gcfg)
        net, history = train_generator(gcfg, shapes.images, shapes.masks, tc)
        record = {
            "data": f"gensci.style.data.make_shapes({n_images}, {size}, seed={seed})",
            "final_loss": history[-1]["loss"] if history else None,
            "config": asdict(gcfg),
        }
        path = out / GENERATOR_FILE
    if not is_main_process():
        return
    record.update(
        {
            "kind": model,
            "parameters": n_parameters(net),
            "steps": steps,
            "seed": seed,
            "command": command,
        }
    )
    checkpoint.save(net.cpu(), path, overwrite=True, metadata=record)
    atomic_write_text(out / "provenance.json", json.dumps(record, indent=2, default=str), True)
    typer.echo(f"{model} model ({record['parameters']} parameters) -> {path}")


def _load(model: Path, kind: str, device: str):  # type: ignore[no-untyped-def]
    from gensci.models.style import AdaINTransfer, StyleGenerator
    from gensci.style.task import load_model

    return load_model(model, StyleGenerator if kind == "generator" else AdaINTransfer, device)


@app.command("interpolate")
def interpolate_cmd(
    model: Annotated[Path, typer.Argument(help="a style generator (file or its folder)")],
    out: Annotated[Path, typer.Option("--out", help="output strip (.png)")],
    image_a: Annotated[
        Path | None, typer.Option("--image-a", help="style image A (PNG/TIFF); with --image-b")
    ] = None,
    image_b: Annotated[Path | None, typer.Option("--image-b", help="style image B")] = None,
    seed_a: Annotated[
        int, typer.Option("--seed-a", help="style code A ~ N(0, I) from this seed")
    ] = 1,
    seed_b: Annotated[int, typer.Option("--seed-b", help="style code B from this seed")] = 2,
    content: Annotated[
        Path | None,
        typer.Option(
            "--content", help="content mask image (default: a rendered shape drawn from --seed)"
        ),
    ] = None,
    frames: Annotated[int, typer.Option("--frames", help="frames from A to B")] = 9,
    seed: SeedOption = 0,
    device: DeviceOption = "auto",
    overwrite: OverwriteOption = False,
) -> None:
    """Interpolate between two style codes (or the codes of two images) with the content fixed;
    write the strip of frames as one PNG."""
    import torch

    from gensci.errors import ConfigError
    from gensci.files import check_suffix
    from gensci.runtime import check_writable, resolve_device
    from gensci.style.data import make_shapes
    from gensci.style.io import read_mask, read_rgb, write_png
    from gensci.style.task import interpolate, style_code

    check_suffix(out, (".png",), "the strip")
    check_writable(out, overwrite)
    if (image_a is None) != (image_b is None):
        raise ConfigError("give both --image-a and --image-b, or neither (codes from --seed-a/-b)")
    dev = str(resolve_device(device))
    g = _load(model, "generator", dev)
    c = g.config
    if c.content_channels != 1:
        raise ConfigError(
            f"{model} takes {c.content_channels} content channels; this command gives it one mask"
        )
    size = c.image_size
    mask = (
        read_mask(content, size) if content is not None else make_shapes(1, size, seed).masks[0, 0]
    )
    m = torch.from_numpy(mask)[None, None].to(dev)
    if image_a is not None and image_b is not None:
        imgs = []
        for p in (image_a, image_b):
            x = read_rgb(p, "style image")
            if x.shape[:2] != (size, size):
                raise ConfigError(
                    f"style image {p} is {x.shape[0]} x {x.shape[1]}; the model "
                    f"takes {size} x {size}"
                )
            imgs.append(torch.from_numpy(x.transpose(2, 0, 1).copy()).float()[None])
        z = style_code(g, torch.cat(imgs).to(dev))
        za, zb = z[:1], z[1:]
    else:
        za = torch.randn(1, c.latent_dim, generator=torch.Generator().manual_seed(seed_a))
        zb = torch.randn(1, c.latent_dim, generator=torch.Generator().manual_seed(seed_b))
        za, zb = za.to(dev), zb.to(dev)
    f = interpolate(g, m, za, zb, frames, seed)[:, 0].clamp(0, 1).cpu().numpy()
    strip = np.concatenate(list(f.transpose(0, 2, 3, 1)), axis=1)
    write_png(out, strip, overwrite)
    typer.echo(f"{frames} frames -> {out}")


@app.command("transfer")
def transfer_cmd(
    content: Annotated[Path, typer.Argument(help="content image (PNG/TIFF, RGB)")],
    style: Annotated[Path, typer.Argument(help="style image (PNG/TIFF, RGB)")],
    model: Annotated[Path, typer.Option("--model", help="AdaIN transfer net (file or folder)")],
    out: Annotated[Path, typer.Option("--out", help="output folder (transfer.png)")],
    alpha: Annotated[float, typer.Option("--alpha", help="style strength in [0, 1]")] = 1.0,
    device: DeviceOption = "auto",
    overwrite: OverwriteOption = False,
) -> None:
    """Render CONTENT in the style of STYLE with AdaIN (Huang & Belongie 2017); any size whose
    sides the network accepts; write OUT/transfer.png."""
    from gensci.runtime import prepare_out_dir, resolve_device
    from gensci.style.io import read_rgb, write_png
    from gensci.style.task import adain_normalize

    dev = str(resolve_device(device))
    net = _load(model, "transfer", dev)
    c, s = read_rgb(content, "content image"), read_rgb(style, "style image")
    import torch

    net.check_image(torch.zeros(1, 3, *c.shape[:2]), f"content image {content}")
    net.check_image(torch.zeros(1, 3, *s.shape[:2]), f"style image {style}")
    prepare_out_dir(out, overwrite)
    write_png(out / "transfer.png", adain_normalize(net, c, s, alpha), overwrite=True)
    typer.echo(f"wrote {out / 'transfer.png'}")


@app.command("normalize")
def normalize_cmd(
    tiles: Annotated[Path, typer.Argument(help="folder of tissue tiles of one slide (PNG/TIFF)")],
    reference: Annotated[
        Path,
        typer.Option(
            "--reference",
            help="reference tile, or a folder of tiles of the "
            "reference slide (the target stain; their pixels are pooled)",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="output folder of normalised tiles (PNG)")],
    method: Annotated[str, typer.Option("--method", help="adain | reinhard | macenko")] = "adain",
    model: Annotated[
        Path | None,
        typer.Option(
            "--model",
            help="adain: an AdaIN transfer net; its feature "
            "statistics replace the optical-density ones",
        ),
    ] = None,
    statistics: Annotated[
        str,
        typer.Option(
            "--statistics",
            help="slide: the source statistics pooled over every "
            "tile of TILES | tile: each tile's own",
        ),
    ] = "slide",
    device: DeviceOption = "auto",
    overwrite: OverwriteOption = False,
) -> None:
    """Normalise every tile of a folder to the stain of the reference tile(s); write
    OUT/<name>.png. adain (default): AdaIN with the channel covariance on optical densities, the
    statistics of the tissue pixels pooled over the reference tiles and over the folder's tiles."""
    import torch

    from gensci.errors import ConfigError, DataError
    from gensci.runtime import prepare_out_dir, resolve_device
    from gensci.style.io import list_images, read_rgb, write_png
    from gensci.style.task import (
        adain_normalize,
        adain_stain,
        macenko,
        net_moments,
        reinhard,
        stain_moments,
    )

    if method not in METHODS:
        raise ConfigError(f"unknown --method {method!r}; choose one of {METHODS}")
    if statistics not in STATISTICS:
        raise ConfigError(f"unknown --statistics {statistics!r}; choose one of {STATISTICS}")
    if model is not None and method != "adain":
        raise ConfigError(f"--model is for --method adain, not {method!r}")
    files = list_images(tiles)
    ref_files = list_images(reference) if reference.is_dir() else [reference]
    refs = [read_rgb(f, "reference tile") for f in ref_files]
    net = _load(model, "transfer", str(resolve_device(device))) if model is not None else None
    images = [read_rgb(f, "tile") for f in files]  # refuse a bad tile before writing anything
    if net is not None:
        for f, x in zip([*ref_files, *files], [*refs, *images], strict=True):
            net.check_image(torch.zeros(1, 3, *x.shape[:2]), f"tile {f}")
    pooled = statistics == "slide"
    if net is not None:  # the feature statistics, once for the folder
        net_ref = net_moments(net, refs, f"reference {reference}")
        net_src = (
            [net_moments(net, images, f"folder {tiles}")] * len(files)
            if pooled
            else [net_moments(net, x, f"tile {f}") for f, x in zip(files, images, strict=True)]
        )
    elif method == "adain":  # the statistics, refused before anything is written
        m_ref = stain_moments(refs, f"reference {reference}")
        m_src = (
            [stain_moments(images, f"folder {tiles}")] * len(files)
            if pooled
            else [stain_moments(x, f"tile {f}") for f, x in zip(files, images, strict=True)]
        )
    prepare_out_dir(out, overwrite)
    from tqdm.auto import tqdm

    for i, (f, x) in enumerate(
        tqdm(list(zip(files, images, strict=True)), desc="normalize", unit="tile")
    ):
        sources = images if pooled else None
        if net is not None:
            y = adain_normalize(net, x, refs, moments=(net_src[i], net_ref))
        elif method == "adain":
            y = adain_stain(x, m_src[i], m_ref)
        elif method == "reinhard":
            y = reinhard(x, refs, sources)
        else:
            try:
                y = macenko(x, refs, sources)
            except DataError as exc:
                raise DataError(f"tile {f} (reference {reference}): {exc}") from None
        write_png(out / f"{f.stem}.png", y, overwrite=True)
    typer.echo(
        f"{len(files)} tiles normalised ({method}, {statistics} statistics, "
        f"{len(refs)} reference tile(s)) -> {out}"
    )


@app.command("study")
def study_cmd(
    out: Annotated[Path, typer.Option("--out", help="report folder")],
    scale: Annotated[str, typer.Option("--scale", help="tiny | tour | small")] = "small",
    seed: SeedOption = 0,
    device: DeviceOption = "auto",
    overwrite: OverwriteOption = False,
) -> None:
    """Train the AdaIN generator and its entangled twin (several seeds) and the transfer net;
    measure content IoU and style monotonicity along interpolations, DCI, MIG, PPL, and stain
    normalisation against Reinhard and Macenko; write report.json, report.md and PNG figures."""
    from gensci.errors import ConfigError
    from gensci.runtime import prepare_out_dir, resolve_device
    from gensci.style.study import SCALES, markdown_summary, run_study

    if scale not in SCALES:
        raise ConfigError(f"unknown --scale {scale!r}; choose one of {tuple(SCALES)}")
    dev = str(resolve_device(device))
    prepare_out_dir(out, overwrite)
    report = run_study(out, scale, seed=seed, device=dev, progress=True)
    from gensci.report.records import record_style

    record_style(out, report)  # the report section: `gensci report` renders this folder
    typer.echo(markdown_summary(report))
    typer.echo(f"report in {out}")
