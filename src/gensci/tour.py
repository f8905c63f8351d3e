"""`gensci demo`: a tour of every study at a small scale, written as one static HTML site.

Each step runs one study with the models that ship in the package (or trains a small one for under a
minute), writes its outputs to OUT/runs/<study>/ with a results.json report section, and prints a
one-line summary; the site (OUT/index.html, one page per study) is built from those folders at the
end with `gensci.report.site.build_site`, the same code as `gensci report`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch


@dataclass
class TourSettings:
    seed: int = 0
    device: str = "cpu"
    progress: bool = True
    core_steps: int = 600  # training steps of the core models on the known densities
    scale: float = 1.0  # multiplies every step count (tests use a small scale)


def _n(x: float, settings: TourSettings, least: int = 2) -> int:
    return max(least, int(round(x * settings.scale)))


def step_core(out: Path, s: TourSettings) -> str:
    """The core on densities with known answers (diffusion, VAE, MADE)."""
    from gensci.demo import run_demo
    from gensci.report.records import record_core

    res = run_demo(out, seed=s.seed, device=s.device, steps=_n(s.core_steps, s, 10),
                   progress=s.progress)
    return record_core(out, res)


def step_ct(out: Path, s: TourSettings) -> str:
    """Limited-angle CT: FBP, TV and the diffusion posterior (shipped prior) on held-out slices."""
    from gensci.report.records import record_ct
    from gensci.runtime import resolve_device
    from gensci.tomography.data import mni152_split
    from gensci.tomography.prior import load_diffusion_prior, shipped_prior
    from gensci.tomography.study import MethodSettings, StudyConfig, run_study

    dev = resolve_device(s.device)
    path = shipped_prior(64)
    if path is None:
        raise FileNotFoundError("the shipped 64 x 64 CT prior is missing from the package")
    prior = load_diffusion_prior(path, 64, dev)
    split = mni152_split(64, n_heldout=12)
    cfg = StudyConfig(
        resolution=64, n_slices=2, n_views=60, wedges=(90.0,), methods=("fbp", "tv", "dds"),
        tv_grid=(1.0, 2.0, 4.0), seed=s.seed,
        settings=MethodSettings(samples=_n(4, s), dds_steps=_n(50, s), tv_iterations=_n(300, s)),
    )
    results = run_study(cfg, split.heldout, split.heldout_z, prior, None, out, dev,
                        progress=s.progress)
    return record_ct(out, results)


TOUR_TOL = 1e-3  # the relative L2 error the refined answers must meet


def step_poisson(out: Path, s: TourSettings) -> str:
    """The shipped Poisson surrogate in and out of its training families, checked and refined.

    Every answer gets the truth-free error estimate; multigrid CG refines it to TOUR_TOL.
    """
    from gensci.poisson.data import HELD_OUT, MIXTURE, make_dataset
    from gensci.poisson.study import (
        check_and_refine,
        evaluate,
        load_surrogate,
        plot_examples,
        shipped_surrogate,
        summarise,
    )
    from gensci.poisson.surrogate import predict
    from gensci.report.records import record_poisson

    families = (*MIXTURE, *HELD_OUT)
    test = make_dataset(len(families) * _n(4, s), 64, families, seed=s.seed + 1, progress=False)
    model = load_surrogate(shipped_surrogate(), device=str(s.device))
    t0 = time.perf_counter()
    pred = predict(model, test.rho, test.boundary, hard=True, seed=s.seed, progress=False)[0]
    table: dict[str, Any] = {"n_examples": len(test)}
    table["regression (shipped)"] = {"seconds": time.perf_counter() - t0,
                                     **summarise(evaluate(pred, test), test.family)}
    t0 = time.perf_counter()
    refined, est, _, iterations = check_and_refine(test.rho, test.boundary, pred, TOUR_TOL)
    key = f"shipped + multigrid CG to estimated error {TOUR_TOL:g}"
    table[key] = {"seconds": time.perf_counter() - t0,
                  **summarise(evaluate(refined, test), test.family)}
    plot_examples(test, {"shipped": pred, key: refined}, out / "examples.png")
    err = evaluate(pred, test)["rel_l2"]
    held = np.isin(test.family, HELD_OUT)
    note = (f"shipped surrogate: relative L2 {err[~held].mean():.3f} on its training families, "
            f"{err[held].mean():.3f} on families it never saw; the truth-free estimate flags "
            f"{int((est > TOUR_TOL).sum())} of {len(est)} answers above {TOUR_TOL:g} and "
            f"{iterations} multigrid CG iterations bring every one below it; ")
    return record_poisson(out, table, note)


def step_protein(out: Path, s: TourSettings) -> str:
    """A family VAE on the bundled fn3 alignment: designs, filters, identity and covariation."""
    from gensci.protein.model import FamilyConfig
    from gensci.protein.study import run_study
    from gensci.report.records import record_protein

    cfg = FamilyConfig(steps=_n(800, s), seed=s.seed)
    summary_d = run_study("fn3", out, config=cfg, n_designs=_n(200, s, 10), device=s.device,
                          overwrite=True, progress=s.progress)
    return record_protein(out, summary_d)


def step_cells(out: Path, s: TourSettings) -> str:
    """Latent arithmetic predicts a held-out cell type's response (semi-synthetic PBMC)."""
    from gensci.cells.data import make_perturbation_benchmark
    from gensci.cells.registry import setup_anndata
    from gensci.cells.study import StudyConfig, run_study
    from gensci.report.records import record_cells

    adata = make_perturbation_benchmark(seed=s.seed)
    setup_anndata(adata, condition_key="condition", control="control", perturbed="stimulated",
                  cell_type_key="cell_type")
    types = sorted(set(adata.obs["cell_type"].astype(str)))
    held = "CD14+ Monocyte" if "CD14+ Monocyte" in types else types[0]
    cfg = StudyConfig(scale="small", cell_types=(held,), seed=s.seed, device=s.device,
                      progress=s.progress, overrides={"max_epochs": _n(40, s)})
    result = run_study(adata, out, cfg, overwrite=True)
    return record_cells(out, result)


def step_dynamics(out: Path, s: TourSettings) -> str:
    """Interacting defects: drift and diffusion from unpaired snapshots, against the oracle."""
    from gensci.dynamics.study import run_study
    from gensci.report.records import record_dynamics

    fit = run_study(out, "tiny", seed=s.seed, device=s.device)
    return record_dynamics(out, fit)


def step_symmetry(out: Path, s: TourSettings) -> str:
    """Rotation-equivariant against plain generators: equivariance and compressed sensing."""
    from gensci.report.records import record_symmetry
    from gensci.symmetry.study import run_study

    report = run_study("digits", out, "tour" if s.scale >= 1 else "tiny", seed=s.seed,
                       device=s.device, progress=s.progress)
    return record_symmetry(out, report)


def step_style(out: Path, s: TourSettings) -> str:
    """AdaIN against an entangled generator: content kept along style paths; stain normalisation."""
    from gensci.report.records import record_style
    from gensci.style.study import run_study

    report = run_study(out, "tour" if s.scale >= 1 else "tiny", seed=s.seed, device=s.device,
                       progress=s.progress)
    return record_style(out, report)


def step_calorimetry(out: Path, s: TourSettings) -> str:
    """Calorimeter showers: autoregressive vs one-shot parallel generators, CaloChallenge metrics."""
    from gensci.calorimetry.study import run_study
    from gensci.report.records import record_calorimetry

    report = run_study(out, "tiny" if s.scale >= 1 else "micro", seed=s.seed, device=s.device,
                       progress=s.progress)
    return record_calorimetry(out, report)


STEPS: dict[str, Callable[[Path, TourSettings], str]] = {
    "core": step_core,
    "ct": step_ct,
    "poisson": step_poisson,
    "protein": step_protein,
    "cells": step_cells,
    "dynamics": step_dynamics,
    "symmetry": step_symmetry,
    "calorimetry": step_calorimetry,
    "style": step_style,
}


def run_tour(out: Path, settings: TourSettings, only: list[str] | None = None,
             echo: Callable[[str], Any] = print) -> tuple[Path, dict[str, str]]:
    """Run the tour's steps into out/runs/<study>/, build the site into out; return its index."""
    from gensci.report.site import build_site

    names = only or list(STEPS)
    lines: dict[str, str] = {}
    for i, name in enumerate(names, 1):
        echo(f"[{i}/{len(names)}] {name}: {STEPS[name].__doc__.splitlines()[0]}")  # type: ignore[union-attr]
        folder = out / "runs" / name
        folder.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(settings.seed)
        np.random.seed(settings.seed)
        t0 = time.perf_counter()
        lines[name] = STEPS[name](folder, settings) + f" ({time.perf_counter() - t0:.0f} s)"
    index = build_site([out / "runs" / n for n in names], out)
    return index, lines
