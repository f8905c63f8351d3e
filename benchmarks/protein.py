"""Protein design benchmark on the bundled Pfam seeds (fn3 PF00041, Pkinase PF00069).

For each family: hold out 20% of the aligned sequences, train the family VAE on the rest (core
VAE + core Trainer, sequence weights, one CPU thread) and measure
- ELBO AUC of held-out naturals against decoys: column-shuffled (each column permuted across
  the held-out rows: column composition kept, coupling lost) and position-shuffled (each row's
  letters permuted across its positions); the site-independent profile's log-likelihood beside;
  two anchors for the column-shuffled AUC: identity to the nearest training row, and a Potts
  model fitted by pseudo-likelihood (plmDCA's model) on the same training rows;
- designs from the prior until 1,000 pass every feasibility rule (default rules plus the
  N-glycosylation motif N[^P][ST]): median identity to the nearest training sequence, exact
  copies, share recognised by the family HMM at E <= 1e-3 (hmmsearch, Z = number searched),
  covariation fidelity (Pearson r of connected pair correlations vs the natural alignment),
  pass rate rule by rule; the same for the site-independent sampler;
- training time, designs per second, mutation scoring throughput, reweighting time for
  10,000 x 200.

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/protein.py  (writes
benchmarks/results/protein.json; about 10 minutes on one core).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gensci.protein.baseline import SiteIndependent
from gensci.protein.design import Designs, decode_points, finish, prior_points
from gensci.protein.feasibility import FeasibilityRules, check, pass_rates
from gensci.protein.io import AMINO_ACIDS, bundled, decode, load_family, residue_start
from gensci.protein.metrics import auc, column_shuffled, covariation_fidelity, position_shuffled
from gensci.protein.model import FamilyConfig, train_family
from gensci.protein.scoring import score_mutants
from gensci.protein.study import assess, summarise
from gensci.protein.weights import nearest_identity, sequence_weights

TARGETS = {
    "auc_column_shuffled": ">= 0.95",
    "median_identity": "in [0.40, 0.90]",
    "exact_copies": "0",
    "hmm_recognised": ">= 0.90 at E <= 1e-3",
    "covariation_r": ">= 0.5 (site-independent about 0)",
}


def pair_model_scores(
    train_codes: np.ndarray, weights: np.ndarray, queries: list[np.ndarray], reg: float = 1e-4,
    iters: int = 200,
) -> list[dict[str, np.ndarray]]:
    """Return the pseudo-likelihood and the energy of each query under a Potts model.

    An anchor, not part of the library: the model of plmDCA (fields h_i(a), couplings J_ij(a, b),
    fitted by maximising the weighted pseudo-likelihood with L2 penalty `reg` on h and J, L-BFGS),
    the standard pairwise model of a family. It shows how far couplings learned from the same
    training rows can separate held-out naturals from column-shuffled decoys.
    """
    from gensci.protein.io import N_LETTERS

    k = N_LETTERS
    x = torch.nn.functional.one_hot(torch.as_tensor(train_codes), k).float()
    length = x.shape[1]
    w = torch.as_tensor(weights / weights.sum(), dtype=torch.float32)
    h = torch.zeros(length, k, requires_grad=True)
    j = torch.zeros(length, k, length, k, requires_grad=True)
    mask = (1 - torch.eye(length))[:, None, :, None]

    def couplings() -> torch.Tensor:
        jm = j * mask
        return (jm + jm.permute(2, 3, 0, 1)) / 2

    def cond_logp(xx: torch.Tensor) -> torch.Tensor:
        logits = h[None] + torch.einsum("iajb,njb->nia", couplings(), xx)
        return (torch.log_softmax(logits, -1) * xx).sum((1, 2))

    opt = torch.optim.LBFGS([h, j], max_iter=iters, history_size=10, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = -(w * cond_logp(x)).sum() + reg * ((couplings() ** 2).sum() + (h**2).sum())
        loss.backward()
        return loss

    opt.step(closure)
    out = []
    with torch.no_grad():
        jj = couplings()
        for q in queries:
            xq = torch.nn.functional.one_hot(torch.as_tensor(q), k).float()
            energy = torch.einsum("nia,ia->n", xq, h) + 0.5 * torch.einsum(
                "nia,iajb,njb->n", xq, jj, xq
            )
            out.append({"pseudo_likelihood": cond_logp(xq).numpy(), "energy": energy.numpy()})
    return out


def collect(
    sample,  # type: ignore[no-untyped-def]
    meta,  # type: ignore[no-untyped-def]
    rules: FeasibilityRules,
    hmm: Path,
    want: int,
    batch: int,
    max_rounds: int,
    prefix: str,
) -> tuple[list[dict[str, Any]], Designs, dict[str, float]]:
    """Return (rows of every unique design, the designs, timings) drawing until `want` pass."""
    all_rows: list[dict[str, Any]] = []
    codes_list, seen = [], set()
    t_sample = t_assess = 0.0
    n_drawn = 0
    for r in range(max_rounds):
        t0 = time.perf_counter()
        codes = sample(batch, r)
        n_drawn += batch
        d = finish(codes, np.zeros((batch, 0)), prefix=f"{prefix}_r{r}")
        keep = [i for i, s in enumerate(d.sequences) if s not in seen]
        seen.update(d.sequences)
        d = Designs(
            [d.ids[i] for i in keep], [d.aligned[i] for i in keep],
            [d.sequences[i] for i in keep], d.z[keep], d.codes[keep],
        )
        t_sample += time.perf_counter() - t0
        t0 = time.perf_counter()
        rows = assess(d, meta, rules, hmm)
        t_assess += time.perf_counter() - t0
        all_rows.extend(rows)
        codes_list.append(d.codes)
        if sum(x["passed"] for x in all_rows) >= want:
            break
    codes = np.concatenate(codes_list)
    designs = Designs(
        [x["id"] for x in all_rows], [""] * len(all_rows),
        [x["sequence"] for x in all_rows], np.zeros((len(all_rows), 0)), codes,
    )
    timing = {
        "drawn": n_drawn,
        "unique": len(all_rows),
        "sample_seconds": t_sample,
        "assess_seconds": t_assess,
        "designs_per_second_sampling": n_drawn / max(t_sample, 1e-9),
        "designs_per_second_with_filters_and_hmm": n_drawn / max(t_sample + t_assess, 1e-9),
    }
    return all_rows, designs, timing


def figures_for(
    rows: list[dict[str, Any]], designs: Designs, want: int, nat_codes: np.ndarray,
    nat_w: np.ndarray,
) -> dict[str, Any]:
    """Return the headline figures over the first `want` passing designs (and over all)."""
    passed_idx = [i for i, r in enumerate(rows) if r["passed"]][:want]
    passed = [rows[i] for i in passed_idx]
    out = summarise(rows)
    out["first_passing"] = summarise(passed)["all"] if passed else {"n": 0}
    if len(passed_idx) > 1:
        out["first_passing"]["covariation_r"] = covariation_fidelity(
            designs.codes[passed_idx], nat_codes, nat_w
        )
    out["all"]["covariation_r"] = covariation_fidelity(designs.codes, nat_codes, nat_w)
    return out


def run_family(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Return every figure of one family."""
    msa = load_family(bundled(f"{name}.sto"))
    hmm = bundled(f"{name}.hmm")
    codes = msa.encode()
    weights = sequence_weights(codes)
    rng = np.random.default_rng(args.seed)
    perm = rng.permutation(msa.n_sequences)
    n_test = max(6, int(round(0.2 * msa.n_sequences)))
    test, train = msa.subset(np.sort(perm[:n_test])), msa.subset(np.sort(perm[n_test:]))

    config = FamilyConfig(**{"steps": args.steps, "seed": args.seed, **json.loads(args.config)})
    t0 = time.perf_counter()
    model, meta, history = train_family(train, config, device="cpu", progress=False)
    train_seconds = time.perf_counter() - t0
    print(f"[{name}] trained in {train_seconds:.1f} s, final loss {history[-1]['loss']:.3f}",
          flush=True)

    # held-out naturals vs decoys
    test_codes, train_codes = test.encode(), train.encode()
    train_w = sequence_weights(train_codes)
    site = SiteIndependent.fit(train_codes, train_w)
    col_dec = np.concatenate(
        [column_shuffled(test_codes, len(test_codes), np.random.default_rng(s)) for s in range(20)]
    )
    pos_dec = np.concatenate(
        [position_shuffled(test_codes, np.random.default_rng(s)) for s in range(20)]
    )
    gen = torch.Generator().manual_seed(args.seed)

    def elbo(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model.elbo(torch.as_tensor(x), n_samples=20, generator=gen).numpy()

    e_test, e_col, e_pos = elbo(test_codes), elbo(col_dec), elbo(pos_dec)
    e_train = elbo(train_codes)
    length = msa.length
    discrimination = {
        "n_heldout": len(test_codes),
        "n_decoys_each": len(col_dec),
        "vae": {
            "auc_column_shuffled": auc(e_test, e_col),
            "auc_position_shuffled": auc(e_test, e_pos),
            "elbo_per_position_train": float(e_train.mean() / length),
            "elbo_per_position_heldout": float(e_test.mean() / length),
        },
        "site_independent": {
            "auc_column_shuffled": auc(site.log_prob(test_codes), site.log_prob(col_dec)),
            "auc_position_shuffled": auc(site.log_prob(test_codes), site.log_prob(pos_dec)),
            "loglik_per_position_heldout": float(site.log_prob(test_codes).mean() / length),
        },
    }
    # anchors: how far the training rows themselves separate naturals from column shuffles
    t0 = time.perf_counter()
    (p_test, p_col) = pair_model_scores(train_codes, train_w, [test_codes, col_dec])
    discrimination["anchors"] = {
        "nearest_training_identity": {
            "auc_column_shuffled": auc(nearest_identity(test_codes, train_codes)[0],
                                       nearest_identity(col_dec, train_codes)[0]),
        },
        "potts_pseudo_likelihood": {
            "auc_column_shuffled": auc(p_test["pseudo_likelihood"], p_col["pseudo_likelihood"]),
            "auc_column_shuffled_energy": auc(p_test["energy"], p_col["energy"]),
            "fit_seconds": time.perf_counter() - t0,
        },
    }
    print(f"[{name}] AUC {json.dumps(discrimination)}", flush=True)

    rules = FeasibilityRules(forbidden_motifs=["N[^P][ST]"])
    nat_seqs = decode(codes, strip_gaps=True)
    natural_rates = pass_rates(check(nat_seqs, rules, reference_lengths=[len(s) for s in nat_seqs]))

    def vae_sample(n: int, r: int) -> np.ndarray:
        g = torch.Generator().manual_seed(1000 * args.seed + r)
        return decode_points(model, prior_points(model, n, g), args.temperature, g)

    def site_sample(n: int, r: int) -> np.ndarray:
        return site.sample(n, torch.Generator().manual_seed(1000 * args.seed + r), 1.0)

    results: dict[str, Any] = {}
    for label, sampler in (("vae", vae_sample), ("site_independent", site_sample)):
        rows, designs, timing = collect(
            sampler, meta, rules, hmm, args.n_designs, args.batch, args.max_rounds, label
        )
        figs = figures_for(rows, designs, args.n_designs, codes, weights)
        figs["timing"] = timing
        results[label] = figs
        fp = figs["first_passing"]
        print(f"[{name}] {label}: {timing['unique']} unique of {timing['drawn']} drawn, "
              f"{fp.get('n', 0)} passing: {json.dumps(fp)}", flush=True)

    # mutation scoring throughput: every single substitution of the first training sequence
    wt = meta.train_ids[0]
    wt_seq = meta.train_seqs[0]
    start = residue_start(wt)
    mutants = [
        f"{wt_seq[col]}{start + r}{m}"
        for col, r in enumerate(meta.residues.get(wt, []))
        if r >= 0
        for m in AMINO_ACIDS
        if m != wt_seq[col]
    ]
    scoring: dict[str, Any] = {}
    if mutants:
        t0 = time.perf_counter()
        scored = score_mutants(model, meta, mutants, wt, None, n_samples=20, batch_size=512)
        secs = time.perf_counter() - t0
        scoring = {"wild_type": wt, "n_mutants": len(scored), "seconds": secs,
                   "mutants_per_second": len(scored) / secs, "elbo_samples": 20}

    return {
        "n_sequences": msa.n_sequences,
        "length_after_filters": msa.length,
        "neff": float(weights.sum()),
        "n_train": train.n_sequences,
        "config": asdict(config),
        "train_seconds_cpu_1_thread": train_seconds,
        "final_train_loss": history[-1]["loss"],
        "discrimination": discrimination,
        "natural_pass_rates": natural_rates,
        "designs": results,
        "mutation_scoring": scoring,
    }


def reweighting_speed() -> dict[str, float]:
    """Return seconds to reweight 10,000 x 200 synthetic aligned rows (no cache)."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 21, (100, 200))
    codes = base[rng.integers(0, 100, 10_000)]
    codes = np.where(rng.random(codes.shape) < 0.1, rng.integers(0, 21, codes.shape), codes)
    t0 = time.perf_counter()
    w = sequence_weights(codes, use_cache=False)
    return {"n": 10_000, "columns": 200, "seconds": time.perf_counter() - t0,
            "neff": float(w.sum()), "threads": torch.get_num_threads()}


def main() -> None:
    """Run the benchmark and write benchmarks/results/protein.json."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--families", default="fn3,Pkinase")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--n-designs", type=int, default=1000)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--max-rounds", type=int, default=20)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--config", default="{}", help="FamilyConfig fields as JSON")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="benchmarks/results/protein.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    out: dict[str, Any] = {
        "targets": TARGETS,
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": args.threads,
                    "torch": torch.__version__},
        "settings": vars(args),
        "reweighting_10000x200": reweighting_speed(),
        "families": {},
    }
    print(f"reweighting: {out['reweighting_10000x200']}", flush=True)
    for name in args.families.split(","):
        out["families"][name] = run_family(name, args)
        path = Path(args.out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(out, indent=2, default=float))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
