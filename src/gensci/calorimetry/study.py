"""The study: autoregressive vs one-shot parallel shower generators, measured like the
CaloChallenge.

Data: showers of the GFlash-style truth simulator (train / validation / test, and a second
independent truth sample as the noise floor of every metric). Models: the layer-autoregressive
score model, the factorised one-shot model, the correlation-keeping one-shot score model, each
trained by the core Trainer. Task: generate the test set's incident energies. Metrics: separation
powers, layer-correlation distance, low- and high-level classifier AUCs, showers per second.
Figures: the fidelity-throughput frontier, observable histograms, correlation matrices.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from gensci.calorimetry.geometry import Geometry, get_geometry
from gensci.calorimetry.metrics import ClassifierSettings, correlation_matrix, evaluate, observables
from gensci.calorimetry.model import (
    CaloConfig,
    generate,
    throughput,
    train_model,
)
from gensci.calorimetry.simulate import SimulatorConfig, simulate
from gensci.train import TrainConfig

KINDS = ("ar", "parallel", "correlated", "diffusion")
LABELS = {"ar": "autoregressive (layers)", "parallel": "factorised parallel",
          "correlated": "correlated parallel", "diffusion": "few-step diffusion",
          "truth": "truth (2nd sample)"}
DEFAULT_SAMPLER_STEPS = {"ar": 1, "parallel": 1, "correlated": 1, "diffusion": 10}


@dataclass
class Scale:
    n_train: int
    n_val: int
    n_test: int
    steps: dict[str, int]
    hidden: tuple[int, ...]
    classifier: ClassifierSettings
    sampler_steps: dict[str, int]
    throughput_n: int = 2000
    batch_size: int = 256


SCALES: dict[str, Scale] = {
    "micro": Scale(1000, 200, 400, dict.fromkeys(KINDS, 40), (16, 16),
                   ClassifierSettings(hidden=(16, 16), steps=60, val_every=20, patience=2),
                   {**DEFAULT_SAMPLER_STEPS, "diffusion": 2}, throughput_n=200, batch_size=64),
    "tiny": Scale(3000, 400, 1000, {"ar": 400, "parallel": 400, "correlated": 400,
                                    "diffusion": 100}, (64, 64),
                  ClassifierSettings(hidden=(32, 32), steps=300, val_every=50, patience=3),
                  {**DEFAULT_SAMPLER_STEPS, "diffusion": 2}, throughput_n=500, batch_size=128),
    "small": Scale(20_000, 2000, 10_000, {"ar": 2000, "parallel": 2000, "correlated": 2000,
                                          "diffusion": 2000},
                   (256, 256, 256), ClassifierSettings(), DEFAULT_SAMPLER_STEPS),
    "bench": Scale(50_000, 5000, 20_000, {"ar": 5000, "parallel": 5000, "correlated": 5000,
                                          "diffusion": 5000},
                   (256, 256, 256), ClassifierSettings(), DEFAULT_SAMPLER_STEPS),
}


def split_indices(n: int, seed: int, val_fraction: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Return (train, validation) indices of n showers, a seeded random split."""
    perm = np.random.default_rng(seed).permutation(n)
    n_val = max(1, int(round(val_fraction * n)))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def model_config(
    kind: str, geometry: Geometry, energies: np.ndarray, threshold: float,
    hidden: tuple[int, ...], sampler_steps: int | None = None,
) -> CaloConfig:
    """Return the config of a model of `kind` for data of `geometry` at these energies (MeV)."""
    return CaloConfig(
        geometry=geometry.name, layer_sizes=geometry.layer_sizes,
        log_e_min=float(np.log(energies.min())), log_e_max=float(np.log(energies.max())),
        threshold=threshold, hidden=hidden,
        sampler_steps=sampler_steps or DEFAULT_SAMPLER_STEPS[kind],
    )


def train_config(
    kind: str, steps: int, batch_size: int, lr: float, seed: int, device: str,
    out_dir: str | None = None, checkpoint_every: int = 0, accumulate: int = 1,
    progress: bool = True,
) -> TrainConfig:
    """Return the Trainer settings: cosine schedule, EMA for the score models."""
    return TrainConfig(
        steps=steps, batch_size=batch_size, lr=lr, lr_schedule="cosine",
        warmup_steps=min(100, steps // 10), ema_decay=0.995 if kind == "diffusion" else 0.0,
        val_every=max(1, steps // 5), seed=seed, device=device, out_dir=out_dir,
        checkpoint_every=checkpoint_every, accumulate=accumulate, progress=progress,
    )


def run_study(
    out: Path, scale: str = "small", geometry: str = "ds1-photon", seed: int = 0,
    device: str = "cpu", progress: bool = False,
) -> dict[str, Any]:
    """Run the study at `scale`; write report.json, report.md and figures into out; return the
    report."""
    s = SCALES[scale]
    s = replace(s, classifier=replace(s.classifier, device=device))
    geo = get_geometry(geometry)
    sim = SimulatorConfig()
    t0 = time.perf_counter()
    seeds = np.random.SeedSequence(seed).spawn(4)
    train = simulate(s.n_train, geo, sim, seed=seeds[0], progress=progress)
    val = simulate(s.n_val, geo, sim, seed=seeds[1], progress=progress)
    test = simulate(s.n_test, geo, sim, seed=seeds[2], progress=progress)
    ref = simulate(s.n_test, geo, sim, seed=seeds[3], energies=test.incident)
    sim_seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    simulate(s.throughput_n, geo, sim, seed=seed + 99)
    rates = {"truth": s.throughput_n / (time.perf_counter() - t1)}
    truth = (test.incident, test.showers)
    samples: dict[str, np.ndarray] = {"truth": ref.showers}
    metrics = {"truth": evaluate(truth, (ref.incident, ref.showers), geo, s.classifier, seed)}
    models: dict[str, Any] = {}
    for kind in KINDS:
        cfg = model_config(kind, geo, train.incident, sim.threshold, s.hidden,
                           s.sampler_steps[kind])
        tc = train_config(kind, s.steps[kind], s.batch_size, 1e-3, seed, device,
                          progress=progress)
        net, record = train_model(kind, cfg, (train.incident, train.showers.copy()),
                                  (val.incident, val.showers.copy()), tc)
        net = net.cpu()
        samples[kind] = generate(net, test.incident, seed=seed + 1, progress=progress)
        rates[kind] = throughput(net, n=s.throughput_n, seed=seed)
        metrics[kind] = evaluate(truth, (test.incident, samples[kind]), geo, s.classifier, seed)
        models[kind] = {k: v for k, v in record.items() if k not in ("config",)}
    ar_rate = rates["ar"]
    report = {
        "scale": scale, "geometry": geo.name, "n_voxels": geo.n_voxels, "seed": seed,
        "device": device, "simulator": asdict(sim), "scale_settings": _plain(asdict(s)),
        "n_train": s.n_train, "n_test": s.n_test, "simulation_seconds": sim_seconds,
        "throughput_showers_per_s": rates,
        "speedup_over_ar": {k: v / ar_rate for k, v in rates.items()},
        "metrics": metrics, "models": models,
        "truth_correlations": {
            "layer_energy": correlation_matrix(test.showers, geo).round(4).tolist(),
            "ln_t_ln_alpha": float(np.corrcoef(test.log_t, test.log_alpha)[0, 1]),
        },
        "targets": targets(metrics, rates),
        "command": f"gensci calo study --scale {scale} --geometry {geometry} --seed {seed}",
    }
    test_obs = {"truth": observables(*truth, geo)}
    test_obs.update({LABELS[k]: observables(test.incident, samples[k], geo) for k in KINDS})
    plot_histograms(test_obs, out / "observables.png")
    plot_correlations({"truth": test.showers, **{LABELS[k]: samples[k] for k in KINDS}}, geo,
                      out / "correlations.png")
    plot_frontier(report, out / "frontier.png")
    from gensci.runtime import atomic_write_text

    atomic_write_text(out / "report.json", json.dumps(report, indent=2, default=str), True)
    atomic_write_text(out / "report.md", markdown_summary(report) + "\n", True)
    return report


def _plain(d: Any) -> Any:
    return json.loads(json.dumps(d, default=str))


def targets(metrics: dict[str, Any], rates: dict[str, float]) -> dict[str, Any]:
    """Return the issue's targets, each with its measurement and whether it is met."""
    m = metrics
    ar, par, cor = m["ar"], m["parallel"], m["correlated"]
    return {
        "ar_low_level_auc_le_0.65": {"value": ar["auc_low_level"],
                                     "met": ar["auc_low_level"] <= 0.65},
        "parallel_speedup_ge_20x": {"value": rates["parallel"] / rates["ar"],
                                    "met": rates["parallel"] / rates["ar"] >= 20},
        "parallel_correlation_distance_larger": {
            "value": [par["correlation_distance"], ar["correlation_distance"]],
            "met": par["correlation_distance"] > 2 * ar["correlation_distance"]},
        "correlated_within_0.05_auc_of_ar": {
            "value": cor["auc_low_level"] - ar["auc_low_level"],
            "met": cor["auc_low_level"] - ar["auc_low_level"] <= 0.05},
        "correlated_speedup_ge_10x": {"value": rates["correlated"] / rates["ar"],
                                      "met": rates["correlated"] / rates["ar"] >= 10},
    }


def markdown_summary(report: dict[str, Any]) -> str:
    """Return the study's table (one row per sample) as Markdown."""
    rows = ["| sample | low-level AUC | high-level AUC | layer-corr. distance | mean sep. power "
            "| showers/s | vs AR |", "|---|---|---|---|---|---|---|"]
    rates = report["throughput_showers_per_s"]
    for k in ("truth", *KINDS):
        m = report["metrics"][k]
        rows.append(f"| {LABELS[k]} | {m['auc_low_level']:.3f} | {m['auc_high_level']:.3f} | "
                    f"{m['correlation_distance']:.3f} | {m['separation_power_mean']:.4f} | "
                    f"{rates[k]:.0f} | {rates[k] / rates['ar']:.1f}x |")
    return "\n".join(rows)


# -- figures --------------------------------------------------------------------------------------
def _plt():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_histograms(samples: dict[str, dict[str, np.ndarray]], path: Path,
                    max_panels: int = 12) -> Path:
    """Draw normalised histograms of the first observables, one panel each, every sample."""
    plt = _plt()
    first = next(iter(samples.values()))
    names = list(first)[:max_panels]
    cols = 4
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    for ax, name in zip(axes.ravel(), names, strict=False):
        lo, hi = np.quantile(first[name], [0.005, 0.995])
        if not hi > lo:
            lo, hi = lo - 0.5, hi + 0.5
        edges = np.linspace(lo, hi, 31)
        for label, obs in samples.items():
            ax.hist(np.clip(obs[name], lo, hi), edges, density=True, histtype="step", label=label,
                    linewidth=1.8 if label == "truth" else 1.2)
        ax.set_title(name, fontsize=9)
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    axes.ravel()[0].legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)
    return path


def plot_correlations(samples: dict[str, np.ndarray], geometry: Geometry, path: Path) -> Path:
    """Draw the layer-energy correlation matrix of each sample side by side."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(samples), figsize=(3.3 * len(samples), 3.2), squeeze=False)
    for ax, (label, x) in zip(axes[0], samples.items(), strict=True):
        im = ax.imshow(correlation_matrix(x, geometry), vmin=-1, vmax=1, cmap="RdBu_r")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("layer")
        ax.set_ylabel("layer")
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8)
    _save(fig, path)
    return path


def plot_frontier(report: dict[str, Any], path: Path) -> Path:
    """Draw fidelity (low-level AUC, layer-correlation distance) against showers per second."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    rates, m = report["throughput_showers_per_s"], report["metrics"]
    for ax, key, title in ((axes[0], "auc_low_level", "low-level classifier AUC"),
                           (axes[1], "correlation_distance", "layer-correlation distance")):
        for k in ("truth", *KINDS):
            ax.scatter(rates[k], m[k][key], s=40, label=LABELS[k])
            ax.annotate(LABELS[k], (rates[k], m[k][key]), fontsize=7, xytext=(4, 4),
                        textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel("showers per second (CPU)")
        ax.set_title(title, fontsize=10)
    axes[0].axhline(0.5, color="grey", lw=0.8, ls=":")
    fig.tight_layout()
    _save(fig, path)
    return path


def _save(fig: Any, path: Path) -> None:
    from gensci.runtime import atomic_save

    plt = _plt()
    atomic_save(path, lambda p: fig.savefig(p, dpi=110, format="png"), overwrite=True)
    plt.close(fig)


def scale_with(scale: str, **changes: Any) -> Scale:
    """Return a copy of a named scale with some fields changed (the benchmark's variants)."""
    return replace(SCALES[scale], **changes)
