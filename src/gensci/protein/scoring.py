"""Mutation effects: delta-ELBO = ELBO(mutant) - ELBO(wild type), as DeepSequence and EVE.

Mutants are read from a ProteinGym-style CSV: a `mutant` column of substitutions such as
"A23C" or "A23C:D45E", positions numbered as residues of the wild-type sequence (its
'/start-end' name suffix gives the first residue number unless told otherwise). Scoring runs in
batches of a fixed size, so memory does not grow with the number of mutants.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from gensci.errors import DataError, FormatError
from gensci.files import read_text
from gensci.models.vae import VAE
from gensci.protein.io import ALPHABET, AMINO_ACIDS, residue_start
from gensci.protein.model import FamilyMeta

_MUTATION = re.compile(r"^([A-Z])(\d+)([A-Z])$")


@dataclass(frozen=True)
class Substitution:
    """One substitution: wild-type letter, residue number, mutant letter."""

    wt: str
    pos: int
    mt: str


def parse_mutant(text: str) -> list[Substitution]:
    """Return the substitutions of a mutant string such as 'A23C' or 'A23C:D45E'."""
    subs = []
    for part in str(text).strip().split(":"):
        m = _MUTATION.match(part.strip())
        if m is None:
            raise DataError(
                f"cannot read mutation {part!r} in {text!r}; expected e.g. A23C or A23C:D45E"
            )
        wt, pos, mt = m.group(1), int(m.group(2)), m.group(3)
        for letter in (wt, mt):
            if letter not in AMINO_ACIDS:
                raise DataError(f"mutation {part!r} uses {letter!r}, not one of {AMINO_ACIDS}")
        subs.append(Substitution(wt, pos, mt))
    return subs


def read_mutants(
    path: str | Path, column: str = "mutant"
) -> tuple[list[dict[str, str]], list[str]]:
    """Return (rows as dicts, field names) of a mutants CSV that has a `column` column."""
    p = Path(path)
    text = read_text(p, "mutants file")
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        fields = list(reader.fieldnames or [])
        if column not in fields:
            raise FormatError(f"{p} has no {column!r} column (columns: {fields})")
        rows = []
        for row in reader:
            if None in row or any(v is None for v in row.values()):
                raise FormatError(
                    f"{p}: line {reader.line_num} does not have the header's {len(fields)} fields"
                )
            rows.append(row)
    except csv.Error as exc:
        raise FormatError(f"cannot read {p} as CSV: {exc}") from None
    if not rows:
        raise DataError(f"{p} holds no mutants (a header line only)")
    return rows, fields


def dms_scores(rows: Sequence[dict[str, str]], path: str | Path, column: str = "DMS_score"
               ) -> list[float]:
    """Return the measured scores of `column` (NaN where a cell is empty or 'nan'); raise
    DataError naming the file, line and value where one is not a number."""
    out = []
    for i, row in enumerate(rows, start=2):
        text = (row.get(column) or "").strip()
        try:
            out.append(float(text) if text else float("nan"))
        except ValueError:
            raise DataError(f"{path}: line {i}: {column} {text!r} is not a number") from None
    return out


def position_map(meta: FamilyMeta, wt_id: str, first_residue: int | None = None) -> dict[int, int]:
    """Return residue number -> model column for the wild-type sequence `wt_id`."""
    msa = meta.msa()
    row = msa.index(wt_id)
    name = msa.ids[row]
    if name not in meta.residues:
        raise DataError(
            f"the checkpoint stores no residue numbering for {name!r}; train with --focus {name}"
        )
    start = residue_start(name) if first_residue is None else first_residue
    return {start + int(r): col for col, r in enumerate(meta.residues[name]) if r >= 0}


def mutant_codes(
    wt_codes: np.ndarray, subs: Sequence[Substitution], pos_map: dict[int, int], label: str
) -> np.ndarray | None:
    """Return the aligned mutant row (L,), or None if a position lies outside the model."""
    out = wt_codes.copy()
    for s in subs:
        col = pos_map.get(s.pos)
        if col is None:
            return None
        have = ALPHABET[int(wt_codes[col])]
        if have != s.wt:
            raise DataError(
                f"mutant {label!r}: residue {s.pos} of the wild type is {have!r}, not {s.wt!r}; "
                "check the wild-type sequence and the first residue number"
            )
        out[col] = ALPHABET.index(s.mt)
    return out


@torch.no_grad()
def elbo_batched(
    model: VAE,
    codes: np.ndarray,
    n_samples: int = 20,
    batch_size: int = 256,
    seed: int = 0,
    progress: bool = False,
) -> np.ndarray:
    """Return the ELBO (nats) of each aligned row of `codes` (N, L): (N,), in fixed-size batches.

    Each batch draws its noise from a generator seeded with `seed`, so a row's score does not
    depend on the batch it lands in beyond that draw.
    """
    dev = next(model.parameters()).device
    out = np.empty(codes.shape[0])
    starts = range(0, codes.shape[0], batch_size)
    for s in tqdm(starts, desc="scoring", disable=not progress, leave=False):
        gen = torch.Generator().manual_seed(seed)
        x = torch.as_tensor(codes[s : s + batch_size], dtype=torch.long, device=dev)
        out[s : s + batch_size] = model.elbo(x, n_samples=n_samples, generator=gen).cpu().numpy()
    return out


def score_mutants(
    model: VAE,
    meta: FamilyMeta,
    mutants: Sequence[str],
    wt_id: str | None = None,
    first_residue: int | None = None,
    n_samples: int = 20,
    batch_size: int = 256,
    seed: int = 0,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Return per mutant: delta_elbo (NaN when a position lies outside the model) and status."""
    wt_id = wt_id or meta.focus
    if wt_id is None:
        raise DataError("name the wild-type sequence (--wt SEQID); the model has no focus sequence")
    msa = meta.msa()
    wt_codes = msa.encode()[msa.index(wt_id)]
    pos_map = position_map(meta, wt_id, first_residue)
    rows: list[dict[str, Any]] = []
    batch: list[np.ndarray] = []
    index: list[int] = []
    for i, label in enumerate(mutants):
        codes = mutant_codes(wt_codes, parse_mutant(label), pos_map, label)
        if codes is None:
            rows.append({"mutant": label, "delta_elbo": float("nan"), "status": "outside model"})
            continue
        rows.append({"mutant": label, "delta_elbo": float("nan"), "status": "ok"})
        batch.append(codes)
        index.append(i)
    wt = elbo_batched(model, np.repeat(wt_codes[None], 10, axis=0), n_samples, seed=seed)
    wt_elbo = float(wt.mean())
    if not np.isfinite(wt_elbo):
        raise DataError(f"the wild type {wt_id!r} has ELBO {wt_elbo}; the model scores nothing")
    if batch:
        scores = elbo_batched(model, np.stack(batch), n_samples, batch_size, seed, progress)
        for i, v in zip(index, scores, strict=True):
            rows[i]["delta_elbo"] = float(v - wt_elbo)
            if not np.isfinite(rows[i]["delta_elbo"]):  # only a finite score is 'ok'
                rows[i]["status"] = "non-finite score"
    return rows


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Return Spearman's rank correlation over the finite pairs of a and b."""
    from scipy.stats import spearmanr

    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3:
        return float("nan")
    return float(spearmanr(x[ok], y[ok]).statistic)


@torch.no_grad()
def importance_log_likelihood(
    model: VAE,
    codes: np.ndarray,
    n_samples: int = 200,
    batch_size: int = 256,
    seed: int = 0,
) -> np.ndarray:
    """Return the importance-sampled log p(x) (nats) of each row of `codes` (N, L): (N,).

    log p(x) ~ log mean_k p(x | z_k) p(z_k) / q(z_k | x), z_k ~ q(z | x) (the IWAE bound; it
    tightens towards log p(x) as `n_samples` grows and is never below the ELBO on average).
    """
    import math

    dev = next(model.parameters()).device
    out = np.empty(codes.shape[0])
    log2pi = math.log(2 * math.pi)
    for s in range(0, codes.shape[0], batch_size):
        gen = torch.Generator().manual_seed(seed)
        x = torch.as_tensor(codes[s : s + batch_size], dtype=torch.long, device=dev)
        mu, logvar = model.encode(x)
        std = (0.5 * logvar).exp()
        terms = []
        for _ in range(n_samples):
            eps = torch.randn(mu.shape, generator=gen).to(mu)
            z = mu + std * eps
            log_q = (-0.5 * eps.pow(2) - 0.5 * logvar - 0.5 * log2pi).sum(-1)
            log_prior = (-0.5 * z.pow(2) - 0.5 * log2pi).sum(-1)
            terms.append(model.log_likelihood(x, model.decode(z)) + log_prior - log_q)
        stacked = torch.stack(terms)
        out[s : s + batch_size] = (torch.logsumexp(stacked, 0) - math.log(n_samples)).cpu().numpy()
    return out
