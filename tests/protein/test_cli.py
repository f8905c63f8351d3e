"""The `gensci protein` commands end to end on a tiny model."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gensci.errors import CheckpointError, DataError, OutputExistsError
from gensci.protein.cli import app
from gensci.protein.io import bundled

runner = CliRunner()
TINY = ["--steps", "60", "--latent-dim", "2", "--hidden", "32", "--device", "cpu"]


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=True)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("train") / "model"
    res = invoke("train", bundled("fn3.sto"), "--out", out, "--focus", "LAR_DROME/418-503", *TINY)
    assert res.exit_code == 0, res.output
    assert (out / "model.safetensors").exists() and (out / "history.csv").exists()
    return out


def test_train_refuses_to_clobber(trained: Path) -> None:
    res = invoke("train", "fn3", "--out", trained, *TINY)
    assert isinstance(res.exception, OutputExistsError)


def test_design_writes_fasta_and_metrics(trained: Path, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("forbidden_motifs: ['N[^P][ST]']\nnovelty: [0.2, 0.95]\n")
    out = tmp_path / "d"
    res = invoke(
        "design",
        trained,
        "--out",
        out,
        "-n",
        "30",
        "--temperature",
        "0.5",
        "--rules",
        rules,
        "--hmm",
        bundled("fn3.hmm"),
        "--device",
        "cpu",
    )
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    fasta = (out / "designs.fasta").read_text()
    assert 0 < len(rows) <= 30 and fasta.count(">") == len(rows)
    for r in rows:
        assert r["passed"] in ("True", "False")
        assert (r["passed"] == "True") == (r["failed"] == "")
        assert ("motifs" in r["failed"]) == bool(r["motif_hits"])
        assert float(r["hmm_evalue"]) >= 0
    # no clobbering; --near and --to; unknown ids and other alignments refused
    assert isinstance(invoke("design", trained, "--out", out).exception, OutputExistsError)
    near = invoke(
        "design",
        trained,
        "--out",
        tmp_path / "n",
        "-n",
        "5",
        "--near",
        "TENA_CHICK/1495-1571",
        "--to",
        "LAR_DROME/710-800",
        "--device",
        "cpu",
    )
    assert near.exit_code == 0, near.output
    bad = invoke("design", trained, "--out", tmp_path / "b", "--near", "NOPE_HUMAN")
    assert isinstance(bad.exception, DataError)
    other = invoke(
        "design",
        trained,
        "--out",
        tmp_path / "o",
        "--near",
        "CDC15_YEAST/25-272",
        "--alignment",
        bundled("Pkinase.sto"),
    )
    assert isinstance(other.exception, CheckpointError)
    assert "alignment of 117 columns" in str(other.exception)


def test_design_n_passing_draws_until_enough_pass(trained: Path, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("novelty: [0.2, 0.95]\n")
    # one draw of 10 at temperature 1 does not give 12 passing designs; the command draws on
    out = tmp_path / "p"
    res = invoke(
        "design",
        trained,
        "--out",
        out,
        "-n",
        "10",
        "--n-passing",
        "12",
        "--temperature",
        "1.0",
        "--rules",
        rules,
        "--device",
        "cpu",
    )
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert len(rows) == 12 and all(r["passed"] == "True" for r in rows)
    records = (out / "designs.fasta").read_text().split(">")[1:]
    seqs = ["".join(r.splitlines()[1:]) for r in records]
    assert len(seqs) == 12 and len(set(seqs)) == 12  # unique across draws
    assert "12 passing designs from" in res.output
    # a deterministic draw (argmax decoding) repeats itself: it stops and says it fell short
    res = invoke(
        "design",
        trained,
        "--out",
        tmp_path / "q",
        "-n",
        "3",
        "--n-passing",
        "50",
        "--near",
        "TENA_CHICK/1495-1571",
        "--to",
        "LAR_DROME/710-800",
        "--device",
        "cpu",
    )
    assert res.exit_code == 0, res.output
    assert "fewer than asked" in res.output


def test_score_writes_delta_elbo(trained: Path, tmp_path: Path) -> None:
    mutants = tmp_path / "m.csv"
    mutants.write_text("mutant,DMS_score\nS418A,0.1\nA419C,0.3\nS418A:P420W,-1\nR421A,0\n")
    out = tmp_path / "scores.csv"
    res = invoke(
        "score",
        trained / "model.safetensors",
        mutants,
        "--out",
        out,
        "--device",
        "cpu",
        "--samples",
        "2",
    )
    assert res.exit_code == 0, res.output
    assert "Spearman" in res.output
    rows = list(csv.DictReader(out.open()))
    assert [r["mutant"] for r in rows] == ["S418A", "A419C", "S418A:P420W", "R421A"]
    assert all(r["status"] == "ok" and r["delta_elbo"] != "nan" for r in rows)
    again = invoke("score", trained, mutants, "--out", out)
    assert isinstance(again.exception, OutputExistsError)
    (tmp_path / "nomut.csv").write_text("variant\nS418A\n")
    missing = invoke("score", trained, tmp_path / "nomut.csv", "--out", tmp_path / "x.csv")
    assert "no 'mutant' column" in str(missing.exception)


def test_study_writes_report(tmp_path: Path) -> None:
    out = tmp_path / "study"
    res = invoke(
        "study",
        "Pkinase",
        "--out",
        out,
        "-n",
        "30",
        "--steps",
        "60",
        "--latent-dim",
        "2",
        "--device",
        "cpu",
    )
    assert res.exit_code == 0, res.output
    for name in (
        "latent_map.png",
        "histograms.png",
        "metrics.csv",
        "baseline_metrics.csv",
        "designs.fasta",
        "summary.json",
        "model.safetensors",
    ):
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_sequences"] == 38
    assert 0.0 <= summary["vae"]["pass_rates"]["all"] <= 1.0
    assert "covariation_r" in summary["site_independent"]


def test_train_defaults_match_family_config() -> None:
    """The CLI's model defaults are FamilyConfig's, so the documented defaults cannot drift."""
    import inspect

    from gensci.protein.cli import train_cmd
    from gensci.protein.model import FamilyConfig

    params = inspect.signature(train_cmd).parameters
    cfg = FamilyConfig()
    assert tuple(int(h) for h in params["hidden"].default.split(",")) == cfg.hidden
    for cli_name, field in [
        ("latent_dim", "latent_dim"),
        ("steps", "steps"),
        ("batch_size", "batch_size"),
        ("lr", "lr"),
        ("kl_warmup", "kl_warmup_steps"),
        ("dropout", "dropout"),
        ("weight_decay", "weight_decay"),
        ("identity", "identity_threshold"),
        ("decoder_groups", "decoder_groups"),
        ("decoder_temperature", "decoder_temperature"),
        ("bayesian_decoder", "bayesian_decoder"),
    ]:
        assert params[cli_name].default == getattr(cfg, field), cli_name
