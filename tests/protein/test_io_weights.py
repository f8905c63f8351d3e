"""Alignment readers, gap filters, alphabet checks and sequence weights."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from gensci.errors import DataError, FormatError
from gensci.protein.io import (
    ALPHABET,
    bundled,
    decode,
    encode,
    filter_gaps,
    load_family,
    read_alignment,
    residue_start,
)
from gensci.protein.weights import effective_number, nearest_identity, sequence_weights


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_bundled_pfam_seeds_read() -> None:
    fn3 = read_alignment(bundled("fn3.sto"))
    assert fn3.n_sequences == 98 and fn3.length == 117
    kin = read_alignment(bundled("Pkinase.sto"))
    assert kin.n_sequences == 38 and kin.length == 419
    # every row is over the alphabet and the same length
    assert set("".join(fn3.seqs)) <= set(ALPHABET)
    filtered = filter_gaps(kin)
    assert filtered.length < kin.length
    codes = filtered.encode()
    assert ((codes == 0).mean(axis=0) <= 0.3).all()


def test_formats_agree(tmp_path: Path) -> None:
    # One alignment written as aligned FASTA, Stockholm, hmmalign-style A2M and A3M.
    fasta = ">s1\nAC-DE\n>s2\nACFDE\n>s3\nA--DE\n"
    sto = "# STOCKHOLM 1.0\ns1 AC-DE\ns2 ACFDE\ns3 A..DE\n//\n"
    # s2 carries an insertion 'k' between columns 2 and 3; A2M marks insert gaps with '.'
    a2m = ">s1\nAC.-DE\n>s2\nACkFDE\n>s3\nA-.-DE\n"
    a3m = ">s1\nAC-DE\n>s2\nACkFDE\n>s3\nA--DE\n"
    msas = [
        read_alignment(write(tmp_path, "x.fasta", fasta)),
        read_alignment(write(tmp_path, "x.sto", sto)),
        read_alignment(write(tmp_path, "x.a2m", a2m)),
        read_alignment(write(tmp_path, "x.a3m", a3m)),
    ]
    for m in msas:
        assert m.ids == ["s1", "s2", "s3"]
        assert m.seqs == ["AC-DE", "ACFDE", "A--DE"], m.source


def test_focus_columns_a2m(tmp_path: Path) -> None:
    # EVcouplings-style A2M: rows of equal length, lower case marks non-focus columns.
    a2m = ">focus/10-15\nAcD-eF\n>b\nAgDKkF\n>c\nA.DW.W\n"
    m = read_alignment(write(tmp_path, "f.a2m", a2m))
    assert m.focus is None
    assert m.seqs == ["AD-F", "ADKF", "ADWW"]
    assert list(m.columns) == [0, 2, 3, 5]
    # with the focus named, the columns where it has a gap go too (EVE)
    f = read_alignment(write(tmp_path, "f2.a2m", a2m), focus="focus")
    assert f.focus == "focus/10-15"
    assert f.seqs == ["ADF", "ADF", "ADW"]
    assert residue_start(f.focus) == 10
    with pytest.raises(DataError, match="not in the alignment"):
        read_alignment(write(tmp_path, "f3.a2m", a2m), focus="nope")
    # aligned FASTA ignores case (MAFFT writes lower case)
    low = read_alignment(write(tmp_path, "low.fasta", ">a\nac-d\n>b\nacwd\n"))
    assert low.seqs == ["AC-D", "ACWD"]


def test_unaligned_fasta_is_refused(tmp_path: Path) -> None:
    p = write(tmp_path, "u.fasta", ">a\nACDEFG\n>b\nACD\n")
    with pytest.raises(FormatError, match="does not hold an alignment.*'b' has 3"):
        read_alignment(p)


def test_unknown_letter_names_sequence_and_letter(tmp_path: Path) -> None:
    p = write(tmp_path, "bad.fasta", ">ok\nACDE\n>weird_one\nAC*E\n")
    with pytest.raises(DataError, match=r"weird_one.*'\*'"):
        read_alignment(p)
    p2 = write(tmp_path, "amb.fasta", ">ok\nACDE\n>amb\nACXE\n")
    with pytest.raises(DataError, match="amb.*'X'"):
        read_alignment(p2)
    m = read_alignment(p2, on_unknown="drop")
    assert m.ids == ["ok"] and m.dropped_sequences == ["amb"]
    with pytest.raises(DataError, match="seqB.*'Z'"):
        encode(["ACD", "AZD"], ids=["seqA", "seqB"])


def test_empty_and_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="empty"):
        read_alignment(write(tmp_path, "e.fasta", "\n\n"))
    with pytest.raises(FormatError, match="extension"):
        read_alignment(write(tmp_path, "x.txt", ">a\nAC\n"))
    with pytest.raises(FormatError, match="does not exist"):
        read_alignment(tmp_path / "missing.sto")
    with pytest.raises(FormatError, match="not FASTA"):
        read_alignment(write(tmp_path, "n.fasta", "ACDE\n"))


def test_gap_filters_follow_eve(tmp_path: Path) -> None:
    rows = ["ACDEFGHIKL", "ACDEFGHIK-", "A---------", "ACDEF-HI--", "ACDEFGHIKL"]
    p = write(tmp_path, "g.fasta", "".join(f">s{i}\n{r}\n" for i, r in enumerate(rows)))
    m = filter_gaps(read_alignment(p), max_seq_gaps=0.5, max_col_gaps=0.3)
    assert m.ids == ["s0", "s1", "s3", "s4"]  # s2 is 90% gaps
    # column 9 has 2/4 = 50% gaps -> dropped; column 5 has 25% -> kept
    assert list(m.columns) == list(range(9))
    assert m.dropped_sequences == ["s2"]
    assert load_family(p).length == 9


def test_encode_decode_roundtrip() -> None:
    seqs = ["AC-DE", "WYVT-"]
    codes = encode(seqs)
    assert codes.shape == (2, 5) and codes[0, 2] == 0
    assert decode(codes) == seqs
    assert decode(codes, strip_gaps=True) == ["ACDE", "WYVT"]


def test_weights_match_bruteforce(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 21, (5, 30))
    codes = base[rng.integers(0, 5, 60)]
    codes = np.where(rng.random(codes.shape) < 0.1, rng.integers(0, 21, codes.shape), codes)
    w = sequence_weights(codes, threshold=0.8, chunk_size=7, cache_dir=tmp_path)
    expected = []
    for i in range(len(codes)):
        nongap = max((codes[i] != 0).sum(), 1)
        ident = ((codes == codes[i]) & (codes[i] != 0)).sum(axis=1) / nongap
        expected.append(1.0 / (ident > 0.8).sum())
    np.testing.assert_allclose(w, expected, rtol=1e-6)
    assert 5 <= effective_number(w) < 60
    # identical rows share their weight
    dup = np.repeat(codes[:1], 4, axis=0)
    np.testing.assert_allclose(sequence_weights(dup, use_cache=False), 0.25)


def test_weights_cache_and_speed(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 21, (3000, 200))
    t0 = time.perf_counter()
    w1 = sequence_weights(codes, cache_dir=tmp_path)
    first = time.perf_counter() - t0
    assert len(list(tmp_path.glob("*.npy"))) == 1
    t0 = time.perf_counter()
    w2 = sequence_weights(codes, cache_dir=tmp_path)
    assert time.perf_counter() - t0 < first
    np.testing.assert_array_equal(w1, w2)
    np.testing.assert_allclose(w1, 1.0)  # random rows have no neighbours but themselves


def test_nearest_identity() -> None:
    ref = encode(["ACDEF", "WWWWW"])
    q = encode(["ACDEW", "WWWWW", "AC---"])
    ident, idx = nearest_identity(q, ref)
    np.testing.assert_allclose(ident, [0.8, 1.0, 1.0])
    assert list(idx) == [0, 1, 0]
