"""Family VAE through the core, design, feasibility rules, HMM check, metrics and scoring."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from gensci.errors import CheckpointError, ConfigError, DataError
from gensci.protein.baseline import SiteIndependent
from gensci.protein.design import design, finish
from gensci.protein.feasibility import (
    FeasibilityRules,
    check,
    load_rules,
    longest_run,
    min_window_entropy,
    pass_rates,
)
from gensci.protein.hmm import hmm_evalues, recognised_fraction
from gensci.protein.io import bundled, decode, encode, load_family, read_alignment
from gensci.protein.metrics import auc, column_shuffled, covariation_fidelity, pair_correlations
from gensci.protein.model import (
    FamilyConfig,
    load_family_model,
    match_alignment,
    save_family,
    train_family,
)
from gensci.protein.scoring import parse_mutant, score_mutants, spearman

TINY = FamilyConfig(latent_dim=2, hidden=(32,), steps=150, batch_size=32, kl_warmup_steps=50)


@pytest.fixture(scope="module")
def fn3():  # type: ignore[no-untyped-def]
    torch.set_num_threads(1)
    msa = load_family(bundled("fn3.sto"), focus="LAR_DROME/418-503")
    model, meta, history = train_family(msa, TINY, progress=False)
    return msa, model, meta, history


def test_training_lowers_loss_and_roundtrips(fn3, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    msa, model, meta, history = fn3
    assert history[-1]["loss"] < history[0]["loss"] - 0.2
    assert meta.length == msa.length and meta.neff == pytest.approx(98.0)
    assert meta.focus == "LAR_DROME/418-503"
    path = save_family(model, meta, tmp_path / "m.safetensors")
    with pytest.raises(Exception, match="exists"):
        save_family(model, meta, path)
    loaded, meta2 = load_family_model(path)
    x = torch.as_tensor(msa.encode()[:5])
    torch.testing.assert_close(loaded.decode(loaded.encode(x)[0]), model.decode(model.encode(x)[0]))
    assert meta2.train_ids == msa.ids and meta2.columns == [int(c) for c in msa.columns]


def test_trained_model_prefers_naturals(fn3) -> None:  # type: ignore[no-untyped-def]
    msa, model, _, _ = fn3
    codes = msa.encode()
    rng = np.random.default_rng(0)
    decoys = np.stack([rng.permutation(row) for row in codes])  # positions shuffled
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        nat = model.elbo(torch.as_tensor(codes), n_samples=2, generator=g).numpy()
        bad = model.elbo(torch.as_tensor(decoys), n_samples=2, generator=g).numpy()
    assert auc(nat, bad) > 0.95


def test_other_alignment_is_refused(fn3) -> None:  # type: ignore[no-untyped-def]
    _, _, meta, _ = fn3
    with pytest.raises(CheckpointError, match="alignment of 117 columns"):
        match_alignment(meta, read_alignment(bundled("Pkinase.sto")))
    same = match_alignment(meta, read_alignment(bundled("fn3.sto")))
    assert same.length == meta.length and same.seqs[0] == meta.train_seqs[0]


def test_design_modes(fn3) -> None:  # type: ignore[no-untyped-def]
    msa, model, _, _ = fn3
    codes = msa.encode()
    prior = design(model, 40, "prior", temperature=0.0, seed=3)
    again = design(model, 40, "prior", temperature=0.0, seed=3)
    assert prior.sequences == again.sequences  # seeded
    assert len(set(prior.sequences)) == len(prior)  # deduplicated
    assert all("-" not in s and s for s in prior.sequences)
    hot = design(model, 40, "prior", temperature=1.5, seed=3)
    assert len(hot) >= len(prior)
    near = design(model, 10, "near", seed_codes=[codes[0]], scale=0.1, dedupe=False)
    far = design(model, 10, "prior", dedupe=False, seed=1)
    ident = lambda d: ((d.codes == codes[0]) & (codes[0] != 0)).mean()  # noqa: E731
    assert ident(near) > ident(far)
    line = design(model, 5, "line", seed_codes=[codes[0], codes[1]], dedupe=False)
    assert line.z.shape == (5, 2)
    np.testing.assert_allclose(line.z[2], (line.z[0] + line.z[4]) / 2, atol=1e-5)
    with pytest.raises(ConfigError):
        design(model, 5, "sideways")
    with pytest.raises(DataError):
        design(model, 5, "near")
    with pytest.raises(ConfigError):
        design(model, 5, temperature=-1.0)


def test_finish_strips_and_dedupes() -> None:
    codes = encode(["AC-D", "ACD-", "W---", "----"])
    d = finish(codes, np.zeros((4, 2)))
    assert d.sequences == ["ACD", "W"]
    assert d.aligned == ["AC-D", "W---"]


def test_feasibility_rules(tmp_path: Path) -> None:
    rules = FeasibilityRules(
        length=(10, 30), forbidden_motifs=["N[^P][ST]"], cysteines=(0, 1), max_homopolymer=4
    )
    seqs = ["MDTAYIAKQRQISFVESHFSEQ", "MKNGSAYIAKQR", "MCCKAAAAAYIK", "MKQQQQQQ"]
    rows = check(seqs, rules, identity=[0.5, 0.5, 0.99, 0.2])
    assert rows[0]["passed"] and rows[0]["failed"] == ""
    assert rows[1]["failed"] == "motifs"
    assert {"homopolymer", "cysteines", "novelty"} <= set(rows[2]["failed"].split(";"))
    assert "composition" in rows[3]["failed"] and "low_complexity" in rows[3]["failed"]
    assert "length" in rows[3]["failed"]
    rates = pass_rates(rows)
    assert rates["all"] == 0.25 and rates["motifs"] == 0.75
    assert longest_run("AABBBBC") == 4
    assert min_window_entropy("AAAAAAAAAAAAAAAA", 12) == 0.0
    assert min_window_entropy("ACDEFGHIKLMN", 12) == pytest.approx(np.log2(12))
    # files: YAML and TOML, unknown keys refused by name
    (tmp_path / "r.yaml").write_text("net_charge: [-5, 5]\nforbidden_motifs: ['N[^P][ST]']\n")
    (tmp_path / "r.toml").write_text("[rules]\ncysteines = [0, 2]\n")
    (tmp_path / "bad.yaml").write_text("colour: red\n")
    assert load_rules(tmp_path / "r.yaml").net_charge == (-5.0, 5.0)
    assert load_rules(tmp_path / "r.toml").cysteines == (0.0, 2.0)
    with pytest.raises(ConfigError, match="colour"):
        load_rules(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="range"):
        FeasibilityRules(pI=(9.0, 4.0))
    with pytest.raises(ConfigError, match="regex"):
        FeasibilityRules(forbidden_motifs=["N[^P"])


def test_hmm_recognises_family_not_shuffles() -> None:
    msa = load_family(bundled("fn3.sto"))
    seqs = decode(msa.encode()[:20], strip_gaps=True)
    rng = np.random.default_rng(0)
    shuffled = ["".join(rng.permutation(list(s))) for s in seqs]
    e_nat = hmm_evalues(seqs, bundled("fn3.hmm"))
    e_shuf = hmm_evalues(shuffled, bundled("fn3.hmm"))
    assert recognised_fraction(e_nat, 1e-3) == 1.0
    assert recognised_fraction(e_shuf, 1e-3) < 0.2


def test_covariation_and_baseline() -> None:
    rng = np.random.default_rng(0)
    # columns 0 and 1 perfectly coupled, column 2 independent
    a = rng.integers(1, 3, 400)
    codes = np.stack([a, a, rng.integers(1, 3, 400)], axis=1)
    c = pair_correlations(codes)
    assert c.shape == (3 * 21 * 21,)
    assert c.max() == pytest.approx(0.25, abs=0.02)  # f_ij - f_i f_j = 0.5 - 0.25
    assert covariation_fidelity(codes[:200], codes[200:]) > 0.9
    # pairs of coupled columns over 4 letters: a site-independent sampler loses the coupling
    b = rng.integers(1, 5, (2000, 6))
    coupled = np.repeat(b, 2, axis=1)
    si = SiteIndependent.fit(coupled, pseudocount=0.0)
    draws = si.sample(2000, torch.Generator().manual_seed(0))
    assert abs(covariation_fidelity(draws, coupled)) < 0.1
    assert covariation_fidelity(coupled[:1000], coupled[1000:]) > 0.95
    np.testing.assert_allclose(si.probs[:, 1:5].sum(1), 1.0)
    shuffled = column_shuffled(codes, 400, rng)
    np.testing.assert_array_equal(np.sort(shuffled[:, 0]), np.sort(codes[:, 0]))
    assert auc(np.array([2.0, 3.0]), np.array([1.0, 0.0])) == 1.0
    assert auc(np.array([1.0]), np.array([1.0])) == 0.5


def test_mutation_scoring(fn3) -> None:  # type: ignore[no-untyped-def]
    _, model, meta, _ = fn3
    assert parse_mutant("A23C:D45E")[1].pos == 45
    with pytest.raises(DataError, match="A23"):
        parse_mutant("A23")
    # LAR_DROME/418-503 starts S A P R N V
    rows = score_mutants(model, meta, ["S418S", "S418A", "A419W:P420G", "S500A"], batch_size=2)
    assert rows[0]["delta_elbo"] == pytest.approx(0.0, abs=1.0)
    assert rows[3]["status"] == "outside model"
    assert all(np.isfinite(r["delta_elbo"]) for r in rows[:3])
    with pytest.raises(DataError, match="residue 418 of the wild type is 'S', not 'G'"):
        score_mutants(model, meta, ["G418A"])
    assert spearman([1, 2, 3, 4], [2, 4, 6, 9]) == pytest.approx(1.0)
