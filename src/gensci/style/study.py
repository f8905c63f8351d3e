"""The style study: does per-layer AdaIN keep content fixed while the style moves, and does AdaIN
transfer normalise stains as well as the classical methods?

Data: shapes with known content (class, position, scale, rotation) and style (texture, hue,
contrast) factors (gensci.style.data), seeded train / test renders; one real immunohistochemistry
slide re-stained with known stain vectors. Models: the core StyleGenerator with per-layer AdaIN
and its entangled twin of the same parameter count (w only at the input), both VAE decoders of the
style code given the content mask, fitted by the core Trainer for several seeds; the core AdaIN
transfer net (encoder fitted as an autoencoder). Metrics (gensci.style.metrics): content IoU and
style-probe monotonicity along 9-step style interpolations, DCI and MIG of the style code, PPL;
stain SSIM of the haematoxylin map and stain-statistics distance against Reinhard and Macenko.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gensci.errors import DataError
from gensci.models.style import (
    AdaINTransferConfig,
    StyleGenerator,
    StyleGeneratorConfig,
    matched_entangled_config,
    n_parameters,
)
from gensci.runtime import atomic_save, atomic_write_text
from gensci.style.data import (
    STYLE_FACTORS,
    make_shapes,
    random_stains,
    restain,
    tile_boxes,
    tissue_concentrations,
    tissue_tiles,
)
from gensci.style.metrics import (
    chord_progress,
    dci,
    factor_labels,
    iou,
    mig,
    perceptual_path_length,
    spearman,
    stain_distance,
    structure_ssim,
    train_judges,
)
from gensci.style.task import (
    INTERPOLATION_STEPS,
    adain_normalize,
    adain_stain,
    interpolate,
    macenko,
    pooled_pixels,
    reinhard,
    stain_moments,
    style_code,
    to_od,
    train_generator,
    train_transfer,
)
from gensci.train import TrainConfig

MODES = ("adain", "entangled")


@dataclass
class Scale:
    """The sizes of one run of the study (named scales below)."""

    size: int = 32
    n_train: int = 4000
    n_test: int = 1000
    widths: tuple[int, ...] = (16, 16, 16)
    w_dim: int = 16
    latent_dim: int = 8
    steps: int = 1000
    batch_size: int = 32
    lr: float = 2e-3
    kl_weight: float = 1.0
    judge_steps: int = 1000
    seeds: tuple[int, ...] = (0, 1, 2)
    n_pairs: int = 48
    dci_trees: int = 50
    tile: int = 32
    eval_tile: int = 64
    transfer_widths: tuple[int, ...] = (32,)
    n_tiles: int = 3000
    ae_steps: int = 600
    decoder_steps: int = 600
    n_stain_pairs: int = 24
    n_val_pairs: int = 24  # validation pairs (the slide's left half) for choosing the variant
    stain_ks: tuple[int, ...] = (1, 4, 16, 64)  # tiles of each slide given to the normalisers


SCALES = {
    "tiny": Scale(
        n_train=96,
        n_test=64,
        widths=(8, 8),
        w_dim=8,
        latent_dim=4,
        steps=30,
        batch_size=16,
        judge_steps=30,
        seeds=(0,),
        n_pairs=4,
        dci_trees=5,
        transfer_widths=(8,),
        n_tiles=64,
        ae_steps=20,
        decoder_steps=20,
        n_stain_pairs=3,
        n_val_pairs=2,
        stain_ks=(1, 2),
    ),
    # the tour behind `gensci demo`: one seed, brief training
    "tour": Scale(
        n_train=400,
        n_test=200,
        widths=(8, 8),
        w_dim=8,
        steps=150,
        judge_steps=150,
        seeds=(0,),
        n_pairs=8,
        dci_trees=10,
        transfer_widths=(8,),
        n_tiles=200,
        ae_steps=60,
        decoder_steps=60,
        n_stain_pairs=4,
        n_val_pairs=4,
        stain_ks=(1, 4),
    ),
    "small": Scale(),
    # the generators at 64 x 64: one seed, half the steps (CPU time)
    "small64": Scale(
        size=64, n_train=2000, n_test=500, steps=500, judge_steps=500, seeds=(0,), n_pairs=24
    ),
}


def generator_config(scale: Scale) -> StyleGeneratorConfig:
    """Return the AdaIN generator's config at `scale` (its entangled twin: matched_entangled_config)."""
    return StyleGeneratorConfig(
        image_size=scale.size,
        widths=scale.widths,
        w_dim=scale.w_dim,
        latent_dim=scale.latent_dim,
        kl_weight=scale.kl_weight,
    )


def train_config(
    scale: Scale, seed: int, device: str, progress: bool, out_dir: str | None = None
) -> TrainConfig:
    return TrainConfig(
        steps=scale.steps,
        batch_size=scale.batch_size,
        lr=scale.lr,
        seed=seed,
        device=device,
        progress=progress,
        out_dir=out_dir,
        log_every=max(scale.steps // 20, 1),
        lr_schedule="cosine",
    )


def _mean_std(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    return {
        "mean": float(a.mean()),
        "std": float(a.std(ddof=1)) if len(a) > 1 else float("nan"),
        "n": len(a),
    }


def style_pairs(factors: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Return n index pairs (a, b) of test images whose texture differs and hues lie >= 0.25 apart."""
    rng = np.random.default_rng(seed)
    pairs: list[tuple[int, int]] = []
    while len(pairs) < n:
        a, b = rng.integers(0, len(factors), 2)
        dh = abs(factors[a, 6] - factors[b, 6])
        if factors[a, 5] != factors[b, 5] and min(dh, 1 - dh) >= 0.25:
            pairs.append((int(a), int(b)))
    return np.asarray(pairs)


@torch.no_grad()
def evaluate_generator(
    model: StyleGenerator,
    test: Any,
    pairs: np.ndarray,
    seg: Any,
    probe: Any,
    seed: int,
    dci_trees: int,
) -> tuple[dict[str, Any], torch.Tensor]:
    """Return the measures of one generator and its interpolation frames (T, P, 3, S, S)."""
    x = torch.from_numpy(test.images)
    m = torch.from_numpy(test.masks)
    z = style_code(model, x)
    recon = model.generate(z, m)
    a, b = pairs[:, 0], pairs[:, 1]
    frames = interpolate(model, m[a], z[a], z[b], INTERPOLATION_STEPS, seed=seed)
    t, p = frames.shape[:2]
    flat = frames.flatten(0, 1).clamp(0, 1)
    pred = seg(flat) > 0
    ious = iou(pred, m[a].repeat(t, 1, 1, 1)).view(t, p)
    styles = probe.predict(flat).view(t, p, -1).numpy()
    rho = [spearman(np.arange(t, dtype=float), chord_progress(styles[:, k])) for k in range(p)]
    steps = np.diff(np.stack([chord_progress(styles[:, k]) for k in range(p)], 1), axis=0)
    # DCI / MIG of the style code against the style factors (the content is the model's input)
    codes = z.numpy()
    labels = factor_labels(test.factors[:, 5:8], STYLE_FACTORS)
    half = len(codes) // 2
    d = dci(codes[:half], labels[:half], codes[half:], labels[half:], seed, dci_trees)
    ppl, ppl_norm = perceptual_path_length(model, probe, m[: min(len(m), 256)], seed)
    res = {
        "recon_mse": float((recon - x).pow(2).mean()),
        "iou_mean": float(ious.mean()),
        "iou_min_along_path": float(ious.min(0).values.mean()),
        "iou_per_step": ious.mean(1).tolist(),
        "probe_spearman": float(np.nanmean(rho)),
        "probe_monotone_fraction": float(np.mean(np.all(steps >= -0.02, axis=0))),
        "dci_disentanglement": d.disentanglement,
        "dci_completeness": d.completeness,
        "dci_informativeness": d.informativeness,
        "mig": mig(codes, labels),
        "ppl": ppl,
        "ppl_normalised": ppl_norm,
        "parameters": n_parameters(model),
    }
    return res, frames


def strip_figure(frames: dict[str, torch.Tensor], path: Path, n_rows: int = 4) -> None:
    """Write interpolation strips: for each model, n_rows paths of 9 frames."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(frames)
    t = next(iter(frames.values())).shape[0]
    rows = [(name, k) for k in range(n_rows) for name in names if k < frames[name].shape[1]]
    fig, axes = plt.subplots(len(rows), t, figsize=(t * 0.9, len(rows) * 0.95), squeeze=False)
    for r, (name, k) in enumerate(rows):
        for j in range(t):
            ax = axes[r, j]
            ax.imshow(frames[name][j, k].clamp(0, 1).permute(1, 2, 0).numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(name, fontsize=7)
    fig.suptitle("style interpolation, content fixed (t = 0 .. 1)", fontsize=9)
    fig.tight_layout()

    def writer(p: Path) -> None:
        fig.savefig(p, format="png", dpi=110)

    atomic_save(path, writer, overwrite=True, suffix=".png")
    plt.close(fig)


def stain_grid(rows: list[dict[str, np.ndarray]], path: Path) -> None:
    """Write the stain transfer grid: source, reference, truth, then each method's output."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = ["source", "reference", "truth", "adain", "adain_net", "reinhard", "macenko"]
    fig, axes = plt.subplots(
        len(rows), len(cols), figsize=(len(cols) * 1.4, len(rows) * 1.4), squeeze=False
    )
    for r, row in enumerate(rows):
        for j, c in enumerate(cols):
            axes[r, j].imshow(row[c])
            axes[r, j].axis("off")
            if r == 0:
                axes[r, j].set_title(c.replace("_", " "), fontsize=8)
    fig.tight_layout()

    def writer(p: Path) -> None:
        fig.savefig(p, format="png", dpi=110)

    atomic_save(path, writer, overwrite=True, suffix=".png")
    plt.close(fig)


def stain_training_tiles(scale: Scale, seed: int) -> np.ndarray:
    """Return training tiles (N, 3, tile, tile) from the slide's left half, each under its own
    random staining, as scaled optical densities (gensci.style.task.to_od)."""
    conc = tissue_concentrations()
    tiles = tissue_tiles(conc, scale.n_tiles, scale.tile, "train", seed)
    rng = np.random.default_rng(seed + 1)
    out = np.empty((len(tiles), 3, scale.tile, scale.tile), np.float32)
    for i, c in enumerate(tiles):
        m, g = random_stains(rng)
        out[i] = to_od(restain(c, m, g)).transpose(2, 0, 1)
    return out


def stain_pairs(
    conc: np.ndarray, region: str, n: int, size: int, k: int, seed: int
) -> list[dict[str, Any]]:
    """Return n evaluation pairs of `region` ("test": the held-out right half; "train": the
    left half, the validation pairs). Each: the source tile under staining A; its truth (the same
    tissue under staining B); the reference slide, k tiles under B (the first the pair's reference
    tile, the others other tissue than the source); the source slide, the source tile and k - 1
    other tiles under A. Pools for a smaller k are the first tiles of these."""
    src = tile_boxes(conc.shape, n, size, region, seed + 10)
    ref = tile_boxes(conc.shape, n, size, region, seed + 11)
    rng = np.random.default_rng(seed + 12)
    extra = np.random.default_rng(seed + 13)

    def cut(box: np.ndarray) -> np.ndarray:
        return conc[box[0] : box[0] + size, box[1] : box[1] + size]

    pairs = []
    for i in range(n):
        m_a, g_a = random_stains(rng)
        m_b, g_b = random_stains(rng)
        others: list[np.ndarray] = []
        while len(others) < 2 * (k - 1):  # tiles that share no pixel with the source tile
            box = tile_boxes(conc.shape, 1, size, region, int(extra.integers(2**31)))[0]
            if np.any(np.abs(box - src[i]) >= size):
                others.append(box)
        c = cut(src[i])
        pairs.append(
            {
                "conc": c,
                "stains": m_b,
                "gains": g_b,
                "source": restain(c, m_a, g_a),
                "truth": restain(c, m_b, g_b),
                "references": [restain(cut(b), m_b, g_b) for b in [ref[i], *others[: k - 1]]],
                "sources": [restain(c, m_a, g_a)]
                + [restain(cut(b), m_a, g_a) for b in others[k - 1 :]],
            }
        )
    return pairs


def normalise_pair(
    pair: dict[str, Any], k: int, nets: dict[str, Any]
) -> tuple[dict[str, np.ndarray], bool]:
    """Return every method's output for one pair given k tiles of each slide, and whether Macenko
    failed (then the tile is left as it was)."""
    source, refs, srcs = pair["source"], pair["references"][:k], pair["sources"][:k]
    m_src, m_ref = stain_moments(srcs, "source slide"), stain_moments(refs)
    try:
        mac, failed = macenko(source, refs, srcs), False
    except DataError:
        mac, failed = source, True
    try:  # the ceiling of moment matching: the moments of the source tile and of its truth
        oracle = adain_stain(
            source, stain_moments(source, "source"), stain_moments(pair["truth"], "truth")
        )
    except DataError:
        oracle = source
    outs = {
        "none": source,
        "adain": adain_stain(source, m_src, m_ref),
        "adain_centred": adain_stain(source, m_src, m_ref, about_zero=False),
        "adain_diagonal": adain_stain(source, m_src, m_ref, covariance=False),
        "adain_reference_only": adain_stain(source, stain_moments(source, "source"), m_ref),
        "adain_all_pixels": adain_stain(
            source,
            stain_moments(srcs, "source", tissue_od=-1.0),
            stain_moments(refs, tissue_od=-1.0),
        ),
        "adain_oracle": oracle,
        **{name: adain_normalize(net, source, refs, sources=srcs) for name, net in nets.items()},
        "reinhard": reinhard(source, refs, srcs),
        "macenko": mac,
        "truth": pair["truth"],
    }
    return outs, failed


def evaluate_stain(
    pairs: list[dict[str, Any]], ks: tuple[int, ...], nets: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, int], list[dict[str, np.ndarray]]]:
    """Return per k the measures of every method (mean, std over pairs), Macenko's failures per
    k, and the figure rows (the first pairs at the largest k)."""
    results: dict[str, Any] = {}
    failures: dict[str, int] = {}
    grid = []
    for k in ks:
        per: dict[str, dict[str, list[float]]] = {}
        failures[str(k)] = 0
        for i, pair in enumerate(pairs):
            outs, failed = normalise_pair(pair, k, nets)
            failures[str(k)] += failed
            pooled_ref = pooled_pixels(pair["references"][:k])
            for name, o in outs.items():
                d = per.setdefault(
                    name, {"ssim_h": [], "stain_dist_truth": [], "stain_dist_reference": []}
                )
                d["ssim_h"].append(
                    structure_ssim(o, pair["conc"][..., 0], pair["stains"], pair["gains"][0])
                )
                d["stain_dist_truth"].append(stain_distance(o, pair["truth"]))
                d["stain_dist_reference"].append(stain_distance(o, pooled_ref))
            if k == ks[-1] and i < 4:
                grid.append({"source": pair["source"], "reference": pair["references"][0], **outs})
        # the per-pair values are kept: methods are best compared pair by pair
        results[str(k)] = {
            name: {m: {**_mean_std(v), "values": v} for m, v in d.items()}
            for name, d in per.items()
        }
    return results, failures, grid


def run_stain(scale: Scale, out: Path, seed: int, device: str, progress: bool) -> dict[str, Any]:
    """Train the AdaIN transfer net on re-stained tiles; normalise validation (left half) and
    held-out (right half) tiles with every method given k tiles of each slide; return the
    measures. "methods" holds the held-out measures at the largest k."""
    t0 = time.time()
    tiles = stain_training_tiles(scale, seed)
    tc = TrainConfig(
        batch_size=scale.batch_size,
        lr=2e-3,
        seed=seed,
        device=device,
        progress=progress,
        log_every=50,
    )
    # the transfer net as before (3 x 3 convolutions) and its per-pixel twin (1 x 1 convolutions)
    configs = {
        "adain_net": AdaINTransferConfig(widths=scale.transfer_widths),
        "adain_net_pixel": AdaINTransferConfig(widths=scale.transfer_widths[:1], kernel=1),
    }
    nets, losses, train_s = {}, {}, {}
    for name, cfg in configs.items():
        t1 = time.time()
        model, losses[name] = train_transfer(cfg, tiles, scale.ae_steps, scale.decoder_steps, tc)
        nets[name] = model.cpu()
        train_s[name] = time.time() - t1
    conc = tissue_concentrations()
    ks = scale.stain_ks
    val, val_fail, _ = evaluate_stain(
        stain_pairs(conc, "train", scale.n_val_pairs, scale.eval_tile, max(ks), seed + 20), ks, nets
    )
    test, test_fail, grid = evaluate_stain(
        stain_pairs(conc, "test", scale.n_stain_pairs, scale.eval_tile, max(ks), seed), ks, nets
    )
    stain_grid(grid, out / "stain_transfer_grid.png")
    return {
        "methods": test[str(max(ks))],
        "k": max(ks),
        "test": test,
        "validation": val,
        "macenko_failures": {"test": test_fail, "validation": val_fail},
        "train_seconds": train_s,
        "seconds": time.time() - t0,
        "losses": losses,
        "configs": {k: asdict(c) for k, c in configs.items()},
        "tile": scale.tile,
        "eval_tile": scale.eval_tile,
        "n_pairs": scale.n_stain_pairs,
        "n_validation_pairs": scale.n_val_pairs,
        "ks": list(ks),
    }


def run_study(
    out: Path,
    scale_name: str = "small",
    seed: int = 0,
    device: str = "cpu",
    progress: bool = True,
    stain: bool = True,
) -> dict[str, Any]:
    """Run the study at a named scale; write report.json, report.md and the figures to `out`."""
    scale = SCALES[scale_name]
    t_start = time.time()
    train = make_shapes(scale.n_train, scale.size, seed)
    test = make_shapes(scale.n_test, scale.size, seed + 1)
    judge = make_shapes(max(scale.n_train, 256), scale.size, seed + 2)
    seg, probe = train_judges(
        judge.images, judge.masks, judge.factors[:, 5:8], scale.judge_steps, seed, device, progress
    )
    seg, probe = seg.cpu(), probe.cpu()
    with torch.no_grad():
        xt = torch.from_numpy(test.images)
        judge_iou = float(iou(seg(xt) > 0, torch.from_numpy(test.masks)).mean())
    pairs = style_pairs(test.factors, scale.n_pairs, seed + 3)
    cfg = generator_config(scale)
    configs = {"adain": cfg, "entangled": matched_entangled_config(cfg)}
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in MODES}
    frames_first: dict[str, torch.Tensor] = {}
    for s in scale.seeds:
        for mode in MODES:
            t0 = time.time()
            tc = train_config(scale, seed + s, device, progress)
            model, history = train_generator(configs[mode], train.images, train.masks, tc)
            model = model.cpu()
            res, frames = evaluate_generator(
                model, test, pairs, seg, probe, seed + s, scale.dci_trees
            )
            res["train_seconds"] = time.time() - t0
            res["final_loss"] = history[-1]["loss"] if history else None
            res["seed"] = seed + s
            runs[mode].append(res)
            if s == scale.seeds[0]:
                frames_first[mode] = frames
    strip_figure(
        {"AdaIN": frames_first["adain"], "entangled": frames_first["entangled"]},
        out / "interpolation_strips.png",
    )
    keys = (
        "iou_mean",
        "iou_min_along_path",
        "probe_spearman",
        "probe_monotone_fraction",
        "dci_disentanglement",
        "dci_completeness",
        "dci_informativeness",
        "mig",
        "ppl",
        "ppl_normalised",
        "recon_mse",
    )
    summary = {mode: {k: _mean_std([r[k] for r in runs[mode]]) for k in keys} for mode in MODES}
    report: dict[str, Any] = {
        "scale": scale_name,
        "settings": asdict(scale),
        "seed": seed,
        "configs": {k: asdict(v) for k, v in configs.items()},
        "judge_iou_on_real_test_images": judge_iou,
        "runs": runs,
        "summary": summary,
    }
    atomic_write_text(out / "report.json", json.dumps(report, indent=2, default=float), True)
    if stain:
        report["stain"] = run_stain(scale, out, seed, device, progress)
    report["seconds"] = time.time() - t_start
    atomic_write_text(out / "report.json", json.dumps(report, indent=2, default=float), True)
    atomic_write_text(out / "report.md", markdown_summary(report) + "\n", True)
    return report


def markdown_summary(report: dict[str, Any]) -> str:
    """Return the study's table (AdaIN vs entangled; stain methods) as markdown."""

    def fmt(d: dict[str, float]) -> str:
        s = d["std"]
        return f"{d['mean']:.3f}" + ("" if s != s else f" +- {s:.3f}")

    sm = report["summary"]
    lines = ["| measure | AdaIN | entangled |", "|---|---|---|"]
    names = {
        "iou_mean": "content IoU along interpolation",
        "iou_min_along_path": "worst IoU along a path",
        "probe_spearman": "style probe Spearman (monotone = 1)",
        "probe_monotone_fraction": "paths with a monotone probe",
        "dci_disentanglement": "DCI disentanglement",
        "dci_completeness": "DCI completeness",
        "dci_informativeness": "DCI informativeness (accuracy)",
        "mig": "MIG",
        "ppl": "PPL (probe features)",
        "ppl_normalised": "PPL / end-to-end distance (even pace = 1)",
        "recon_mse": "reconstruction MSE",
    }
    for k, label in names.items():
        lines.append(f"| {label} | {fmt(sm['adain'][k])} | {fmt(sm['entangled'][k])} |")
    lines.append(
        f"| (segmenter's IoU on real test images: the ceiling) | "
        f"{report['judge_iou_on_real_test_images']:.3f} | |"
    )
    if "stain" in report:
        st = report["stain"]
        lines += [
            "",
            "| stain method | SSIM of H map | stain distance to truth | to reference tiles |",
            "|---|---|---|---|",
        ]
        for k, methods in st.get("test", {str(st.get("k", 1)): st["methods"]}).items():
            for name, v in methods.items():
                lines.append(
                    f"| {name} (k={k}) | {fmt(v['ssim_h'])} | "
                    f"{fmt(v['stain_dist_truth'])} | {fmt(v['stain_dist_reference'])} |"
                )
    return "\n".join(lines)
