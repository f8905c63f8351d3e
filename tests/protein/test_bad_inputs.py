"""Bad alignments, HMMs, mutant tables, rules and family checkpoints stop with one gensci error
naming the file; outputs must carry their format's suffix; only a finite score is 'ok'."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from gensci import checkpoint
from gensci.errors import CheckpointError, ConfigError, DataError, FormatError
from gensci.protein import scoring
from gensci.protein.feasibility import FeasibilityRules, check, load_rules
from gensci.protein.hmm import load_hmm
from gensci.protein.io import bundled, read_alignment, write_fasta
from gensci.protein.model import KIND, FamilyMeta, build_vae, load_family_model
from tests.core.test_bad_files import check_cases, run_main

FASTA = b">a/1-4\nACDE\n>b/1-4\nAC-E\n"


def test_alignment_reader_refuses_bad_files(tmp_path: Path) -> None:
    def file(name: str, data: bytes) -> Path:
        (tmp_path / name).write_bytes(data)
        return tmp_path / name

    packed = gzip.compress(FASTA * 50)
    (tmp_path / "dir.sto").mkdir()
    cases = {
        "empty": (file("e.fasta", b""), DataError, "empty (0 bytes)"),
        "truncated gzip": (file("t.fasta.gz", packed[: len(packed) // 2]), FormatError,
                           "cannot read"),
        "latin-1 sequence": (file("l.fasta", b">a\nAC\xc9E\n>b\nACDE\n"), FormatError,
                             "not UTF-8 text: byte 0xc9 on line 2"),
        "folder": (tmp_path / "dir.sto", FormatError, "is a folder"),
        "missing": (tmp_path / "none.a2m", FormatError, "does not exist"),
        "truncated row": (file("r.fasta", FASTA[:-3]), FormatError, "does not hold an alignment"),
    }
    check_cases(read_alignment, cases)
    # a Latin-1 name in Stockholm markup or a FASTA header cannot reach the sequences: read it
    sto = b"# STOCKHOLM 1.0\n#=GF AU M\xfcller\na/1-4 ACDE\nb/1-4 AC-E\n//\n"
    assert read_alignment(file("ok.sto", sto)).seqs == ["ACDE", "AC-E"]
    assert read_alignment(file("h.fasta", b">a M\xfcller\nACDE\n>b\nAC-E\n")).ids == ["a", "b"]


def test_hmm_reader_refuses_bad_files(tmp_path: Path) -> None:
    raw = bundled("fn3.hmm").read_bytes()
    (tmp_path / "cut.hmm").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "zero.hmm").write_bytes(b"")
    (tmp_path / "text.hmm").write_bytes(b"not an hmm\n\xff\n")
    (tmp_path / "dir.hmm").mkdir()
    cases = {
        "truncated": (tmp_path / "cut.hmm", FormatError, "cannot read"),
        "empty": (tmp_path / "zero.hmm", DataError, "empty (0 bytes)"),
        "not an hmm": (tmp_path / "text.hmm", FormatError, "cannot read"),
        "folder": (tmp_path / "dir.hmm", FormatError, "is a folder"),
    }
    check_cases(load_hmm, cases)


def test_mutant_table_refusals(tmp_path: Path) -> None:
    def csv(name: str, data: bytes) -> Path:
        (tmp_path / name).write_bytes(data)
        return tmp_path / name

    cases = {
        "empty": (csv("e.csv", b""), DataError, "empty (0 bytes)"),
        "latin-1": (csv("l.csv", b"mutant,note\nA1C,M\xfcller\n"), FormatError, "not UTF-8"),
        "header only": (csv("h.csv", b"mutant,DMS_score\n"), DataError, "holds no mutants"),
        "no column": (csv("n.csv", b"variant\nA1C\n"), FormatError, "no 'mutant' column"),
        "ragged row": (csv("r.csv", b"mutant,DMS_score\nA1C,0.5,7\n"), FormatError, "line 2"),
        "short row": (csv("s.csv", b"mutant,DMS_score\nA1C,1\nA2C\n"), FormatError, "line 3"),
    }
    check_cases(scoring.read_mutants, cases)
    rows, _ = scoring.read_mutants(csv("ok.csv", b"\xef\xbb\xbfmutant,DMS_score\nA1C,\nA2C,nan\n"))
    assert np.isnan(scoring.dms_scores(rows, "ok.csv")).all()
    rows, _ = scoring.read_mutants(csv("bad.csv", b"mutant,DMS_score\nA1C,0.2\nA2C,high\n"))
    with pytest.raises(DataError, match="bad.csv: line 3: DMS_score 'high' is not a number"):
        scoring.dms_scores(rows, tmp_path / "bad.csv")


def test_rules_file_refusals(tmp_path: Path) -> None:
    def rules(name: str, data: bytes) -> Path:
        (tmp_path / name).write_bytes(data)
        return tmp_path / name

    cases = {
        "empty": (rules("e.yaml", b""), ConfigError, "empty (0 bytes)"),
        "comments only": (rules("c.yaml", b"# nothing\n"), ConfigError, "holds no rules"),
        "latin-1": (rules("l.yaml", b"gravy: [-1, 1]  # M\xfcller\n"), FormatError, "not UTF-8"),
        "a list": (rules("a.yaml", b"- gravy\n- pI\n"), ConfigError, "mapping"),
        "rules list": (rules("r.yaml", b"rules: [1, 2]\n"), ConfigError, "mapping"),
        "nan bound": (rules("n.yaml", b"gravy: [.nan, 1]\n"), ConfigError, "'gravy'"),
        "inf cap": (rules("i.yaml", b"max_residue_fraction: .inf\n"), ConfigError, "finite"),
        "text cap": (rules("t.yaml", b"max_homopolymer: many\n"), ConfigError, "finite"),
        "scalar range": (rules("s.yaml", b"pI: 5\n"), ConfigError, "range"),
        "bad toml": (rules("b.toml", b"gravy = [\n"), ConfigError, "cannot parse"),
        "unknown key": (rules("u.yaml", b"gravity: [0, 1]\n"), ConfigError, "gravity"),
        "bad yaml": (rules("y.yaml", b"gravy: [0, 1\n"), ConfigError, "cannot parse"),
        "folder": (tmp_path, ConfigError, "must end in"),
    }
    (tmp_path / "d.yaml").mkdir()
    cases["folder"] = (tmp_path / "d.yaml", ConfigError, "is a folder")
    check_cases(load_rules, cases)
    ok = load_rules(rules("ok.yaml", b"gravy: ['-1e0', 1e0]\ncomposition_caps: {C: '0.1'}\n"))
    assert ok.gravy == (-1.0, 1.0) and ok.composition_caps == {"C": 0.1}
    # a NaN metric passes no range
    row = check(["ACDEFGHIK"], FeasibilityRules(), identity=[float("nan")])[0]
    assert not row["passed"] and "novelty" in row["failed"]


def _family_file(path: Path, **changes: object) -> Path:
    meta = FamilyMeta(
        alphabet="-ACDEFGHIKLMNPQRSTVWY", length=4, columns=[0, 1, 2, 3],
        train_ids=["wt/1-4", "b/1-4"], train_seqs=["ACDE", "AC-E"], neff=2.0, focus="wt/1-4",
        residues={"wt/1-4": [0, 1, 2, 3]}, width=4,
    ).__dict__
    meta = {**meta, **changes}
    meta = {k: v for k, v in meta.items() if v is not None}
    from gensci.protein.model import FamilyConfig

    return checkpoint.save(build_vae(4, FamilyConfig(hidden=(4,), latent_dim=2)), path,
                           metadata=meta)


def test_family_checkpoint_metadata_is_checked(tmp_path: Path) -> None:
    model, meta = load_family_model(_family_file(tmp_path / "ok.safetensors"))
    assert meta.length == 4
    bad = {
        "no sequences": ({"train_seqs": None}, "lacks ['train_seqs']"),
        "unknown key": ({"extra": 1}, "unknown keys ['extra']"),
        "length text": ({"length": "4"}, "'length' is a str"),
        "ids not text": ({"train_ids": [1, 2]}, "lists of text"),
        "count": ({"train_ids": ["a"]}, "1 ids for 2"),
        "other kind": ({"kind": "x"}, "not a protein family checkpoint"),
    }
    for case, (changes, msg) in bad.items():
        path = _family_file(tmp_path / f"{case.replace(' ', '_')}.safetensors", **changes)
        with pytest.raises(CheckpointError) as info:
            load_family_model(path)
        assert str(path) in str(info.value) and msg in str(info.value), (case, info.value)


def test_only_finite_scores_are_ok(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    _, meta = load_family_model(_family_file(tmp_path / "f.safetensors", kind=KIND))

    def elbo(model, codes, *args, **kwargs):  # type: ignore[no-untyped-def]
        out = -np.arange(len(codes), dtype=float)
        out[codes[:, 1] == 5] = np.nan  # mutants with F at residue 2 score NaN
        return out

    monkeypatch.setattr(scoring, "elbo_batched", elbo)
    rows = scoring.score_mutants(None, meta, ["C2D", "C2F", "A9C"])  # type: ignore[arg-type]
    assert [r["status"] for r in rows] == ["ok", "non-finite score", "outside model"]
    assert np.isfinite(rows[0]["delta_elbo"])
    monkeypatch.setattr(scoring, "elbo_batched", lambda *a, **k: np.full(len(a[1]), np.nan))
    with pytest.raises(DataError, match="wild type 'wt/1-4' has ELBO nan"):
        scoring.score_mutants(None, meta, ["C2D"])  # type: ignore[arg-type]


def test_outputs_need_their_suffix(tmp_path: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(FormatError, match=r"d.txt has the wrong suffix.*\.fasta"):
        write_fasta(tmp_path / "d.txt", ["a"], ["ACDE"])
    assert write_fasta(tmp_path / "d.fa", ["a"], ["ACDE"]).read_text() == ">a\nACDE\n"
    (tmp_path / "m.csv").write_text("mutant\nA1C\n")
    line = run_main(["protein", "score", tmp_path / "none.safetensors", tmp_path / "m.csv",
                     "--out", tmp_path / "scores.tsv"], capsys, monkeypatch)
    assert "scores.tsv" in line and ".csv" in line
    ckpt = _family_file(tmp_path / "f.safetensors")
    (tmp_path / "bad.csv").write_bytes(b"mutant\nA1C\xff\n")
    line = run_main(["protein", "score", ckpt, tmp_path / "bad.csv", "--out",
                     tmp_path / "s.csv", "--device", "cpu"], capsys, monkeypatch)
    assert "bad.csv" in line and "not UTF-8" in line and not (tmp_path / "s.csv").exists()
    (tmp_path / "r.yaml").write_bytes(b"")
    line = run_main(["protein", "design", ckpt, "--out", tmp_path / "d", "--rules",
                     tmp_path / "r.yaml", "--device", "cpu"], capsys, monkeypatch)
    assert "r.yaml is empty" in line and not (tmp_path / "d").exists()
