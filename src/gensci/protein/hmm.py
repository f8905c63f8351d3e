"""Family membership: search designs with the family's profile HMM (pyhmmer hmmsearch)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gensci.errors import DataError, FormatError
from gensci.files import check_input_file


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
    kwargs = {"E": 10.0, "cpus": cpus}
    if z is not None:
        kwargs["Z"] = float(z)
    evalues = np.full(len(sequences), np.inf)
    index = {n: i for i, n in enumerate(names)}
    for hits in pyhmmer.hmmsearch(hmm, block, **kwargs):
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
