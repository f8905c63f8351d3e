"""The protein design study: a VAE's latent space as a map of one family, and new members.

Data: one aligned family (EVE gap filters, identity reweighting). Model: the core VAE with a
categorical likelihood, trained by the core Trainer with sequence weights. Task: decode designs
from the prior. Metrics: feasibility rules, novelty (identity to the nearest training
sequence), family membership by the profile HMM, covariation fidelity; every figure beside the
same for a site-independent sampler. Figure: the latent map coloured by sub-family and
identity, the designs on it, and histograms of the design metrics.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gensci.config import config_from_dict
from gensci.errors import DataError
from gensci.protein.baseline import SiteIndependent
from gensci.protein.design import Designs, design, finish, posterior
from gensci.protein.family import FamilyCheck
from gensci.protein.feasibility import (
    FeasibilityRules,
    calibrate_rules,
    check,
    pass_rates,
    rules_to_dict,
)
from gensci.protein.hmm import hmm_evalues, load_hmm
from gensci.protein.io import (
    MSA,
    PACKAGED,
    bundled,
    decode,
    describe_read,
    load_family,
    packaged,
    write_fasta,
)
from gensci.protein.metrics import covariation_fidelity, pair_correlations
from gensci.protein.model import FamilyConfig, FamilyMeta, save_family, train_family
from gensci.protein.weights import nearest_identity, sequence_weights
from gensci.runtime import atomic_save, atomic_write_text, finish_out_dir, prepare_out_dir

BUNDLED = ("fn3", "Pkinase")


def resolve_alignment(name: str | Path) -> tuple[Path, Path | None]:
    """Return (alignment path, its HMM or None); 'fn3' and 'Pkinase' name the bundled seeds,
    'ww' the WW domain in the logomaker package (a path on disk wins over a family name)."""
    if str(name) in BUNDLED:
        return bundled(f"{name}.sto"), bundled(f"{name}.hmm")
    if str(name).lower() in PACKAGED and not Path(name).exists():
        return packaged(str(name)), None
    return Path(name), None


def reading_defaults(
    name: str | Path, format: str | None, on_unknown: str | None
) -> tuple[str | None, str]:
    """Return (format, on_unknown) for reading `name`: the user's choice, else the packaged
    family's (WW: a2m, drop), else (from the extension, 'error')."""
    key = str(name).lower()
    if key in PACKAGED and not Path(name).exists():
        _, _, fmt, unknown = PACKAGED[key]
        return format or fmt, on_unknown or unknown
    return format, on_unknown or "error"


def assess(
    designs: Designs,
    meta: FamilyMeta,
    rules: FeasibilityRules,
    hmm_path: str | Path | None = None,
    evalue: float = 1e-3,
    family: FamilyCheck | None = None,
) -> list[dict[str, Any]]:
    """Return one metrics row per design: feasibility, novelty, exact copy, HMM E-value and,
    with a `family` check, the Potts score per position, its percentile among held-out
    naturals and whether it passes; a design below the check's threshold fails the rule
    'family'.

    A design that copies a training sequence exactly fails the 'novelty' rule whatever the
    novelty band says.
    """
    train_codes = meta.train_codes()
    if len(designs) == 0:
        return []
    ident, nearest = nearest_identity(designs.codes, train_codes)
    train_set = {s.replace("-", "") for s in meta.train_seqs}
    lengths = [len(s.replace("-", "")) for s in meta.train_seqs]
    rows = check(designs.sequences, rules, identity=ident, reference_lengths=lengths)
    evalues = hmm_evalues(designs.sequences, hmm_path) if hmm_path is not None else None
    fam = None
    if family is not None:
        fam = (family.scores(designs.codes), family.percentile(designs.codes))
        threshold = family.threshold
    out = []
    for i, row in enumerate(rows):
        copy = designs.sequences[i] in train_set
        failed = [f for f in row.pop("failed").split(";") if f]
        if copy and "novelty" not in failed:
            failed.append("novelty")
        if fam is not None and fam[0][i] < threshold:
            failed.append("family")
        full: dict[str, Any] = {"id": designs.ids[i], "sequence": designs.sequences[i]}
        full.update(row)
        full["nearest_training"] = meta.train_ids[int(nearest[i])]
        full["exact_copy"] = copy
        if evalues is not None:
            full["hmm_evalue"] = float(evalues[i])
            full["hmm_recognised"] = bool(evalues[i] <= evalue)
        if fam is not None:
            full["potts_score"] = round(float(fam[0][i]), 4)
            full["potts_percentile"] = round(float(fam[1][i]), 4)
            full["family_check"] = bool(fam[0][i] >= threshold)
        full["passed"] = not failed
        full["failed"] = ";".join(failed)
        out.append(full)
    return out


def summarise(rows: Sequence[dict[str, Any]], evalue: float = 1e-3) -> dict[str, Any]:
    """Return the headline figures of assessed designs (all, and those passing every rule)."""
    passed = [r for r in rows if r["passed"]]

    def figures(rs: Sequence[dict[str, Any]]) -> dict[str, Any]:
        if not rs:
            return {"n": 0}
        ident = np.array([r["identity"] for r in rs])
        out: dict[str, Any] = {
            "n": len(rs),
            "median_identity": float(np.median(ident)),
            "identity_p10_p90": [float(np.percentile(ident, 10)), float(np.percentile(ident, 90))],
            "exact_copies": int(sum(bool(r["exact_copy"]) for r in rs)),
        }
        if "hmm_evalue" in rs[0]:
            out["hmm_recognised"] = float(np.mean([r["hmm_evalue"] <= evalue for r in rs]))
        if "family_check" in rs[0]:
            out["family_check"] = float(np.mean([r["family_check"] for r in rs]))
        return out

    return {"all": figures(rows), "passed": figures(passed), "pass_rates": pass_rates(rows)}


def write_csv(path: Path, rows: Sequence[dict[str, Any]], overwrite: bool = False) -> Path:
    """Write rows (dicts with the same keys) as CSV atomically; return the path."""
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0].keys()), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return atomic_write_text(path, buf.getvalue(), overwrite=overwrite)


def subfamilies(codes: np.ndarray, n_groups: int = 6) -> np.ndarray:
    """Return sub-family labels (N,) from average-linkage clustering at sequence identity."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    from gensci.protein.weights import one_hot

    x = one_hot(codes)
    nongap = np.maximum((codes != 0).sum(1), 1)
    ident = (x @ x.T).numpy() / np.sqrt(np.outer(nongap, nongap))
    dist = np.clip(1.0 - ident, 0.0, None)
    np.fill_diagonal(dist, 0.0)
    dist = (dist + dist.T) / 2
    if codes.shape[0] < 3:
        return np.zeros(codes.shape[0], dtype=int)
    tree = linkage(squareform(dist, checks=False), method="average")
    return fcluster(tree, t=min(n_groups, codes.shape[0]), criterion="maxclust") - 1


def site_independent_designs(
    meta: FamilyMeta, n: int, seed: int = 0, temperature: float = 1.0
) -> Designs:
    """Return n designs from the site-independent profile of the training alignment."""
    codes = meta.train_codes()
    model = SiteIndependent.fit(codes, sequence_weights(codes))
    draws = model.sample(n, torch.Generator().manual_seed(seed), temperature=temperature)
    return finish(draws, np.zeros((n, 0)), prefix="site_independent")


def _latent_2d(points: np.ndarray, basis: np.ndarray | None = None) -> tuple[np.ndarray, Any]:
    """Return points projected on the first two principal axes of `basis` (or themselves)."""
    if points.shape[1] <= 2:
        pad = np.zeros((points.shape[0], 2))
        pad[:, : points.shape[1]] = points
        return pad, None
    ref = points if basis is None else basis
    mean = ref.mean(0)
    _, _, vt = np.linalg.svd(ref - mean, full_matrices=False)
    return (points - mean) @ vt[:2].T, (mean, vt[:2])


def latent_map_figure(
    path: Path,
    mu: np.ndarray,
    groups: np.ndarray,
    identity: np.ndarray,
    design_mu: np.ndarray | None = None,
    overwrite: bool = False,
) -> Path:
    """Draw the naturals' latent means (by sub-family, by identity) with the designs on top."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nat2, proj = _latent_2d(mu)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    for ax, colour, title, cmap in (
        (axes[0], groups, "sub-family (identity clusters)", "tab10"),
        (axes[1], identity, "identity to nearest other natural", "viridis"),
    ):
        if design_mu is not None and len(design_mu):
            d2 = design_mu[:, :2] if proj is None else (design_mu - proj[0]) @ proj[1].T
            ax.scatter(d2[:, 0], d2[:, 1], s=4, c="0.75", alpha=0.5, label="designs")
        sc = ax.scatter(
            nat2[:, 0],
            nat2[:, 1],
            s=22,
            c=colour,
            cmap=cmap,
            edgecolors="k",
            linewidths=0.3,
            label="naturals",
        )
        ax.set_title(title)
        ax.set_xlabel("latent PC 1" if proj is not None else "z1")
        ax.set_ylabel("latent PC 2" if proj is not None else "z2")
        fig.colorbar(sc, ax=ax)
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    out = atomic_save(path, lambda p: fig.savefig(p, dpi=120), overwrite=overwrite, suffix=".png")
    plt.close(fig)
    return out


def covariation_figure(
    path: Path,
    natural: np.ndarray,
    weights: np.ndarray,
    samplers: dict[str, np.ndarray],
    overwrite: bool = False,
) -> Path:
    """Draw each sampler's connected pair correlations against the naturals' (one panel each)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ref = pair_correlations(natural, weights).astype(np.float64)
    fig, axes = plt.subplots(1, len(samplers), figsize=(3.4 * len(samplers), 3.2), sharey=True)
    axes = np.atleast_1d(axes)
    for ax, (name, codes) in zip(axes, samplers.items(), strict=True):
        got = pair_correlations(codes).astype(np.float64)
        ax.scatter(ref, got, s=2, alpha=0.3)
        lim = float(max(np.abs(ref).max(), np.abs(got).max(), 1e-6))
        ax.plot([-lim, lim], [-lim, lim], "k--", lw=0.8)
        r = covariation_fidelity(codes, natural, weights)
        ax.set_title(f"{name}: r = {r:.2f}")
        ax.set_xlabel("naturals' pair correlation")
    axes[0].set_ylabel("designs' pair correlation")
    fig.tight_layout()
    out = atomic_save(path, lambda p: fig.savefig(p, dpi=110), overwrite=overwrite, suffix=".png")
    plt.close(fig)
    return out


def histograms_figure(
    path: Path,
    groups: dict[str, Sequence[dict[str, Any]]],
    keys: Sequence[str] = ("identity", "length", "net_charge", "pI", "gravy", "hmm_evalue"),
    overwrite: bool = False,
) -> Path:
    """Draw one histogram per metric, one colour per group of rows (e.g. VAE, baseline)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in keys if any(rs and k in rs[0] for rs in groups.values())]
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 3.0))
    axes = np.atleast_1d(axes)
    for ax, key in zip(axes, keys, strict=True):
        for name, rs in groups.items():
            if not rs or key not in rs[0]:
                continue
            v = np.array([float(r[key]) for r in rs])
            if key == "hmm_evalue":
                v = np.log10(np.clip(v, 1e-300, 1e3))
            ax.hist(v[np.isfinite(v)], bins=30, alpha=0.5, label=name, density=True)
        ax.set_title("log10 HMM E-value" if key == "hmm_evalue" else key)
    handles = [len(ax.get_legend_handles_labels()[0]) for ax in axes]
    axes[int(np.argmax(handles))].legend(fontsize=8)
    fig.tight_layout()
    out = atomic_save(path, lambda p: fig.savefig(p, dpi=110), overwrite=overwrite, suffix=".png")
    plt.close(fig)
    return out


def natural_rows(msa: MSA, rules: FeasibilityRules) -> list[dict[str, Any]]:
    """Return feasibility rows of the natural sequences (no novelty), for the histograms."""
    seqs = decode(msa.encode(), strip_gaps=True)
    return check(seqs, rules, reference_lengths=[len(s) for s in seqs])


def _check_size(
    msa: MSA, config: FamilyConfig, n_designs: int, out: str | Path, device: str
) -> None:
    """Refuse a study that cannot fit in memory, on disk or in time, before any work."""
    from gensci import budget

    net = budget.protein_net(msa.length, config.latent_dim, config.hidden, config.dropout)
    what = (
        f"protein study of {msa.n_sequences} sequences x {msa.length} columns with -n {n_designs}"
    )
    budget.check_need(
        budget.protein_study_need(
            msa.n_sequences, msa.length, n_designs, net, config.batch_size, config.latent_dim
        ),
        what,
        "lower -n or --latent-dim, or study a smaller alignment",
    )
    budget.check_disk(
        2 * budget.protein_design_disk(n_designs, msa.length),
        Path(out) / "designs.fasta",
        what,
        "lower -n",
    )
    budget.check_time(
        budget.training_seconds(net, config.steps, config.batch_size, device),
        f"{what} and --steps {config.steps}",
        "lower --steps",
    )


def run_study(
    alignment: str | Path,
    out: str | Path,
    hmm: str | Path | None = None,
    config: FamilyConfig | None = None,
    n_designs: int = 1000,
    temperature: float = 0.0,
    rules: FeasibilityRules | None = None,
    evalue: float = 1e-3,
    focus: str | None = None,
    device: str = "cpu",
    overwrite: bool = False,
    progress: bool = True,
    format: str | None = None,
    on_unknown: str | None = None,
    rule_quantile: float | None = 0.005,
    rule_overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Return the study's summary after writing its report folder `out`.

    The folder holds model.safetensors, designs.fasta, metrics.csv (VAE designs),
    baseline_metrics.csv (site-independent), latent_map.png, histograms.png, summary.json.
    rules: used as given; when None, the rules are calibrated on the family's naturals at
    `rule_quantile` (see `calibrate_rules`) with `rule_overrides` on top, or the fixed defaults
    when `rule_quantile` is None.
    """
    aln_path, bundled_hmm = resolve_alignment(alignment)
    hmm_path = Path(hmm) if hmm is not None else bundled_hmm
    config = config or FamilyConfig()
    fmt, unknown = reading_defaults(alignment, format, on_unknown)
    msa = load_family(aln_path, format=fmt, focus=focus, on_unknown=unknown)
    if msa.n_sequences < 2:
        raise DataError(f"{aln_path} leaves {msa.n_sequences} sequence after the gap filters")
    calibrated_at = rule_quantile if rules is None else None
    if rules is None:
        if rule_quantile is None:
            rules = config_from_dict(FeasibilityRules, rule_overrides or {})
        else:
            rules = calibrate_rules(
                decode(msa.encode(), strip_gaps=True), rule_quantile, overrides=rule_overrides
            )
    if hmm_path is not None:
        load_hmm(hmm_path)  # a bad HMM file stops the study before training
    _check_size(msa, config, n_designs, out, device)
    out_dir = prepare_out_dir(out, overwrite)
    model, meta, history = train_family(msa, config, device=device, progress=progress)
    save_family(model, meta, out_dir / "model.safetensors", overwrite=overwrite)

    designs = design(model, n_designs, temperature=temperature, seed=config.seed)
    rows = assess(designs, meta, rules, hmm_path, evalue)
    baseline = site_independent_designs(meta, n_designs, seed=config.seed)
    base_rows = assess(baseline, meta, rules, hmm_path, evalue)

    codes = msa.encode()
    weights = sequence_weights(codes)
    summary: dict[str, Any] = {
        "alignment": str(aln_path),
        "reading": describe_read(msa),
        "rules_calibrated_at_quantile": calibrated_at,
        "n_sequences": msa.n_sequences,
        "length": msa.length,
        "neff": float(weights.sum()),
        "train_seconds": meta.train_seconds,
        "final_loss": history[-1]["loss"] if history else None,
        "config": asdict(config),
        "rules": rules_to_dict(rules),
        "temperature": temperature,
        "vae": summarise(rows, evalue),
        "site_independent": summarise(base_rows, evalue),
    }
    if len(designs) > 1:
        summary["vae"]["covariation_r"] = covariation_fidelity(designs.codes, codes, weights)
    if len(baseline) > 1:
        summary["site_independent"]["covariation_r"] = covariation_fidelity(
            baseline.codes, codes, weights
        )

    write_fasta(out_dir / "designs.fasta", designs.ids, designs.sequences, overwrite)
    write_csv(out_dir / "metrics.csv", rows, overwrite)
    write_csv(out_dir / "baseline_metrics.csv", base_rows, overwrite)

    mu, _ = posterior(model, codes)
    others = nearest_identity_excluding_self(codes)
    design_mu, _ = posterior(model, designs.codes) if len(designs) else (None, None)
    latent_map_figure(
        out_dir / "latent_map.png",
        mu.numpy(),
        subfamilies(codes),
        others,
        None if design_mu is None else design_mu.numpy(),
        overwrite,
    )
    if len(designs) > 1 and len(baseline) > 1:
        covariation_figure(
            out_dir / "covariation.png",
            codes,
            weights,
            {"VAE": designs.codes, "site-independent": baseline.codes},
            overwrite=overwrite,
        )
    histograms_figure(
        out_dir / "histograms.png",
        {"VAE": rows, "site-independent": base_rows, "natural": natural_rows(msa, rules)},
        overwrite=overwrite,
    )
    atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=2), overwrite)
    finish_out_dir(out_dir)
    return summary


def nearest_identity_excluding_self(codes: np.ndarray) -> np.ndarray:
    """Return each row's identity to its nearest other row: (N,)."""
    from gensci.protein.weights import one_hot

    x = one_hot(codes)
    nongap = np.maximum((codes != 0).sum(1), 1)
    ident = (x @ x.T).numpy() / nongap[:, None]
    np.fill_diagonal(ident, -1.0)
    return ident.max(axis=1)
