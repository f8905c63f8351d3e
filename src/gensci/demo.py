"""`gensci demo`: a tour of every study (see gensci.tour); here, its first step: the core end to end
on densities whose answer is known, with a report folder.

A diffusion model learns a 2-D mixture of three Gaussians and is sampled with each sampler; a VAE
learns the same data; MADE learns a discrete distribution with a known entropy. The report shows
samples beside the truth and the figures that say whether each model got it right.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import torch
import typer

from gensci.models import MADE, VAE, DiffusionConfig, DiffusionModel, MADEConfig, VAEConfig
from gensci.report import Report
from gensci.runtime import (
    DeviceOption,
    OutOption,
    OverwriteOption,
    SeedOption,
    prepare_out_dir,
    resolve_device,
    seed_everything,
)
from gensci.tour import STEPS as TOUR_STEPS
from gensci.train import TrainConfig, Trainer

CENTERS = torch.tensor([[-2.0, 0.0], [2.0, 0.0], [0.0, 2.5]])
WEIGHTS = torch.tensor([0.5, 0.3, 0.2])


def mixture(n: int, generator: torch.Generator) -> torch.Tensor:
    """Return n draws (n, 2) from the demo's mixture of three Gaussians (std 0.25)."""
    k = torch.multinomial(WEIGHTS, n, replacement=True, generator=generator)
    return CENTERS[k] + 0.25 * torch.randn(n, 2, generator=generator)


def mode_weights(x: torch.Tensor) -> torch.Tensor:
    """Return the fraction of points nearest to each mixture centre."""
    return torch.bincount(torch.cdist(x, CENTERS).argmin(1), minlength=3).float() / len(x)


def run_demo(
    out: Path, seed: int = 0, device: str = "auto", steps: int = 2000, progress: bool = True
) -> dict:
    """Train and sample the core models on known densities; write a report to `out`; return results."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    g = seed_everything(seed)
    report = Report(out, "gensci demo: the generative core on densities with known answers")
    data = mixture(4000, g)
    results: dict = {"seed": seed, "truth_mode_weights": WEIGHTS.tolist()}

    # 1. diffusion on the mixture, every sampler
    model = DiffusionModel(DiffusionConfig(data_shape=(2,), hidden=(128, 128, 128), time_dim=32))
    t0 = time.perf_counter()
    cfg = TrainConfig(
        steps=steps,
        batch_size=256,
        lr=2e-3,
        ema_decay=0.995,
        seed=seed,
        device=device,
        progress=progress,
        out_dir=str(out / "diffusion-train"),
    )
    history = Trainer(model, data, cfg).fit()
    results["diffusion_train_seconds"] = time.perf_counter() - t0
    samplers = {
        "ode": {"steps": 100},
        "em": {"steps": 300},
        "pc": {"steps": 200},
        "langevin": {"n_levels": 100},
    }
    fig, axes = plt.subplots(1, 5, figsize=(20, 4), sharex=True, sharey=True)
    axes[0].scatter(*data[:2000].T, s=2, alpha=0.4)
    axes[0].set_title("training data")
    rows = [
        {
            "sampler": "truth",
            **{f"w{i}": float(w) for i, w in enumerate(WEIGHTS)},
            "max |error|": 0.0,
        }
    ]
    for ax, (name, kwargs) in zip(axes[1:], samplers.items(), strict=True):
        x = model.sample(
            2000, sampler=name, generator=torch.Generator().manual_seed(seed + 1), **kwargs
        ).cpu()
        w = mode_weights(x)
        err = float((w - WEIGHTS).abs().max())
        rows.append(
            {"sampler": name, **{f"w{i}": float(v) for i, v in enumerate(w)}, "max |error|": err}
        )
        results[f"diffusion_{name}_mode_weight_error"] = err
        ax.scatter(*x.T, s=2, alpha=0.4, color="C1")
        ax.set_title(f"diffusion, {name} sampler")
    report.heading("Score-based diffusion on a mixture of three Gaussians")
    report.text(
        f"Trained {steps} steps in {results['diffusion_train_seconds']:.1f} s "
        f"(final loss {history[-1]['loss']:.3f}). Mode weights are the fraction of samples nearest "
        "to each centre; the truth is (0.5, 0.3, 0.2)."
    )
    report.table(rows, "mode weights by sampler")
    report.figure(fig, "diffusion_samples", "training data and 2,000 samples from each sampler")

    # 2. VAE on the same data: held-out ELBO during training
    vae = VAE(VAEConfig(data_dim=2, latent_dim=2, hidden=(64, 64), kl_warmup_steps=200))
    held = mixture(1000, g)
    vcfg = TrainConfig(
        steps=max(steps // 2, 10),
        batch_size=256,
        lr=2e-3,
        val_every=max(steps // 20, 1),
        seed=seed,
        device=device,
        progress=progress,
    )
    vhist = Trainer(vae, data, vcfg, val_data=held).fit()
    val = [(r["step"], -r["val_loss"] * 2) for r in vhist if "val_loss" in r]
    results["vae_heldout_elbo_first_last"] = [val[0][1], val[-1][1]]
    xs = (
        vae.decode(torch.randn(2000, 2, generator=g).to(next(vae.parameters()).device))
        .detach()
        .cpu()
    )
    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    axes[0].plot(*zip(*val, strict=True), marker="o")
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("held-out ELBO (nats)")
    axes[1].scatter(*xs.T, s=2, alpha=0.4, color="C2")
    axes[1].set_title("VAE decoder means at z ~ N(0, I)")
    report.heading("VAE on the same mixture")
    report.text(f"Held-out ELBO went from {val[0][1]:.2f} to {val[-1][1]:.2f} nats per point.")
    report.figure(fig, "vae", "held-out ELBO during training, and decoded prior samples")

    # 3. MADE on a discrete distribution whose entropy is known
    d, k = 4, 3
    states = torch.tensor(list(itertools.product(range(k), repeat=d)))
    p = torch.softmax(1.5 * (states[:, 1:] == states[:, :-1]).sum(1).float(), 0)
    made = MADE(MADEConfig(n_dims=d, n_categories=k, hidden=(64, 64), seed=seed))
    disc = states[torch.multinomial(p, 20000, replacement=True, generator=g)]
    Trainer(
        made,
        disc,
        TrainConfig(
            steps=max(steps // 2, 10),
            batch_size=500,
            lr=1e-2,
            seed=seed,
            device=device,
            progress=progress,
        ),
    ).fit()
    with torch.no_grad():
        ce = float(-(p * made.log_prob(states.to(next(made.parameters()).device)).cpu()).sum())
    entropy = float(-(p * p.log()).sum())
    results.update({"made_cross_entropy": ce, "made_entropy_bound": entropy})
    report.heading("Autoregressive model (MADE) on a known discrete distribution")
    report.table(
        [{"entropy bound (nats)": entropy, "model cross-entropy (nats)": ce, "gap": ce - entropy}]
    )

    report.results = results
    report.write()
    return results


def demo(
    out: OutOption = Path("gensci-demo"),
    seed: SeedOption = 0,
    device: DeviceOption = "auto",
    steps: int = typer.Option(600, help="training steps of the core models on known densities"),
    only: str = typer.Option(
        ",".join(TOUR_STEPS), help="the studies to tour, comma-separated"
    ),
    overwrite: OverwriteOption = False,
    progress: bool = typer.Option(True, help="show progress bars"),
) -> None:
    """Tour every study at a small scale with the shipped models; write one HTML site to OUT."""
    from gensci import budget
    from gensci.errors import ConfigError
    from gensci.tour import STEPS, TourSettings, run_tour

    names = [n.strip() for n in only.split(",") if n.strip()]
    unknown = [n for n in names if n not in STEPS]
    if unknown or not names:
        raise ConfigError(f"--only {only!r}: unknown studies {unknown}; choose from {list(STEPS)}")
    # the core's three models train: the diffusion model for --steps, the VAE and MADE for half
    budget.check_time(
        budget.least_seconds(2 * steps, budget.STEP_FLOOR), f"gensci demo with --steps {steps}",
        "lower --steps",
    )
    out_dir = prepare_out_dir(out, overwrite)
    settings = TourSettings(seed=seed, device=str(resolve_device(device)), progress=progress,
                            core_steps=steps)
    t0 = time.perf_counter()
    index, lines = run_tour(out_dir, settings, names, echo=typer.echo)
    typer.echo(f"\ntour finished in {time.perf_counter() - t0:.0f} s")
    for name, line in lines.items():
        typer.echo(f"  {name:8s} {line}")
    typer.echo(f"report: {index}")
