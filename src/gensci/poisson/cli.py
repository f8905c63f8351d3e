"""The `gensci poisson` commands: generate, train, solve, study."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from gensci import budget
from gensci.errors import ConfigError, DataError, FormatError, ShapeError, check_numeric
from gensci.runtime import (
    AccumulateOption,
    DeviceOption,
    OverwriteOption,
    SeedOption,
    atomic_save,
    check_writable,
    resolve_device,
    seed_everything,
)

app = typer.Typer(
    help="Conditional diffusion surrogate for the Poisson equation.", no_args_is_help=True
)


def _read_field(path: Path, key: str) -> np.ndarray:
    """Return an (N, N) or (B, N, N) float64 array from .npy, or `key` of a .npz / .h5 file."""
    from gensci.poisson.data import read_array

    where = str(path) if path.suffix.lower() == ".npy" else f"{path}:{key}"
    arr = check_numeric(read_array(path, key), where, ndim=(2, 3))
    if arr.shape[-1] != arr.shape[-2]:
        raise ShapeError(
            f"{where} is on a {arr.shape[-2]} x {arr.shape[-1]} grid; the solver needs a "
            "square N x N grid"
        )
    return arr


@app.command()
def generate(
    out: Annotated[Path, typer.Option("--out", help="dataset file (.npz, .h5 or .hdf5)")],
    n_examples: Annotated[int, typer.Option("--n-examples", help="number of pairs")] = 1000,
    n: Annotated[int, typer.Option("--n", help="grid nodes per side (N x N)")] = 64,
    families: Annotated[
        str, typer.Option(help="comma-separated: grf, blobs, shapes, grf_wide, points, offset, "
                               "grf_short, dipoles; or 'mixture' (the shipped model's training "
                               "mixture) or 'held-out' (families it never saw)")
    ] = "grf,blobs,shapes",
    nonzero_boundary_fraction: Annotated[
        float, typer.Option(help="share of examples with non-zero Dirichlet values")
    ] = 0.5,
    seed: SeedOption = 0,
    overwrite: OverwriteOption = False,
) -> None:
    """Write seeded (rho, phi, boundary) pairs solved exactly, with their generating parameters."""
    from gensci.files import check_suffix
    from gensci.poisson.data import (
        DATASET_SUFFIXES,
        HELD_OUT,
        MIXTURE,
        make_dataset,
        write_dataset,
    )

    check_suffix(out, DATASET_SUFFIXES, "a Poisson dataset")
    check_writable(out, overwrite)
    fams = []
    for f in (f.strip() for f in families.split(",") if f.strip()):
        fams += list({"mixture": MIXTURE, "held-out": HELD_OUT}.get(f, (f,)))
    what = f"poisson generate of {n_examples} examples on {n} x {n}"
    budget.check_need(
        budget.poisson_generate_need(n_examples, n, fams), what, "lower --n-examples or --n"
    )
    budget.check_disk(
        budget.poisson_dataset_bytes(n_examples, n), out, what, "lower --n-examples or --n"
    )
    ds = make_dataset(n_examples, n, fams, seed=seed,
                      nonzero_boundary_fraction=nonzero_boundary_fraction, progress=True)
    write_dataset(ds, out, overwrite=overwrite)
    typer.echo(f"wrote {len(ds)} pairs on a {n} x {n} grid to {out}")


@app.command()
def train(
    data: Annotated[Path, typer.Option("--data", help="dataset written by `generate`")],
    out: Annotated[Path, typer.Option("--out", help="run folder (resumes from its last.pt)")],
    kind: Annotated[str, typer.Option(help="diffusion | regression")] = "diffusion",
    steps: Annotated[int, typer.Option(help="total optimiser steps")] = 5000,
    batch_size: Annotated[int, typer.Option(help="examples per step")] = 16,
    lr: Annotated[float, typer.Option(help="AdamW learning rate")] = 2e-3,
    lr_schedule: Annotated[
        str, typer.Option(help="constant | cosine (decays to 0 at --steps; fix --steps up front)")
    ] = "constant",
    warmup: Annotated[int, typer.Option(help="learning-rate warm-up steps")] = 0,
    base_channels: Annotated[int, typer.Option(help="UNet width")] = 16,
    channel_mults: Annotated[str, typer.Option(help="UNet levels, e.g. 1,2,4,4")] = "1,2,4,4",
    boundary_channel: Annotated[
        bool, typer.Option(help="also give the harmonic lift to the network")
    ] = False,
    prediction: Annotated[
        str, typer.Option(help="diffusion network output: x0 | v | eps (x0 suits a solver)")
    ] = "x0",
    checkpoint_every: Annotated[int, typer.Option(help="steps between checkpoints")] = 100,
    accumulate: AccumulateOption = 1,
    seed: SeedOption = 0,
    device: DeviceOption = "auto",
    overwrite: OverwriteOption = False,
) -> None:
    """Train a surrogate with the core Trainer; run it again with a larger --steps to continue."""
    from gensci.poisson.data import read_dataset
    from gensci.poisson.study import MODEL_FILE, train_surrogate
    from gensci.train import TrainConfig

    if kind not in ("diffusion", "regression"):
        raise ConfigError(f"unknown --kind {kind!r}; choose diffusion or regression")
    if prediction not in ("eps", "x0", "v"):
        raise ConfigError(f"unknown --prediction {prediction!r}; choose x0, v or eps")
    shape = budget.peek_shape(data, "rho")
    try:
        levels = tuple(int(m) for m in channel_mults.split(","))
    except ValueError:
        levels = ()
    if shape is not None and len(shape) == 3 and levels:
        dev = resolve_device(device)
        net = budget.poisson_net(kind, shape[-1], base_channels, levels, 1 + boundary_channel)
        what = f"poisson train ({kind}) on {shape[0]} examples of {shape[-1]} x {shape[-1]}"
        budget.check_need(
            budget.poisson_train_need(shape[0], shape[-1], batch_size, net, dev.type == "cuda"),
            what, "lower --batch-size, --base-channels or --channel-mults, or use fewer examples",
            dev,
        )
        budget.check_time(
            budget.training_seconds(net, steps, batch_size, dev), f"{what} for {steps} steps",
            "lower --steps or --batch-size",
        )
    from gensci.runtime import init_distributed, is_main_process, prepare_out_dir

    init_distributed(resolve_device(device))  # under torchrun: before any rank looks at --out
    # a folder holding a run continues it (a finished one too, to a larger --steps); --overwrite
    # starts over
    prepare_out_dir(out, overwrite, resumable=lambda d: (d / "last.pt").exists())
    seed_everything(seed)
    ds = read_dataset(data)
    try:
        mults = tuple(int(m) for m in channel_mults.split(","))
    except ValueError as exc:
        raise ConfigError(
            f"--channel-mults must be integers like 1,2,4; got {channel_mults!r}"
        ) from exc
    tc = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, lr_schedule=lr_schedule,
                     warmup_steps=warmup, ema_decay=0.995, seed=seed,
                     checkpoint_every=checkpoint_every, device=device, accumulate=accumulate)
    train_surrogate(ds, out, kind=kind, train_config=tc, overwrite=True,
                    base_channels=base_channels, channel_mults=mults,
                    boundary_channel=boundary_channel, prediction=prediction)
    if is_main_process():
        typer.echo(f"trained {kind} surrogate: {out / MODEL_FILE}")


DEFAULT_TRUST_TOL = 0.05


def _trust_and_refine(rho: np.ndarray, boundary: np.ndarray | None, phi: np.ndarray,
                      tol: float | None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Flag answers whose truth-free error estimate exceeds the tolerance; refine them with --tol.

    rho, phi: (B, N, N); returns the (refined) phi and the per-field estimates and flags.
    """
    from gensci.poisson.study import check_and_refine

    limit = DEFAULT_TRUST_TOL if tol is None else tol
    phi, est, after, iterations = check_and_refine(rho, boundary, phi, tol, progress=True)
    flagged = est > limit
    typer.echo(f"estimated relative error (no truth needed): median {np.median(est):.3g}, max "
               f"{est.max():.3g}; {int(flagged.sum())} of {len(est)} answers above {limit:g}"
               + ("" if tol is not None or not flagged.any() else
                  " (not to be trusted: rerun with --tol to refine them)"))
    if tol is not None and flagged.any():
        typer.echo(f"refined {int(flagged.sum())} answers by multigrid-preconditioned CG "
                   f"({iterations} iterations in all): estimated error now max {after.max():.3g}")
        if after.max() > tol:
            typer.secho(f"warning: {int((after > tol).sum())} answers still miss --tol {tol:g} "
                        "after the refinement's rounds; check them (estimated_error_after)",
                        err=True, fg="yellow")
    return phi, {"estimated_error": est, "flagged": flagged, "estimated_error_after": after}


@app.command()
def solve(
    rho: Annotated[Path, typer.Option("--rho", help=".npy (N,N)/(B,N,N), or .npz/.h5 key 'rho'")],
    out: Annotated[Path, typer.Option("--out", help="output .npy or .npz file with phi")],
    method: Annotated[str, typer.Option(help="exact | diffusion | regression")] = "exact",
    model: Annotated[
        Path | None, typer.Option(help="trained surrogate (model.safetensors or run folder); "
                                       "regression defaults to the shipped 64 x 64 surrogate")
    ] = None,
    boundary: Annotated[
        Path | None,
        typer.Option(help="Dirichlet values: array shaped like rho, ring entries used"),
    ] = None,
    guided: Annotated[
        float, typer.Option("--guided", help="physics-guidance weight (diffusion; 0 = off)")
    ] = 0.0,
    project: Annotated[
        int, typer.Option("--project", help="CG iterations on the PDE per DDIM step (0 = off)")
    ] = 0,
    warm_start: Annotated[
        bool, typer.Option("--warm-start", help="refine the surrogate answer by CG to 1e-8")
    ] = False,
    soft: Annotated[bool, typer.Option(help="skip the hard boundary constraint")] = False,
    steps: Annotated[int, typer.Option(help="sampler steps (diffusion)")] = 16,
    sampler: Annotated[str, typer.Option(help="ddim | ode | em | pc (diffusion)")] = "ddim",
    eta: Annotated[float, typer.Option(help="DDIM noise: 0 deterministic, 1 stochastic")] = 0.0,
    samples: Annotated[int, typer.Option(help="samples per rho (diffusion); spread saved")] = 1,
    tol: Annotated[
        float | None,
        typer.Option(help="refine every answer whose estimated relative L2 error exceeds TOL by "
                          "multigrid-preconditioned CG until it meets TOL (without it, answers "
                          f"are only flagged against {DEFAULT_TRUST_TOL:g})"),
    ] = None,
    seed: SeedOption = 0,
    device: DeviceOption = "auto",
    overwrite: OverwriteOption = False,
) -> None:
    """Solve L phi = rho (5-point Laplacian, Dirichlet) exactly or with a trained surrogate."""
    from gensci.poisson.metrics import max_boundary_violation, relative_discrete_residual
    from gensci.poisson.solver import poisson_cg, solve_poisson
    from gensci.poisson.study import load_surrogate
    from gensci.poisson.surrogate import predict

    check_writable(out, overwrite)
    if out.suffix.lower() not in (".npy", ".npz"):
        raise FormatError(f"--out must end in .npy or .npz; got {out}")
    if method not in ("exact", "diffusion", "regression"):
        raise ConfigError(f"unknown --method {method!r}; choose exact, diffusion or regression")
    shape = budget.peek_shape(rho, "rho")
    if shape is not None and len(shape) in (2, 3):
        fields = 1 if len(shape) == 2 else shape[0]
        budget.check_need(
            budget.poisson_solve_need(fields, shape[-1], boundary=boundary is not None),
            f"poisson solve ({method}) of {fields} fields on {shape[-1]} x {shape[-1]}",
            "solve fewer fields at a time",
        )
    r = _read_field(rho, "rho")
    g = None
    if boundary is not None:
        g = _read_field(boundary, "boundary")
        if g.shape != r.shape and g.shape != r.shape[-2:]:
            raise ShapeError(f"boundary {boundary} has shape {g.shape} but rho has {r.shape}")
    single = r.ndim == 2
    rb = r[None] if single else r
    gb = None if g is None else np.broadcast_to(g, rb.shape)
    spread = None
    if method == "exact":
        if guided or warm_start or project or tol is not None:
            raise ConfigError(
                "--guided, --project, --warm-start and --tol apply to surrogate methods only"
            )
        phi = solve_poisson(rb, gb)
    else:
        if model is None and method == "regression":
            from gensci.poisson.study import shipped_surrogate

            model = shipped_surrogate()
            typer.echo(f"using the shipped surrogate {model.name} (64 x 64; see docs/poisson.md)")
        if model is None:
            raise ConfigError(f"--method {method} needs --model (a trained surrogate)")
        m = load_surrogate(model, device=str(resolve_device(device)))
        if m.config.kind != method:
            raise ConfigError(f"{model} holds a {m.config.kind} surrogate, not {method}")
        c = m.config
        net = budget.poisson_net(c.kind, c.n, c.base_channels, c.channel_mults, c.cond_channels)
        dev = resolve_device(device)
        what = f"poisson solve ({method}) of {rb.shape[0]} fields on {c.n} x {c.n}" + (
            f" with {samples} samples" if samples > 1 else "")
        budget.check_need(
            budget.poisson_solve_need(rb.shape[0], c.n, samples, net, g is not None,
                                      cuda=dev.type == "cuda"),
            what, "lower --samples or solve fewer fields at a time", dev,
        )
        budget.check_time(
            budget.poisson_solve_seconds(rb.shape[0], samples, steps, net, device=dev),
            what + f" and {steps} steps", "lower --steps or --samples",
        )
        budget.check_disk(
            8.0 * rb.shape[0] * c.n * c.n * (2 if samples > 1 else 1), out, what,
            "lower --samples or solve fewer fields at a time",
        )
        draws = predict(m, rb, gb, sampler=sampler, steps=steps, n_samples=samples, eta=eta,
                        hard=not soft, guidance=guided, project=project, seed=seed,
                        progress=True)
        phi = draws.mean(0)
        if samples > 1:
            spread = draws.std(0, ddof=1)
        if warm_start:
            its = []
            for i in range(rb.shape[0]):
                res = poisson_cg(rb[i], None if gb is None else gb[i], phi0=phi[i], tol=1e-8)
                phi[i] = res.x
                its.append(res.iterations)
            typer.echo(f"CG warm start: {np.mean(its):.1f} iterations to 1e-8 (mean)")
        phi, trust = _trust_and_refine(rb, gb, phi, tol)
    if not np.isfinite(phi).all():
        bad = int((~np.isfinite(phi)).sum())
        raise DataError(f"the {method} solution holds {bad} NaN/inf values; {out} not written")
    res = relative_discrete_residual(phi, rb)
    bv = max_boundary_violation(phi, np.zeros_like(phi) if gb is None else gb)
    typer.echo(f"relative residual: median {np.median(res):.3g}; max boundary violation "
               f"{bv.max():.3g}")
    result = phi[0] if single else phi
    arrays = {"phi": result, "rel_residual": res, "boundary_violation": bv}
    if spread is not None:
        arrays["spread"] = spread[0] if single else spread
    if method != "exact":
        arrays.update(trust)

    def writer(p: Path) -> None:
        with open(p, "wb") as fh:
            if out.suffix.lower() == ".npy":
                np.save(fh, result)
            else:
                np.savez_compressed(fh, **arrays)

    atomic_save(out, writer, overwrite=overwrite)
    typer.echo(f"wrote {out}")


@app.command()
def study(
    data: Annotated[Path, typer.Option("--data", help="held-out dataset written by `generate`")],
    out: Annotated[Path, typer.Option("--out", help="report folder")],
    model: Annotated[
        list[Path], typer.Option(help="trained surrogate(s); repeat the option for several")
    ],
    steps: Annotated[int, typer.Option(help="sampler steps (diffusion)")] = 16,
    guided: Annotated[float, typer.Option("--guided", help="guidance weight (0 = off)")] = 0.0,
    project: Annotated[
        int, typer.Option("--project", help="CG iterations on the PDE per DDIM step (0 = off)")
    ] = 0,
    warm_start: Annotated[bool, typer.Option("--warm-start", help="count CG iterations")] = False,
    limit: Annotated[int, typer.Option(help="use at most this many examples")] = 200,
    seed: SeedOption = 0,
    device: DeviceOption = "auto",
    overwrite: OverwriteOption = False,
) -> None:
    """Write a report folder: table (JSON + Markdown) and figure of rho, phi, errors, residuals."""
    from gensci.poisson.data import read_dataset
    from gensci.poisson.study import load_surrogate, run_study
    from gensci.runtime import prepare_out_dir

    shape = budget.peek_shape(data, "rho")
    if shape is not None and len(shape) == 3:
        used = min(limit, shape[0])
        nets = []
        for path in model:
            c = load_surrogate(path, device="cpu").config
            nets.append(budget.poisson_net(c.kind, c.n, c.base_channels, c.channel_mults,
                                           c.cond_channels))
        variants = len(model) * (2 + bool(guided) + bool(project)) + 2
        what = f"poisson study of {used} examples on {shape[-1]} x {shape[-1]}"
        budget.check_need(
            budget.poisson_study_need(shape[0], used, shape[-1], nets, variants), what,
            "lower --limit or study a smaller dataset",
        )
        budget.check_time(
            max((budget.poisson_solve_seconds(used, variants, steps, net) for net in nets),
                default=0.0), what + f" and {steps} steps", "lower --steps or --limit",
        )
    prepare_out_dir(out, overwrite)
    ds = read_dataset(data)
    ds = ds.subset(slice(0, limit))
    dev = str(resolve_device(device))
    models = {}
    for path in model:
        m = load_surrogate(path, device=dev)
        if m.config.n != ds.n:
            raise ShapeError(
                f"{path} was trained at {m.config.n} x {m.config.n} but {data} is {ds.n} x {ds.n}"
            )
        name = f"{m.config.kind}"
        while name in models:
            name += "'"
        models[name] = m
    table = run_study(ds, models, out, steps=steps, guidance=guided, project=project, seed=seed,
                      warm_start=warm_start)
    from gensci.poisson.study import markdown_table
    from gensci.report.records import record_poisson

    record_poisson(out, table)  # the report section: `gensci report` renders this folder
    typer.echo(markdown_table(table))
    typer.echo(f"report in {out}")
