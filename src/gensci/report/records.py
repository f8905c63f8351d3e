"""How each study's results become the report section of its output folder (see site.record).

The study commands (`gensci ct study`, `poisson study`, `protein study`, `cells study`) and the tour
behind `gensci demo` call the same function, so `gensci report` renders either the same way.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

from gensci.report.site import record


def command_line() -> str:
    """Return the command that is running, as a user would type it."""
    return " ".join(shlex.quote(a) for a in ["gensci", *sys.argv[1:]])


def record_core(out: Path, res: dict[str, Any]) -> str:
    """Report the core's run on known densities; return its one-line summary."""
    err = res.get("diffusion_ode_mode_weight_error", float("nan"))
    gap = res["made_cross_entropy"] - res["made_entropy_bound"]
    figures = [(p.name, p.stem.replace("_", " ")) for p in sorted(out.glob("*.png"))]
    table = [{"quantity": k, "value": v} for k, v in res.items() if isinstance(v, float)]
    summary = (f"diffusion (ODE sampler) mode-weight error {err:.3f}; MADE within {gap:.3f} nats "
               "of the entropy bound")
    record(out, "core", "The generative core on densities with known answers", command_line(),
           summary, table, figures)
    return summary


def record_ct(out: Path, results: dict[str, Any]) -> str:
    """Report a CT study (every wedge, every method); return its one-line summary."""
    table, parts = [], []
    checks = ("the discrepancy and extrapolation checks"
              if results["config"].get("extrapolation", True) else "the discrepancy check")
    for wedge, entry in results["wedges"].items():
        for m, v in entry["methods"].items():
            row = {"wedge": f"[0, {wedge})", "method": m, "PSNR (dB)": v["psnr"]["mean"],
                   "SSIM": v["ssim"]["mean"], "seconds": v["seconds"]["mean"]}
            if "flagged" in v:  # the checks (discrepancy, extrapolation): images rejected, answer
                row["flagged (per image)"] = "".join(
                    "x" if f else "." for f in v["flagged"]["values"])
                row["checked PSNR (dB)"] = v["checked_psnr"]["mean"]
            table.append(row)
        parts.append(f"[0, {wedge}): " + ", ".join(
            f"{m} {v['psnr']['mean']:.1f} dB" + (
                f" ({int(sum(v['flagged']['values']))} of {len(v['flagged']['values'])} "
                f"flagged by {checks}; checked answer "
                f"{v['checked_psnr']['mean']:.1f} dB)" if "flagged" in v else "")
            for m, v in entry["methods"].items()))
    figures = [(p.name, f"views in [0, {p.stem.split('_', 1)[1]}) degrees: truth, each "
                        "reconstruction, the posterior std and |error|")
               for p in sorted(out.glob("panel_*.png"))]
    cfg = results["config"]
    summary = (f"{cfg['n_views']} views, {100 * cfg['noise_level']:g} % noise, held-out slices "
               f"z = {results['slices_z']}; " + "; ".join(parts))
    record(out, "ct", "Limited-angle CT with a diffusion prior", command_line(), summary, table,
           figures)
    return summary


def record_poisson(out: Path, table: dict[str, Any], note: str = "") -> str:
    """Report a Poisson study table; return its one-line summary."""
    rows = []
    for key, row in table.items():
        if isinstance(row, dict) and "all" in row:
            rows.append({"method": key, "rel L2 (mean)": row["all"].get("rel_l2_mean"),
                         "rel residual (median)": row["all"].get("rel_residual_median"),
                         "max boundary violation": row["all"].get("boundary_violation_max"),
                         "seconds": row.get("seconds")})
    best = min((r for r in rows if r["method"] != "exact"),
               key=lambda r: r["rel L2 (mean)"] or float("inf"), default=None)
    summary = note + (f"best surrogate {best['method']}: relative L2 error "
                      f"{best['rel L2 (mean)']:.3g} on {table['n_examples']} fields"
                      if best else "exact solver only")
    figures = [(p.name, "source, exact solution, each surrogate, its error and its PDE residual")
               for p in sorted(out.glob("*.png"))]
    record(out, "poisson", "A neural surrogate of the Poisson equation", command_line(), summary,
           rows, figures)
    return summary


def record_protein(out: Path, summary_d: dict[str, Any]) -> str:
    """Report a protein study (designs, filter funnel, identity); return its one-line summary."""
    table = []
    for name in ("vae", "site_independent"):
        block = summary_d.get(name)
        if isinstance(block, dict):
            rates = block.get("pass_rates") or {}
            table.append({"sampler": name, **{f"passes {rule}": rate
                                              for rule, rate in rates.items()},
                          "covariation r": block.get("covariation_r")})
    captions = {"latent_map": "the family and the designs in the VAE's latent space",
                "covariation": "pair correlations of designs against the naturals': the VAE "
                               "keeps the family's covariation, a site-independent model cannot",
                "histograms": "identity to the nearest natural, and the filters' quantities, for "
                              "VAE designs, site-independent designs and naturals"}
    figures = [(p.name, captions.get(p.stem, p.stem.replace("_", " ")))
               for p in sorted(out.glob("*.png"))]
    summary = (f"{Path(str(summary_d.get('alignment', 'family'))).stem} family "
               f"({summary_d['n_sequences']} sequences x {summary_d['length']} columns): designs "
               "from the VAE and from a site-independent model through the same filters")
    record(out, "protein", "Protein design with a family VAE", command_line(), summary, table,
           figures)
    return summary


def record_cells(out: Path, result: dict[str, Any]) -> str:
    """Report a cells study (every held-out type); return its one-line summary."""
    names = {"r2_deg": "R2 top-100 DEGs", "r2_all": "R2 all genes",
             "delta_corr_deg": "delta corr. DEGs"}
    table, parts = [], []
    for cell_type, per in result["per_type"].items():
        metrics = per["metrics"]
        for m, vals in metrics.items():
            table.append({"held-out type": cell_type, "method": m,
                          **{label: vals[k]["value"] for k, label in names.items()
                             if isinstance(vals.get(k), dict)}})
        parts.append(f"{cell_type}: " + ", ".join(
            f"{m} {vals['r2_deg']['value']:.2f}" for m, vals in metrics.items()
            if "r2_deg" in vals))
    captions = {"scatter": "predicted vs real mean expression of the held-out type (all genes "
                           "grey, its top-100 DEGs red)",
                "pca": "control, real perturbed and predicted cells of the held-out type (PCA)",
                "umap": "control, real perturbed and predicted cells of the held-out type (UMAP)",
                "step": "the latent step calibrated on the training types"}
    figures = [(str(p.relative_to(out)), captions.get(p.stem.rsplit("_", 1)[-1], p.stem))
               for p in sorted((out / "figures").glob("*.png"))]
    summary = "R2 on the held-out types' top-100 DEGs: " + "; ".join(parts)
    record(out, "cells", "Single-cell perturbation by latent arithmetic", command_line(), summary,
           table, figures)
    return summary


def record_dynamics(out: Path, fit: dict[str, Any]) -> str:
    """Report a dynamics study (every method and model class); return its one-line summary."""
    table = []
    for row in fit["fits"]:
        values = row.get("values", {})
        table.append({"method": row["method"], "model": row["model"],
                      **{k: values.get(k) for k in ("A", "k", "r0", "D")},
                      "residual": row.get("residual"), "drift R2": row.get("drift_r2")})
    truth = fit.get("truth") or {}
    full = {r["method"]: r for r in fit["fits"] if r["model"] == "full"}
    parts = [f"{m} D = {r['values'].get('D', float('nan')):.2f}" for m, r in full.items()]
    summary = (f"truth A = {truth.get('A')}, k = {truth.get('k')}, r0 = {truth.get('r0')}, "
               f"D = {truth.get('D')}; full model: " + ", ".join(parts)
               + " (the score method fails at this snapshot spacing: see docs/dynamics.md)")
    figures = [(p.name, "recovered against true pair potential") for p in sorted(out.glob("*.png"))]
    record(out, "dynamics", "Physics of interacting defects from snapshots", command_line(),
           summary, table, figures)
    return summary


def record_symmetry(out: Path, report: dict[str, Any]) -> str:
    """Report a symmetry study (equivariance, likelihood, compressed sensing); return its summary."""
    from gensci.symmetry.study import markdown_summary

    table = []
    for line in markdown_summary(report).splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3:
            table.append({"quantity": cells[0], "C4-equivariant": cells[1], "plain": cells[2]})
    eq = report["equivariance_error"]["C4"]
    first = next(iter(eq))
    elbo = {k: v["heldout_elbo_nats"] for k, v in report["models"].items()}
    summary = (f"{report['data']}: C4 equivariance error {eq[first]:.1e} at {first}; held-out "
               f"ELBO {elbo.get('C4', float('nan')):.1f} (C4) vs {elbo.get('plain', float('nan')):.1f}"
               " (plain) nats per image")
    figures = [(p.name, "recovery success against the number of Gaussian measurements m, for "
                        "the C4 prior, the plain prior and the Lasso")
               for p in sorted(out.glob("*.png"))]
    record(out, "symmetry", "Equivariant generators", command_line(), summary, table, figures)
    return summary


def record_calorimetry(out: Path, report: dict[str, Any]) -> str:
    """Report a calorimetry study (fidelity against throughput); return its one-line summary."""
    from gensci.calorimetry.study import KINDS, LABELS

    rates, m = report["throughput_showers_per_s"], report["metrics"]
    table = [{"sample": LABELS[k], "low-level AUC": m[k]["auc_low_level"],
              "high-level AUC": m[k]["auc_high_level"],
              "layer-correlation distance": m[k]["correlation_distance"],
              "mean separation power": m[k]["separation_power_mean"],
              "showers/s": rates[k], "speed-up over AR": rates[k] / rates["ar"]}
             for k in ("truth", *KINDS)]
    summary = (f"{report['geometry']}: low-level AUC AR {m['ar']['auc_low_level']:.2f}, "
               f"factorised {m['parallel']['auc_low_level']:.2f}, correlated "
               f"{m['correlated']['auc_low_level']:.2f}; correlated parallel "
               f"{rates['correlated'] / rates['ar']:.0f}x and factorised "
               f"{rates['parallel'] / rates['ar']:.0f}x faster than AR")
    captions = {
        "frontier.png": "fidelity (classifier AUC, layer-correlation distance) against showers "
                        "per second for the three generators and a second truth sample",
        "observables.png": "high-level observables: truth and the three generators",
        "correlations.png": "layer-energy correlation matrices",
    }
    figures = [(p.name, captions.get(p.name, p.stem)) for p in sorted(out.glob("*.png"))]
    record(out, "calorimetry", "Fast calorimeter simulation", command_line(), summary, table,
           figures)
    return summary


def record_style(out: Path, report: dict[str, Any]) -> str:
    """Report a style study (AdaIN vs entangled; stain normalisation); return its summary."""
    from gensci.style.study import markdown_summary

    table = []
    for line in markdown_summary(report).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0] not in ("measure", "---"):
            table.append({"quantity": cells[0], "AdaIN": cells[1], "entangled": cells[2]})
        elif len(cells) == 4 and cells[0] not in ("stain method", "---"):
            table.append({"quantity": f"stain: {cells[0]}", "AdaIN": f"SSIM(H) {cells[1]}",
                          "entangled": f"distance to truth {cells[2]}"})
    sm = report["summary"]
    summary = (f"content IoU along 9-step style interpolations {sm['adain']['iou_mean']['mean']:.3f}"
               f" (AdaIN) vs {sm['entangled']['iou_mean']['mean']:.3f} (entangled); PPL "
               f"{sm['adain']['ppl']['mean']:.3g} vs {sm['entangled']['ppl']['mean']:.3g}")
    if "stain" in report:
        st = report["stain"]["methods"]
        summary += (f"; stain SSIM(H) AdaIN {st['adain']['ssim_h']['mean']:.3f}, Macenko "
                    f"{st['macenko']['ssim_h']['mean']:.3f}")
    captions = {"interpolation_strips.png": "style interpolation with the content fixed: AdaIN "
                "generator rows, entangled baseline rows",
                "stain_transfer_grid.png": "held-out tissue tiles: source, reference, truth (same "
                "tissue under the reference staining), AdaIN, Reinhard, Macenko"}
    figures = [(p.name, captions.get(p.name, p.stem.replace("_", " ")))
               for p in sorted(out.glob("*.png"))]
    record(out, "style", "Style apart from content (AdaIN)", command_line(), summary, table,
           figures)
    return summary
