"""Family membership: search designs with the family's profile HMM (pyhmmer hmmsearch), and
build that HMM from an alignment (pyhmmer hmmbuild)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gensci.errors import DataError, FormatError
from gensci.files import check_input_file
from gensci.protein.io import MSA


def load_hmm(path: str | Path):  # type: ignore[no-untyped-def]
    """Return the first profile HMM in a HMMER3 file (pyhmmer.plan7.HMM)."""
    from pyhmmer.plan7 import HMMFile

    p = check_input_file(path, "HMM file")
    try:
        with HMMFile(str(p)) as fh:
            hmm = fh.read()
    except Exception as exc:  # pyhmmer raises ValueError/EOFError on malformed files
        raise FormatError(f"cannot read {p} as a HMMER3 profile: {exc}") from None
    if hmm is None:
        raise FormatError(f"{p} holds no profile HMM")
    return hmm


def hmm_evalues(
    sequences: Sequence[str],
    hmm_path: str | Path,
    z: float | None = None,
    cpus: int = 1,
) -> np.ndarray:
    """Return each sequence's best E-value against the HMM (inf where not reported): (N,).

    sequences: ungapped protein sequences. z: effective database size for E-values; None uses
    the number of sequences searched, as hmmsearch does. Reporting threshold is E <= 10.
    """
    import pyhmmer
    from pyhmmer.easel import Alphabet, TextSequence

    hmm = load_hmm(hmm_path)
    alphabet = Alphabet.amino()
    if len(sequences) == 0:
        raise DataError("no sequences to search")
    names = [f"s{i}".encode() for i in range(len(sequences))]
    digital = []
    for name, seq in zip(names, sequences, strict=True):
        if not seq:
            seq = "X"  # an empty design simply scores nothing
        try:
            digital.append(TextSequence(name=name, sequence=seq).digitize(alphabet))
        except ValueError as exc:
            raise DataError(f"sequence {name.decode()} ({seq[:20]}) is not protein: {exc}") from exc
    block = pyhmmer.easel.DigitalSequenceBlock(alphabet, digital)
    kwargs: dict[str, Any] = {"E": 10.0, "cpus": cpus}
    if z is not None:
        kwargs["Z"] = float(z)
    evalues = np.full(len(sequences), np.inf)
    index = {n: i for i, n in enumerate(names)}
    # pyhmmer's stubs want an iterable of sequences; a block is one (and the fast path)
    for hits in pyhmmer.hmmsearch(hmm, block, **kwargs):  # type: ignore[arg-type]
        for hit in hits:
            name = hit.name if isinstance(hit.name, bytes) else str(hit.name).encode()
            i = index[name]
            evalues[i] = min(evalues[i], float(hit.evalue))
    return evalues


def recognised_fraction(evalues: np.ndarray, threshold: float = 1e-3) -> float:
    """Return the fraction of sequences with E-value <= `threshold`."""
    if len(evalues) == 0:
        return float("nan")
    return float(np.mean(np.asarray(evalues) <= threshold))


def build_hmm(msa: MSA, name: str = "family"):  # type: ignore[no-untyped-def]
    """Return a profile HMM built from the aligned rows of `msa` (pyhmmer's hmmbuild)."""
    import pyhmmer
    from pyhmmer.easel import Alphabet, TextMSA, TextSequence

    if msa.n_sequences < 1:
        raise DataError("cannot build an HMM from an empty alignment")
    alphabet = Alphabet.amino()
    rows = [TextSequence(name=f"s{i}".encode(), sequence=seq) for i, seq in enumerate(msa.seqs)]
    digital = TextMSA(name=name.encode(), sequences=rows).digitize(alphabet)
    builder = pyhmmer.plan7.Builder(alphabet)
    hmm, _, _ = builder.build_msa(digital, pyhmmer.plan7.Background(alphabet))
    return hmm


def write_hmm(hmm, path: str | Path, overwrite: bool = False) -> Path:  # type: ignore[no-untyped-def]
    """Write a profile HMM as HMMER3 text atomically; the name must end in '.hmm'."""
    from gensci.files import check_suffix
    from gensci.runtime import atomic_save

    check_suffix(path, (".hmm",), "profile HMM")

    def write(p: Path) -> None:
        with open(p, "wb") as fh:
            hmm.write(fh)

    return atomic_save(path, write, overwrite=overwrite, suffix=".hmm")


def hmm_bit_scores(sequences: Sequence[str], hmm) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Return each sequence's best bit score against `hmm` (an HMM or a path): (N,).

    Every hit is reported (no E-value cut), so the scores can be compared with the naturals'
    distribution; -inf where hmmsearch finds no alignment at all.
    """
    import pyhmmer
    from pyhmmer.easel import Alphabet, DigitalSequenceBlock, TextSequence

    if isinstance(hmm, (str, Path)):
        hmm = load_hmm(hmm)
    if len(sequences) == 0:
        raise DataError("no sequences to search")
    alphabet = Alphabet.amino()
    names = [f"s{i}".encode() for i in range(len(sequences))]
    block = DigitalSequenceBlock(
        alphabet,
        [
            TextSequence(name=n, sequence=s or "X").digitize(alphabet)
            for n, s in zip(names, sequences, strict=True)
        ],
    )
    scores = np.full(len(sequences), -np.inf)
    index = {n: i for i, n in enumerate(names)}
    search = pyhmmer.hmmsearch(
        hmm,
        block,  # type: ignore[arg-type]
        E=1e9,
        domE=1e9,
        Z=len(sequences),
        bias_filter=False,
        F1=1.0,
        F2=1.0,
        F3=1.0,
    )
    for hits in search:
        for hit in hits:
            name = hit.name if isinstance(hit.name, bytes) else str(hit.name).encode()
            scores[index[name]] = max(scores[index[name]], float(hit.score))
    return scores
