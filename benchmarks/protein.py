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

`--mode ww`: the WW domain (Pfam PF00397, 4,024 rows, read from the logomaker wheel as A2M),
per split seed: an identity-clustered split (held-out rows below 80% identity to every training
row; bands below 70% and 60% reported) and a random split beside it; the VAE (an ensemble over
`--ensemble` seeds as well) against the pseudo-likelihood Potts model on held-out
log-likelihood per position (VAE: ELBO and 200-sample importance estimate; Potts: energy minus
log Z by annealed importance sampling) and on column-shuffled AUC; the feasibility rules
calibrated on the training naturals against the fixed defaults; the HMM built from the training
rows and the Potts family check on naturals, decoys and designs (its trade-off over thresholds,
and the thresholds chosen on its calibration rows alone); 1,000 passing designs. The 70% / 60%
bands are scored against decoys shuffled from the band's own rows (and, as before, from all
held-out rows); the Potts pseudo-likelihood plus the VAE's log p, and their rank average, are
scored beside. Writes benchmarks/results/protein_ww.json.
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
from gensci.protein.feasibility import FeasibilityRules, check, pass_rates, rules_to_dict
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
    train_codes: np.ndarray,
    weights: np.ndarray,
    queries: list[np.ndarray],
    reg: float = 1e-4,
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
            [d.ids[i] for i in keep],
            [d.aligned[i] for i in keep],
            [d.sequences[i] for i in keep],
            d.z[keep],
            d.codes[keep],
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
        [x["id"] for x in all_rows],
        [""] * len(all_rows),
        [x["sequence"] for x in all_rows],
        np.zeros((len(all_rows), 0)),
        codes,
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
    rows: list[dict[str, Any]],
    designs: Designs,
    want: int,
    nat_codes: np.ndarray,
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
    print(
        f"[{name}] trained in {train_seconds:.1f} s, final loss {history[-1]['loss']:.3f}",
        flush=True,
    )

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
            "auc_column_shuffled": auc(
                nearest_identity(test_codes, train_codes)[0],
                nearest_identity(col_dec, train_codes)[0],
            ),
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
        print(
            f"[{name}] {label}: {timing['unique']} unique of {timing['drawn']} drawn, "
            f"{fp.get('n', 0)} passing: {json.dumps(fp)}",
            flush=True,
        )

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
        scoring = {
            "wild_type": wt,
            "n_mutants": len(scored),
            "seconds": secs,
            "mutants_per_second": len(scored) / secs,
            "elbo_samples": 20,
        }

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


def _scorers_auc(
    scores: dict[str, tuple[np.ndarray, np.ndarray]],
    keep: np.ndarray | None = None,
    decoys: slice | None = None,
) -> dict[str, float]:
    """Return AUC of held-out naturals (rows `keep` only, when given) vs decoys (rows `decoys`
    of the decoy scores, when given) per scorer."""
    out = {}
    for name, (nat, dec) in scores.items():
        pos = nat if keep is None else nat[keep]
        neg = dec if decoys is None else dec[decoys]
        out[name] = auc(pos, neg) if pos.size and neg.size else float("nan")
    return out


def _pooled_ranks(nat: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the ranks of naturals' and decoys' scores in their pooled set, scaled to (0, 1]
    (label-free: a rank average of two scorers needs no scale of either)."""
    from scipy.stats import rankdata

    r = rankdata(np.concatenate([nat, dec])) / (nat.size + dec.size)
    return r[: nat.size], r[nat.size :]


def ww_split(
    msa: Any,
    train_idx: np.ndarray,
    test_idx: np.ndarray,
    args: argparse.Namespace,
    seed: int,
    hmm_check: bool,
) -> dict[str, Any]:
    """Return the VAE-vs-Potts figures of one train/held-out split of WW."""
    from gensci.protein.baseline import PottsConfig, fit_potts, potts_log_partition
    from gensci.protein.hmm import build_hmm, hmm_bit_scores
    from gensci.protein.scoring import elbo_batched, importance_log_likelihood

    codes = msa.encode()
    length = codes.shape[1]
    train, tr_codes, te_codes = msa.subset(train_idx), codes[train_idx], codes[test_idx]
    tr_w = sequence_weights(tr_codes)
    near = nearest_identity(te_codes, tr_codes)[0]
    # decoys: 5 x the held-out rows, each column shuffled across all held-out rows; then, for
    # each identity band, 5 x the band's rows shuffled across the band's own rows only
    parts = [
        np.concatenate(
            [
                column_shuffled(te_codes, len(te_codes), np.random.default_rng(1000 * seed + s))
                for s in range(5)
            ]
        )
    ]
    bands = {"below_0.7": near < 0.7, "below_0.6": near < 0.6}
    decoy_rows = {"all": slice(0, len(parts[0]))}
    for b, (band, keep) in enumerate(bands.items()):
        if keep.sum() < 2:
            continue
        start = sum(len(x) for x in parts)
        parts.append(
            np.concatenate(
                [
                    column_shuffled(
                        te_codes[keep],
                        int(keep.sum()),
                        np.random.default_rng(1000 * seed + 100 * (b + 1) + s),
                    )
                    for s in range(5)
                ]
            )
        )
        decoy_rows[band] = slice(start, start + len(parts[-1]))
    decoys = np.concatenate(parts)
    out: dict[str, Any] = {
        "n_train": len(train_idx),
        "n_heldout": len(test_idx),
        "n_decoys": {k: v.stop - v.start for k, v in decoy_rows.items()},
        "neff_train": float(tr_w.sum()),
        "heldout_nearest_identity": {
            "max": float(near.max()),
            "median": float(np.median(near)),
            "n_below_0.7": int((near < 0.7).sum()),
            "n_below_0.6": int((near < 0.6).sum()),
        },
    }
    scores: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    loglik: dict[str, float] = {}

    site = SiteIndependent.fit(tr_codes, tr_w)
    scores["site_independent"] = (site.log_prob(te_codes), site.log_prob(decoys))
    loglik["site_independent"] = float(site.log_prob(te_codes).mean() / length)
    scores["nearest_identity"] = (near, nearest_identity(decoys, tr_codes)[0])

    t0 = time.perf_counter()
    potts, _ = fit_potts(
        tr_codes, tr_w, PottsConfig(reg=args.potts_reg, steps=args.potts_steps, seed=seed)
    )
    potts_secs = time.perf_counter() - t0
    log_z, log_z_se = potts_log_partition(potts, site, 256, args.ais_temperatures, seed)
    with torch.no_grad():
        pll = [potts.pseudo_log_likelihood(torch.as_tensor(x)).numpy() for x in (te_codes, decoys)]
        energy = [potts.energy(torch.as_tensor(x)).numpy() for x in (te_codes, decoys)]
    scores["potts_pseudo_likelihood"] = (pll[0], pll[1])
    scores["potts_energy"] = (energy[0], energy[1])
    loglik["potts"] = float((energy[0].mean() - log_z) / length)
    loglik["potts_pseudo_likelihood (not a likelihood)"] = float(pll[0].mean() / length)
    out["potts"] = {
        "fit_seconds": potts_secs,
        "log_z": log_z,
        "log_z_se": log_z_se,
        "reg": args.potts_reg,
        "steps": args.potts_steps,
    }

    base = json.loads(args.config)
    vae_te_iw, vae_dec_iw, secs = [], [], []
    for k in range(args.ensemble):
        config = FamilyConfig(**{**base, "seed": 100 * seed + k})
        t0 = time.perf_counter()
        model, meta, history = train_family(train, config, progress=False, weights=tr_w)
        secs.append(time.perf_counter() - t0)
        e_te, e_dec = elbo_batched(model, te_codes, 20), elbo_batched(model, decoys, 20)
        i_te = importance_log_likelihood(model, te_codes, args.iw_samples)
        i_dec = importance_log_likelihood(model, decoys, args.iw_samples)
        vae_te_iw.append(i_te)
        vae_dec_iw.append(i_dec)
        if k == 0:
            scores["vae_elbo"] = (e_te, e_dec)
            scores["vae_importance"] = (i_te, i_dec)
            loglik["vae_elbo"] = float(e_te.mean() / length)
            loglik["vae_importance"] = float(i_te.mean() / length)
            out["vae"] = {
                "config": asdict(config),
                "steps_run": history[-1].get("step"),
                "train_seconds": secs[0],
            }
            first = (model, meta)
    if args.ensemble > 1:
        # mixture of the members: log mean_k p_k(x)
        def mix(v: list[np.ndarray]) -> np.ndarray:
            return np.logaddexp.reduce(np.stack(v), axis=0) - np.log(len(v))

        scores["vae_ensemble"] = (mix(vae_te_iw), mix(vae_dec_iw))
        loglik["vae_ensemble"] = float(mix(vae_te_iw).mean() / length)
        out["vae"]["ensemble"] = args.ensemble
        out["vae"]["ensemble_train_seconds"] = float(sum(secs))
    if hmm_check:
        hmm = build_hmm(train, "ww")
        bits = [hmm_bit_scores(decode(x, strip_gaps=True), hmm) for x in (te_codes, decoys)]
        scores["hmm_bit_score"] = (bits[0], bits[1])
    # combined pair + VAE scores: the sum of the two (both nats) and their pooled-rank average
    vae_key = "vae_ensemble" if "vae_ensemble" in scores else "vae_importance"
    pll_nat, pll_dec = scores["potts_pseudo_likelihood"]
    v_nat, v_dec = scores[vae_key]
    scores["potts_pll_plus_vae_log_p"] = (pll_nat + v_nat, pll_dec + v_dec)
    ranks = [_pooled_ranks(pll_nat, pll_dec), _pooled_ranks(v_nat, v_dec)]
    scores["rank_average_potts_pll_vae_log_p"] = (
        (ranks[0][0] + ranks[1][0]) / 2,
        (ranks[0][1] + ranks[1][1]) / 2,
    )
    out["heldout_loglik_per_position"] = loglik
    out["auc_column_shuffled"] = _scorers_auc(scores, decoys=decoy_rows["all"])
    for band, keep in bands.items():
        # the band's rows against decoys shuffled from the band's own rows (the fair test),
        # and against decoys shuffled from all held-out rows (as reported before)
        if band in decoy_rows:
            out[f"auc_column_shuffled_{band}"] = _scorers_auc(scores, keep, decoy_rows[band])
        out[f"auc_column_shuffled_{band}_all_decoys"] = _scorers_auc(
            scores, keep, decoy_rows["all"]
        )
    out["_model"] = first
    out["_tr_w"] = tr_w
    return out


def run_ww(args: argparse.Namespace) -> dict[str, Any]:
    """Return every WW figure (writes nothing)."""
    from gensci.protein.family import fit_family_check
    from gensci.protein.feasibility import calibrate_rules
    from gensci.protein.hmm import build_hmm, hmm_bit_scores, hmm_evalues, write_hmm
    from gensci.protein.io import describe_read, packaged
    from gensci.protein.split import clustered_split, random_split

    path = packaged("ww")
    result: dict[str, Any] = {"reading": {}}
    for fmt in ("a2m", "fasta"):
        m = load_family(path, format=fmt, on_unknown="drop")
        result["reading"][fmt] = {
            "rows": m.n_sequences,
            "columns": m.length,
            "line": describe_read(m),
        }
    msa = load_family(path, format="a2m", on_unknown="drop")
    codes = msa.encode()
    seqs = decode(codes, strip_gaps=True)
    result["neff"] = float(sequence_weights(codes).sum())
    result["splits"] = {}
    for seed in [int(s) for s in args.split_seeds.split(",")]:
        per: dict[str, Any] = {}
        tr, te = clustered_split(codes, 0.1, 0.8, seed)
        per["clustered_0.8"] = ww_split(msa, tr, te, args, seed, hmm_check=True)
        if str(seed) in args.random_split_seeds.split(","):
            rtr, rte = random_split(len(codes), 0.1, seed)
            per["random"] = ww_split(msa, rtr, rte, args, seed, hmm_check=False)
            per["random"].pop("_model")
            per["random"].pop("_tr_w")
        clu = per["clustered_0.8"]
        (model, meta), tr_w = clu.pop("_model"), clu.pop("_tr_w")
        print(
            f"[ww seed {seed}] "
            + json.dumps(
                {k: clu[k] for k in ("heldout_loglik_per_position", "auc_column_shuffled")},
                default=float,
            ),
            flush=True,
        )

        # feasibility: fixed defaults vs calibrated on the training naturals
        tr_seqs, te_seqs = [seqs[i] for i in tr], [seqs[i] for i in te]
        lengths = [len(s) for s in tr_seqs]
        calibrated = calibrate_rules(tr_seqs)
        clu["rules_calibrated"] = rules_to_dict(calibrated)
        clu["naturals_pass"] = {
            name: {
                "train": pass_rates(check(tr_seqs, r, reference_lengths=lengths))["all"],
                "heldout": pass_rates(check(te_seqs, r, reference_lengths=lengths)),
            }
            for name, r in (("fixed_defaults", FeasibilityRules()), ("calibrated", calibrated))
        }

        # family checks: HMM (built on training rows) and Potts percentile (calibrated on
        # clusters held out of the Potts fit), on held-out naturals, decoys and designs
        from gensci.protein.baseline import PottsConfig

        te_codes = codes[te]
        decoys = column_shuffled(te_codes, 5 * len(te), np.random.default_rng(seed))
        t0 = time.perf_counter()
        fam = fit_family_check(
            codes[tr],
            tr_w,
            quantile=args.check_quantile,
            config=PottsConfig(reg=args.potts_reg, steps=args.potts_steps, seed=seed),
            seed=seed,
        )
        fam_secs = time.perf_counter() - t0
        hmm_path = Path(args.workdir) / f"ww_train_seed{seed}.hmm"
        write_hmm(build_hmm(msa.subset(tr), "ww"), hmm_path, overwrite=True)

        def ww_sample(n: int, r: int, model: Any = model, seed: int = seed) -> np.ndarray:
            g = torch.Generator().manual_seed(1000 * seed + r)
            return decode_points(model, prior_points(model, n, g), args.temperature, g)

        rows, designs, timing = collect(
            ww_sample,
            meta,
            calibrated,
            hmm_path,
            args.n_designs,
            args.batch,
            args.max_rounds,
            "vae",
        )
        figs = figures_for(rows, designs, args.n_designs, codes[tr], tr_w)
        figs["timing"] = timing
        passed = [i for i, r in enumerate(rows) if r["passed"]][: args.n_designs]
        d_codes = designs.codes[passed]
        # the family check's trade-off: thresholds at quantiles of the calibration naturals
        # (clusters held out of the Potts fit, from the training rows only); shares of designs
        # passing, column-shuffled decoys failing and held-out (test) naturals failing
        sc_nat, sc_dec = fam.scores(te_codes), fam.scores(decoys)
        sc_des = fam.scores(d_codes) if len(passed) else np.zeros(0)
        # then the quantiles chosen on the calibration rows alone, so that 0.9 (0.95) of their
        # column-shuffled copies fail (what --family-decoys-fail does)
        grid = [(q, None) for q in (0.05, 0.1, 0.2, 0.3, 0.4, 0.5)]
        grid += [(fam.quantile_failing(share), share) for share in (0.9, 0.95)]
        trade = []
        for q, share in grid:
            t = float(np.quantile(fam.natural_scores, q))
            trade.append(
                {
                    "quantile": q,
                    "chosen_so_calibration_decoys_fail": share,
                    "threshold": t,
                    "designs_pass": float(np.mean(sc_des >= t)) if sc_des.size else None,
                    "decoys_fail": float(np.mean(sc_dec < t)),
                    "heldout_naturals_fail": float(np.mean(sc_nat < t)),
                }
            )
        bits_nat = hmm_bit_scores(te_seqs, hmm_path)
        bits_dec = hmm_bit_scores(decode(decoys, strip_gaps=True), hmm_path)
        clu["family_check"] = {
            "potts_quantile": args.check_quantile,
            "threshold_pll_per_position": fam.threshold,
            "fit_seconds": fam_secs,
            "heldout_naturals_pass": float(fam.passes(te_codes).mean()),
            "column_shuffled_decoys_fail": float(1 - fam.passes(decoys).mean()),
            "designs_pass": float(fam.passes(d_codes).mean()) if len(passed) else None,
            "tradeoff": trade,
            "n_calibration_naturals": int(fam.natural_scores.size),
            "n_designs": int(len(passed)),
            "auc_heldout_vs_decoys": auc(sc_nat, sc_dec),
            "hmm_recognised_e1e-3": {
                "heldout_naturals": float(np.mean(hmm_evalues(te_seqs, hmm_path) <= 1e-3)),
                "column_shuffled_decoys": float(
                    np.mean(hmm_evalues(decode(decoys, strip_gaps=True), hmm_path) <= 1e-3)
                ),
            },
            "hmm_bit_score_auc_naturals_vs_decoys": auc(bits_nat, bits_dec),
            "hmm_bits_below_naturals_5pct": {
                "decoys_fail": float(np.mean(bits_dec < np.quantile(bits_nat, 0.05))),
            },
        }
        clu["designs"] = figs
        print(
            f"[ww seed {seed}] family check {json.dumps(clu['family_check'])}; designs "
            f"{json.dumps(figs['first_passing'], default=float)}",
            flush=True,
        )
        result["splits"][str(seed)] = per
        yield_path = Path(args.out)
        yield_path.parent.mkdir(parents=True, exist_ok=True)
        yield_path.write_text(json.dumps(result, indent=2, default=float))

    # the small families: calibrated rules on a random 20% held out
    small = {}
    for name in ("fn3", "Pkinase"):
        m = load_family(bundled(f"{name}.sto"))
        s_seqs = decode(m.encode(), strip_gaps=True)
        s_tr, s_te = random_split(len(s_seqs), 0.2, 0)
        trs, tes = [s_seqs[i] for i in s_tr], [s_seqs[i] for i in s_te]
        rules = calibrate_rules(trs)
        lens = [len(x) for x in trs]
        small[name] = {
            r: pass_rates(check(x, rules, reference_lengths=lens))["all"]
            for r, x in (("train", trs), ("heldout", tes))
        }
    result["small_families_calibrated_rules_pass"] = small
    return result


def run_rules(args: argparse.Namespace) -> dict[str, Any]:
    """Return the share of training and held-out naturals passing the fixed default rules, the
    calibrated rules (the default: joined with the fixed bands) and the calibrated bands alone,
    on WW's clustered splits and on random 20% splits of the bundled seeds."""
    from gensci.protein.feasibility import calibrate_rules
    from gensci.protein.io import packaged
    from gensci.protein.split import clustered_split, random_split

    out: dict[str, Any] = {}
    families = {"ww": load_family(packaged("ww"), format="a2m", on_unknown="drop")}
    for name in ("fn3", "Pkinase"):
        families[name] = load_family(bundled(f"{name}.sto"))
    for name, msa in families.items():
        codes = msa.encode()
        seqs = decode(codes, strip_gaps=True)
        out[name] = {}
        for seed in [int(x) for x in args.split_seeds.split(",")]:
            if name == "ww":
                tr, te = clustered_split(codes, 0.1, 0.8, seed)
            else:
                tr, te = random_split(len(seqs), 0.2, seed)
            trs, tes = [seqs[i] for i in tr], [seqs[i] for i in te]
            lens = [len(x) for x in trs]
            rules = {
                "fixed_defaults": FeasibilityRules(),
                "calibrated": calibrate_rules(trs),
                "calibrated_bands_alone": calibrate_rules(trs, widen_only=False),
            }
            out[name][str(seed)] = {
                label: {
                    part: pass_rates(check(x, r, reference_lengths=lens))["all"]
                    for part, x in (("train", trs), ("heldout", tes))
                }
                for label, r in rules.items()
            }
        print(f"[rules] {name}: {json.dumps(out[name])}", flush=True)
    return out


def reweighting_speed() -> dict[str, float]:
    """Return seconds to reweight 10,000 x 200 synthetic aligned rows (no cache)."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 21, (100, 200))
    codes = base[rng.integers(0, 100, 10_000)]
    codes = np.where(rng.random(codes.shape) < 0.1, rng.integers(0, 21, codes.shape), codes)
    t0 = time.perf_counter()
    w = sequence_weights(codes, use_cache=False)
    return {
        "n": 10_000,
        "columns": 200,
        "seconds": time.perf_counter() - t0,
        "neff": float(w.sum()),
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    """Run the benchmark and write benchmarks/results/protein.json."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--mode",
        choices=("seeds", "ww", "rules"),
        default="seeds",
        help="seeds: the bundled Pfam seeds; ww: the WW domain (logomaker wheel); "
        "rules: naturals passing fixed and calibrated rules",
    )
    p.add_argument("--split-seeds", default="0,1,2", help="ww: split seeds")
    p.add_argument(
        "--random-split-seeds",
        default="0,1,2",
        help="ww: split seeds that also get the random split ('' for none)",
    )
    p.add_argument("--ensemble", type=int, default=1, help="ww: VAE seeds in the ensemble")
    p.add_argument("--iw-samples", type=int, default=200)
    p.add_argument("--potts-reg", type=float, default=1e-3)
    p.add_argument("--potts-steps", type=int, default=1000)
    p.add_argument("--ais-temperatures", type=int, default=500)
    p.add_argument("--check-quantile", type=float, default=0.05)
    p.add_argument("--workdir", default="/tmp", help="ww: where the training HMMs go")
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
    if args.mode == "rules":
        if args.out == "benchmarks/results/protein.json":
            args.out = "benchmarks/results/protein_rules.json"
        Path(args.out).write_text(json.dumps(run_rules(args), indent=2))
        print(f"wrote {args.out}")
        return
    if args.mode == "ww":
        if args.out == "benchmarks/results/protein.json":
            args.out = "benchmarks/results/protein_ww.json"
        t0 = time.perf_counter()
        ww = run_ww(args)
        ww["settings"] = vars(args)
        ww["seconds"] = time.perf_counter() - t0
        ww["machine"] = {
            "cpu": platform.processor() or platform.machine(),
            "threads": args.threads,
            "torch": torch.__version__,
        }
        Path(args.out).write_text(json.dumps(ww, indent=2, default=float))
        print(f"wrote {args.out}")
        return
    out: dict[str, Any] = {
        "targets": TARGETS,
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "threads": args.threads,
            "torch": torch.__version__,
        },
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
