"""The `gensci dynamics` commands: simulate, fit, study."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from gensci.runtime import AccumulateOption, DeviceOption, OverwriteOption, SeedOption

app = typer.Typer(
    help="Learning the physics of interacting defects from unpaired snapshots.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

SNAPSHOT_FILE = "snapshots.npz"


def _parse_times(text: str) -> np.ndarray:
    """Return the times of 'start:stop:count' (evenly spaced) or 'a,b,c'."""
    from gensci.errors import ConfigError

    try:
        if ":" in text:
            a, b, c = text.split(":")
            return np.linspace(float(a), float(b), int(c))
        return np.array([float(v) for v in text.split(",") if v.strip()])
    except ValueError:
        raise ConfigError(
            f"--times must be 'start:stop:count' or a comma-separated list, got {text!r}"
        ) from None


def _params(path: Path | None, overrides: dict[str, float | int | None]) -> object:
    """Return DefectParams from a JSON file (if given) with the command-line values on top."""
    from gensci.config import config_from_dict
    from gensci.dynamics.physics import DefectParams
    from gensci.files import parse_json_object, read_text

    values: dict[str, object] = {}
    if path is not None:
        values = parse_json_object(read_text(path, "parameter file"), str(path))
        values.pop("D", None)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return config_from_dict(DefectParams, values)


@app.command("simulate")
def simulate_cmd(
    out: Annotated[Path, typer.Option("--out", help="output folder (snapshots.npz, params)")],
    params: Annotated[
        Path | None, typer.Option("--params", help="JSON file of DefectParams fields")
    ] = None,
    n: Annotated[int | None, typer.Option("--n", help="number of defects N")] = None,
    dim: Annotated[int | None, typer.Option("--dim", help="1 (line) or 2 (square)")] = None,
    box: Annotated[float | None, typer.Option("--box", help="box length L")] = None,
    amplitude: Annotated[float | None, typer.Option("--amplitude", help="Peierls A")] = None,
    period: Annotated[float | None, typer.Option("--period", help="Peierls period a")] = None,
    strength: Annotated[float | None, typer.Option("--strength", help="repulsion k")] = None,
    r0: Annotated[float | None, typer.Option("--r0", help="screening length r0")] = None,
    gamma: Annotated[float | None, typer.Option("--gamma", help="friction")] = None,
    kt: Annotated[float | None, typer.Option("--kt", help="temperature kT")] = None,
    times: Annotated[str, typer.Option(help="'start:stop:count' or 'a,b,c'")] = "0.1:2.0:20",
    configs: Annotated[int, typer.Option(help="configurations per snapshot")] = 2000,
    init: Annotated[str, typer.Option(help="cluster | equilibrium | quench")] = "cluster",
    dt: Annotated[float, typer.Option(help="Euler-Maruyama step")] = 1e-3,
    spread: Annotated[float, typer.Option(help="cluster spacing at release")] = 0.4,
    burn_in: Annotated[float, typer.Option(help="burn-in time (equilibrium, quench)")] = 20.0,
    init_amplitude: Annotated[
        float | None, typer.Option(help="quench: A before t = 0")
    ] = None,
    init_strength: Annotated[float | None, typer.Option(help="quench: k before t = 0")] = None,
    track: Annotated[bool, typer.Option(help="also record tracked trajectories")] = False,
    tracks: Annotated[int, typer.Option(help="tracked trajectories kept")] = 200,
    frame_dt: Annotated[float, typer.Option(help="time between tracked frames")] = 1e-3,
    seed: SeedOption = 0,
    overwrite: OverwriteOption = False,
) -> None:
    """Simulate defect snapshots (unpaired ensembles) and write OUT/snapshots.npz."""
    from gensci.dynamics.io import write_snapshots
    from gensci.dynamics.simulate import INITS, simulate
    from gensci.errors import ConfigError, ResourceError
    from gensci.runtime import atomic_write_text, prepare_out_dir

    if init not in INITS:
        raise ConfigError(f"unknown --init {init!r}; choose one of {INITS}")
    p = _params(params, {"n": n, "dim": dim, "box": box, "A": amplitude, "a": period,
                         "k": strength, "r0": r0, "gamma": gamma, "kT": kt})
    t = _parse_times(times)
    need = 8.0 * (len(t) + 1) * configs * p.n * p.n * p.dim * 4  # type: ignore[attr-defined]
    if need > 8e9:
        raise ResourceError(f"simulating {len(t)} x {configs} configurations of N = "
                            f"{p.n} needs about {need / 1e9:.0f} GB; lower --configs")  # type: ignore[attr-defined]
    out_dir = prepare_out_dir(out, overwrite)
    s = simulate(p, t, configs, init=init, dt=dt, spread=spread, burn_in=burn_in,  # type: ignore[arg-type]
                 init_A=init_amplitude, init_k=init_strength, track=track,
                 frame_dt=frame_dt, seed=seed, progress=True)
    if s.tracks is not None:
        s.tracks = s.tracks[:tracks]
    write_snapshots(s, out_dir / SNAPSHOT_FILE, overwrite=True)
    atomic_write_text(out_dir / "params.json", json.dumps(s.meta, indent=1), True)
    typer.echo(f"wrote {len(t)} snapshots x {configs} configurations to {out_dir / SNAPSHOT_FILE}")


@app.command("fit")
def fit_cmd(
    snapshots: Annotated[Path, typer.Argument(help="snapshots.npz (or its folder)")],
    out: Annotated[Path, typer.Option("--out", help="output folder")],
    period: Annotated[
        float | None, typer.Option(help="known Peierls period a (default: from the file)")
    ] = None,
    gamma: Annotated[float | None, typer.Option(help="known friction (default: file or 1)")] = None,
    model: Annotated[
        Path | None, typer.Option(help="a trained score model to reuse (score.safetensors)")
    ] = None,
    steps: Annotated[int, typer.Option(help="score-model training steps")] = 3000,
    batch_size: Annotated[int, typer.Option(help="training batch size")] = 256,
    lr: Annotated[float, typer.Option(help="learning rate")] = 2e-3,
    width: Annotated[int, typer.Option(help="score-network width")] = 32,
    points: Annotated[int, typer.Option(help="sample points per snapshot")] = 120,
    n_bootstrap: Annotated[int, typer.Option(help="bootstrap draws for intervals")] = 10,
    accumulate: AccumulateOption = 1,
    seed: SeedOption = 0,
    device: DeviceOption = "auto",
    overwrite: OverwriteOption = False,
) -> None:
    """Fit (A, k, r0, D) by the score method, the weak form and (if tracked) the oracle."""
    from dataclasses import replace

    from gensci.config import config_from_dict
    from gensci.dynamics.io import read_snapshots
    from gensci.dynamics.physics import DefectParams
    from gensci.dynamics.score_fit import (
        MODEL_FILE,
        ScoreModelConfig,
        load_score_model,
        save_score_model,
    )
    from gensci.dynamics.study import run_fits, summary_table, write_report
    from gensci.errors import DataError
    from gensci.runtime import (
        init_distributed,
        is_main_process,
        prepare_out_dir,
        resolve_device,
        seed_everything,
    )

    init_distributed(resolve_device(device))
    path = snapshots / SNAPSHOT_FILE if snapshots.is_dir() else snapshots
    s = read_snapshots(path)
    if len(s.times) < 2:
        raise DataError(
            f"{path} holds snapshots at one time only; D cannot be separated from the drift "
            "without two or more times"
        )
    truth = None
    stored = s.meta.get("params") if isinstance(s.meta.get("params"), dict) else None
    if stored is not None:
        truth = config_from_dict(DefectParams, stored)
    if stored is None and period is None:
        raise DataError(f"{path} carries no simulator parameters: give the known --period")
    base = truth or DefectParams(n=s.n, dim=s.dim, box=s.box, a=period or 1.0)
    known = replace(base, a=period or base.a, gamma=gamma or base.gamma, A=1.0, k=1.0, r0=1.0,
                    kT=1.0)
    if (known.n, known.dim) != (s.n, s.dim):
        known = replace(known, n=s.n, dim=s.dim)
    out_dir = prepare_out_dir(out, overwrite)
    seed_everything(seed)
    cfg = ScoreModelConfig(width=width, steps=steps, batch_size=batch_size, lr=lr)
    trained, t_scale = (None, None)
    if model is not None:
        trained, t_scale = load_score_model(model, s)
    result = run_fits(s, None, known, truth, cfg, points=points, n_bootstrap=n_bootstrap,
                      seed=seed, device=device, progress=is_main_process(), model=trained,
                      t_scale=t_scale)
    if not is_main_process():
        return
    if model is None:
        save_score_model(result["model"], result["t_scale"], out_dir / MODEL_FILE,
                         {"data": str(path), "steps": steps, "seed": seed,
                          "config": cfg.__dict__}, overwrite=True)
    write_report(out_dir, result, truth, known)
    typer.echo(summary_table(result["fits"]))
    typer.echo(f"report in {out_dir}")


@app.command("study")
def study_cmd(
    out: Annotated[Path, typer.Option("--out", help="report folder")],
    scale: Annotated[str, typer.Option(help="tiny | small | full")] = "small",
    n: Annotated[int | None, typer.Option("--n", help="number of defects (default: scale's)")] = None,
    seed: SeedOption = 0,
    device: DeviceOption = "auto",
    overwrite: OverwriteOption = False,
) -> None:
    """Simulate, fit every method and model class, write the table, JSON and figures."""
    from gensci.dynamics.study import SCALES, run_study, summary_table
    from gensci.errors import ConfigError
    from gensci.report.records import record_dynamics
    from gensci.runtime import prepare_out_dir, seed_everything

    if scale not in SCALES:
        raise ConfigError(f"unknown --scale {scale!r}; choose one of {sorted(SCALES)}")
    out_dir = prepare_out_dir(out, overwrite)
    seed_everything(seed)
    record = run_study(out_dir, scale, seed=seed, device=device, n=n)
    record_dynamics(out_dir, record)  # the report section: `gensci report` renders this folder
    typer.echo(summary_table(record["fits"]))
    typer.echo(f"report in {out_dir}")
