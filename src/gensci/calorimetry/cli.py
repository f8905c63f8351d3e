"""The `gensci calo` commands: simulate, train, generate, evaluate, study."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from gensci.runtime import AccumulateOption, DeviceOption, OverwriteOption, SeedOption

app = typer.Typer(
    help="Fast calorimeter simulation: autoregressive vs one-shot parallel shower generators, "
         "measured like the CaloChallenge.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

H5 = (".h5", ".hdf5")


def _shard_path(out: Path, rank: int, world: int) -> Path:
    return out.parent / f"{out.stem}.shard{rank}of{world}.h5"


def _write_sharded(out: Path, n: int, seed: int, make, geometry, overwrite: bool,  # type: ignore[no-untyped-def]
                   attrs: dict) -> Path:
    """Write n showers made by make(start, stop, seed_sequence) -> (energies, showers) to out.

    Under torchrun each rank makes its own share with its own seed stream into its own shard
    (OUT stem + .shardRofW.h5), and rank 0 joins the shards in OUT as virtual datasets."""
    import torch.distributed as dist

    from gensci.calorimetry.io import write_showers, write_virtual
    from gensci.runtime import barrier, check_writable

    world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    if world == 1:
        e, x = make(0, n, np.random.SeedSequence(seed))
        return write_showers(out, e, x, geometry, overwrite, attrs)
    rank = dist.get_rank()
    streams = np.random.SeedSequence(seed).spawn(world)
    bounds = np.linspace(0, n, world + 1).astype(int)
    e, x = make(int(bounds[rank]), int(bounds[rank + 1]), streams[rank])
    shard = _shard_path(out, rank, world)
    check_writable(shard, overwrite)
    write_showers(shard, e, x, geometry, overwrite, {**attrs, "shard": f"{rank} of {world}"})
    barrier()
    if rank == 0:
        write_virtual(out, [_shard_path(out, r, world) for r in range(world)], geometry,
                      overwrite, attrs)
    barrier()
    return out


@app.command("simulate")
def simulate_cmd(
    out: Annotated[Path, typer.Option("--out", help="output HDF5 file (CaloChallenge layout)")],
    n: Annotated[int, typer.Option("--n", "--n-showers", help="number of showers (spell it "
                                   "--n-showers under torchrun)")] = 10_000,
    geometry: Annotated[str, typer.Option("--geometry", help="ds1-photon | ds2")] = "ds1-photon",
    e_min: Annotated[float, typer.Option("--e-min", help="lowest incident energy, MeV")] = 1e3,
    e_max: Annotated[float, typer.Option("--e-max", help="highest incident energy, MeV")] = 1e5,
    seed: SeedOption = 0,
    device: DeviceOption = "auto",
    overwrite: OverwriteOption = False,
) -> None:
    """Simulate showers with the GFlash-style truth simulator (log-uniform incident energies)
    and write them in the CaloChallenge HDF5 layout. Shards under torchrun."""
    from gensci import budget
    from gensci.calorimetry.geometry import get_geometry
    from gensci.calorimetry.simulate import SimulatorConfig, simulate
    from gensci.files import check_suffix
    from gensci.runtime import check_writable, init_distributed, resolve_device

    init_distributed(resolve_device(device))
    check_suffix(out, H5, "the shower file")
    check_writable(out, overwrite)
    geo = get_geometry(geometry)
    what = f"calo simulate of {n} {geometry} showers"
    budget.check_need(budget.calo_showers_need(n, geo.n_voxels), what, "lower --n")
    budget.check_disk(budget.calo_file_bytes(n, geo.n_voxels), out, what, "lower --n")
    sim = SimulatorConfig(e_min=e_min, e_max=e_max)

    def make(start: int, stop: int, stream: np.random.SeedSequence):  # type: ignore[no-untyped-def]
        s = simulate(stop - start, geo, sim, seed=stream, progress=True)
        return s.incident, s.showers

    attrs = {"source": "gensci GFlash-style simulator", "threshold_mev": sim.threshold,
             "noise_mev": sim.noise, "seed": seed, "e_min_mev": e_min, "e_max_mev": e_max}
    _write_sharded(out, n, seed, make, geo, overwrite, attrs)
    typer.echo(f"wrote {n} {geometry} showers ({geo.n_voxels} voxels) to {out}")


def _parse_hidden(text: str) -> tuple[int, ...]:
    from gensci.errors import ConfigError

    try:
        widths = tuple(int(h) for h in text.split(",") if h.strip())
    except ValueError:
        widths = ()
    if not widths or min(widths) < 1 or max(widths) > 8192:
        raise ConfigError(f"--hidden must be positive widths like 256,256,256; got {text!r}")
    return widths


@app.command("train")
def train_cmd(
    data: Annotated[Path, typer.Argument(help="training showers (CaloChallenge HDF5)")],
    out: Annotated[Path, typer.Option("--out", help="output folder (model.safetensors)")],
    model: Annotated[
        str, typer.Option("--model", help="ar | parallel | correlated | diffusion")
    ] = "ar",
    steps: Annotated[int, typer.Option("--steps")] = 3000,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 256,
    lr: Annotated[float, typer.Option("--lr")] = 1e-3,
    hidden: Annotated[str, typer.Option("--hidden", help="MLP widths")] = "256,256,256",
    sampler_steps: Annotated[
        int | None, typer.Option("--sampler-steps", help="DDIM steps of the diffusion model "
                                 "(default 10)")
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="use the first N showers")] = None,
    checkpoint_every: Annotated[int, typer.Option("--checkpoint-every")] = 500,
    accumulate: AccumulateOption = 1,
    seed: SeedOption = 0,
    device: DeviceOption = "auto",
    overwrite: OverwriteOption = False,
) -> None:
    """Train an energy-conditioned shower generator with the core Trainer (10 % of the showers
    held out for validation); write OUT/model.safetensors with its provenance. Rerun to resume."""
    from dataclasses import asdict

    from gensci.calorimetry.io import read_showers
    from gensci.calorimetry.model import MODEL_FILE, MODELS, save_model, train_model
    from gensci.calorimetry.study import model_config, split_indices, train_config
    from gensci.errors import ConfigError
    from gensci.runtime import (
        atomic_write_text,
        init_distributed,
        is_main_process,
        prepare_out_dir,
        resolve_device,
    )

    init_distributed(resolve_device(device))
    if model not in MODELS:
        raise ConfigError(f"unknown --model {model!r}; choose one of {tuple(MODELS)}")
    widths = _parse_hidden(hidden)
    energies, showers, info = read_showers(data, limit=limit, progress=is_main_process())
    if len(energies) < 10:
        raise ConfigError(f"{data} holds {len(energies)} showers; at least 10 are needed")
    threshold = float(info.attrs.get("threshold_mev", 0.0))
    if "threshold_mev" not in info.attrs:  # a CaloChallenge file: its smallest deposit
        positive = showers[showers > 0]
        threshold = float(positive.min()) if positive.size else 0.0
    cfg = model_config(model, info.geometry, energies, threshold, widths, sampler_steps)
    prepare_out_dir(out, overwrite, resumable=lambda d: (d / "last.pt").exists())
    _refuse_another_model(out, {"model": model, **asdict(cfg)})
    tr, va = split_indices(len(energies), seed)
    tc = train_config(model, steps, batch_size, lr, seed, device, out_dir=str(out),
                      checkpoint_every=checkpoint_every, accumulate=accumulate,
                      progress=is_main_process())
    net, record = train_model(model, cfg, (energies[tr], showers[tr]),
                              (energies[va], showers[va]), tc)
    if not is_main_process():
        return
    record.update({
        "data": str(data), "geometry": info.geometry.name, "n_showers": int(len(energies)),
        "command": " ".join(["gensci calo train", str(data), f"--model {model}",
                             f"--steps {steps}", f"--batch-size {batch_size}", f"--lr {lr}",
                             f"--hidden {hidden}", f"--seed {seed}"]
                            + ([f"--limit {limit}"] if limit is not None else [])
                            + ([f"--sampler-steps {sampler_steps}"] if sampler_steps else [])),
    })
    save_model(net, out / MODEL_FILE, record, overwrite=True)
    atomic_write_text(out / "provenance.json", json.dumps(record, indent=2, default=str), True)
    typer.echo(f"{model} generator ({record['parameters']} parameters) on {record['n_train']} "
               f"{info.geometry.name} showers, validation loss {record['final_val_loss']:.4f} "
               f"-> {out / MODEL_FILE}")


def _refuse_another_model(out: Path, config: dict) -> None:
    """Keep the model config of a run in out/generator_config.json; raise ConfigError if a run
    resumed from out asks for another model."""
    from gensci.errors import ConfigError
    from gensci.files import parse_json_object, read_text
    from gensci.runtime import atomic_write_text, is_main_process

    path = out / "generator_config.json"
    plain = json.loads(json.dumps(config))
    if (out / "last.pt").exists() and path.exists():
        saved = parse_json_object(read_text(path, "generator config"), str(path))
        changed = {k: (saved.get(k), v) for k, v in plain.items() if saved.get(k) != v}
        if changed:
            diff = ", ".join(f"{k}: {a} -> {b}" for k, (a, b) in changed.items())
            raise ConfigError(f"{out} holds a run of another model ({diff}); resume with the "
                              "same settings, or start over with --overwrite or another --out")
    elif is_main_process():
        atomic_write_text(path, json.dumps(plain), overwrite=True)


def _energies(spec: str, n: int | None, seed: int, model_geometry: str) -> np.ndarray:
    """Return incident energies (MeV) from --energies: an HDF5 file (its incident_energies; the
    first --n), 'MIN:MAX' (log-uniform, --n of them) or one energy (--n copies)."""
    from gensci.calorimetry.io import inspect_showers, read_showers
    from gensci.errors import ConfigError, DataError

    if spec.lower().endswith(H5):
        info = inspect_showers(spec)
        if info.geometry.name != model_geometry:
            raise ConfigError(f"the model was trained on geometry {model_geometry!r} but "
                              f"{spec} holds {info.geometry.name!r} showers")
        e, _, _ = read_showers(spec, limit=n)
        return e
    if n is None:
        raise ConfigError("--n is needed unless --energies names an HDF5 file")
    try:
        parts = [float(p) for p in spec.split(":")]
    except ValueError:
        raise ConfigError(f"--energies must be FILE.h5, MIN:MAX or one energy in MeV; got "
                          f"{spec!r}") from None
    if len(parts) not in (1, 2) or not all(np.isfinite(parts)) or min(parts) <= 0:
        raise DataError(f"--energies {spec!r}: energies must be finite and > 0 MeV")
    if len(parts) == 1:
        return np.full(n, parts[0])
    lo, hi = sorted(parts)
    return np.exp(np.random.default_rng(seed).uniform(np.log(lo), np.log(hi), n))


@app.command("generate")
def generate_cmd(
    model: Annotated[Path, typer.Argument(help="a trained generator (or its folder)")],
    out: Annotated[Path, typer.Option("--out", help="output HDF5 file")],
    energies: Annotated[
        str, typer.Option("--energies", help="FILE.h5 (its incident energies) | MIN:MAX in MeV "
                          "(log-uniform) | one energy in MeV")
    ] = "1000:100000",
    n: Annotated[int | None, typer.Option("--n", "--n-showers", help="number of showers "
                                          "(spell it --n-showers under torchrun)")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 2000,
    sampler_steps: Annotated[
        int | None, typer.Option("--sampler-steps", help="diffusion: override the DDIM steps")
    ] = None,
    seed: SeedOption = 0,
    device: DeviceOption = "auto",
    overwrite: OverwriteOption = False,
) -> None:
    """Generate showers at the given incident energies into a CaloChallenge HDF5 file. Under
    torchrun each rank writes its own shard (own seed stream); OUT joins them."""
    import time
    from dataclasses import replace

    from gensci import budget
    from gensci.calorimetry.geometry import get_geometry
    from gensci.calorimetry.model import generate, kind_of, load_model
    from gensci.files import check_suffix
    from gensci.runtime import check_writable, init_distributed, is_main_process, resolve_device

    dev = resolve_device(device)
    init_distributed(dev)
    check_suffix(out, H5, "the shower file")
    check_writable(out, overwrite)
    net = load_model(model, device=str(dev))
    if sampler_steps is not None:
        net.config = replace(net.config, sampler_steps=sampler_steps)
    geo = get_geometry(net.config.geometry)
    e_all = _energies(energies, n, seed, geo.name)
    lo, hi = np.exp(net.config.log_e_min), np.exp(net.config.log_e_max)
    outside = int(((e_all < lo * 0.999) | (e_all > hi * 1.001)).sum())
    if outside and is_main_process():  # when not to trust the output
        typer.echo(f"warning: {outside} of {len(e_all)} energies lie outside the training range "
                   f"[{lo:.4g}, {hi:.4g}] MeV; their showers are extrapolations", err=True)
    what = f"calo generate of {len(e_all)} {geo.name} showers"
    budget.check_need(budget.calo_showers_need(len(e_all), geo.n_voxels), what, "lower --n")
    budget.check_disk(budget.calo_file_bytes(len(e_all), geo.n_voxels), out, what, "lower --n")
    t0 = time.perf_counter()

    def make(start: int, stop: int, stream: np.random.SeedSequence):  # type: ignore[no-untyped-def]
        e = e_all[start:stop]
        return e, generate(net, e, seed=stream, batch_size=batch_size, progress=True)

    attrs = {"source": f"gensci calo {kind_of(net)} generator", "model": str(model),
             "seed": seed, "threshold_mev": net.config.threshold}
    _write_sharded(out, len(e_all), seed, make, geo, overwrite, attrs)
    if is_main_process():
        rate = len(e_all) / (time.perf_counter() - t0)
        typer.echo(f"wrote {len(e_all)} {geo.name} showers to {out} ({rate:.0f} showers/s "
                   f"on {dev}, writing included)")


@app.command("evaluate")
def evaluate_cmd(
    truth: Annotated[Path, typer.Argument(help="reference showers (HDF5)")],
    generated: Annotated[Path, typer.Argument(help="showers to judge (HDF5)")],
    out: Annotated[Path, typer.Option("--out", help="report folder (metrics.json, plots)")],
    limit: Annotated[int | None, typer.Option("--limit", help="use the first N of each")] = None,
    classifier_steps: Annotated[int, typer.Option("--classifier-steps")] = 3000,
    seed: SeedOption = 0,
    device: DeviceOption = "auto",
    overwrite: OverwriteOption = False,
) -> None:
    """CaloChallenge metrics of GEN against TRUTH: separation powers of the high-level
    observables, layer-correlation distance, low- and high-level classifier AUCs; plots."""
    from gensci.calorimetry.io import inspect_showers, read_showers
    from gensci.calorimetry.metrics import ClassifierSettings, evaluate, observables
    from gensci.calorimetry.study import plot_correlations, plot_histograms
    from gensci.errors import ShapeError
    from gensci.runtime import atomic_write_text, prepare_out_dir, resolve_device

    a, b = inspect_showers(truth), inspect_showers(generated)
    if a.geometry.name != b.geometry.name:
        raise ShapeError(f"{truth} holds {a.geometry.name} showers ({a.geometry.n_voxels} "
                         f"voxels) but {generated} holds {b.geometry.name} "
                         f"({b.geometry.n_voxels} voxels)")
    prepare_out_dir(out, overwrite)
    e1, x1, _ = read_showers(truth, limit=limit, progress=True)
    e0, x0, _ = read_showers(generated, limit=limit, progress=True)
    settings = ClassifierSettings(steps=classifier_steps, device=str(resolve_device(device)))
    result = evaluate((e1, x1), (e0, x0), a.geometry, settings, seed)
    result.update({"truth": str(truth), "generated": str(generated),
                   "geometry": a.geometry.name})
    atomic_write_text(out / "metrics.json", json.dumps(result, indent=2), overwrite=True)
    geo = a.geometry
    plot_histograms({"truth": observables(e1, x1, geo), "generated": observables(e0, x0, geo)},
                    out / "observables.png")
    plot_correlations({"truth": x1, "generated": x0}, geo, out / "correlations.png")
    typer.echo(f"low-level AUC {result['auc_low_level']:.3f}, high-level AUC "
               f"{result['auc_high_level']:.3f}, layer-correlation distance "
               f"{result['correlation_distance']:.3f}, mean separation power "
               f"{result['separation_power_mean']:.4f} -> {out}")


@app.command("study")
def study_cmd(
    out: Annotated[Path, typer.Option("--out", help="report folder")],
    scale: Annotated[
        str, typer.Option("--scale", help="micro | tiny | small | bench")
    ] = "small",
    geometry: Annotated[str, typer.Option("--geometry", help="ds1-photon | ds2")] = "ds1-photon",
    seed: SeedOption = 0,
    device: DeviceOption = "auto",
    overwrite: OverwriteOption = False,
) -> None:
    """Simulate truth, train the three generators, measure fidelity (AUCs, correlation distance,
    separation powers) against throughput; write report.json, report.md and the figures."""
    from gensci.calorimetry.geometry import get_geometry
    from gensci.calorimetry.study import SCALES, markdown_summary, run_study
    from gensci.errors import ConfigError
    from gensci.report.records import record_calorimetry
    from gensci.runtime import prepare_out_dir, resolve_device

    if scale not in SCALES:
        raise ConfigError(f"unknown --scale {scale!r}; choose one of {tuple(SCALES)}")
    get_geometry(geometry)
    dev = str(resolve_device(device))
    prepare_out_dir(out, overwrite)
    report = run_study(out, scale, geometry=geometry, seed=seed, device=dev, progress=True)
    record_calorimetry(out, report)
    typer.echo(markdown_summary(report))
    typer.echo(f"report in {out}")
