"""Synthetic-feasibility and novelty rules for designed sequences.

Each design gets one row of metrics and the list of rules it failed. Rules come from a YAML or
TOML file (keys as in `FeasibilityRules`); anything left out keeps its default. A range of
`None` is off, except `length`, which by default spans the training lengths +-10%.

Rules: length, net_charge (pH 7), pI, gravy (Kyte-Doolittle), composition (largest fraction of
any one residue, per-letter caps), homopolymer (longest single-residue run), low_complexity
(lowest Shannon entropy in a sliding window, bits), cysteines, motifs (forbidden regexes, e.g.
the N-glycosylation sequon N[^P][ST]), novelty (identity to the nearest training sequence).
"""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gensci.config import config_from_dict
from gensci.errors import ConfigError
from gensci.files import read_text

RULES = (
    "length",
    "net_charge",
    "pI",
    "gravy",
    "composition",
    "homopolymer",
    "low_complexity",
    "cysteines",
    "motifs",
    "novelty",
)

Range = tuple[float, float]


@dataclass
class FeasibilityRules:
    """Thresholds of the feasibility rules; ranges are inclusive [low, high]."""

    length: Range | None = None  # None: training lengths +- 10%
    length_margin: float = 0.1
    net_charge: Range | None = (-20.0, 20.0)
    pI: Range | None = (4.0, 11.0)
    gravy: Range | None = (-1.5, 0.5)
    max_residue_fraction: float | None = 0.25
    composition_caps: dict[str, float] = field(default_factory=dict)
    max_homopolymer: int | None = 5
    entropy_window: int = 12
    min_window_entropy: float | None = 1.5
    cysteines: Range | None = (0, 12)
    forbidden_motifs: list[str] = field(default_factory=list)
    novelty: Range | None = (0.3, 0.95)

    def __post_init__(self) -> None:
        for name in ("length", "net_charge", "pI", "gravy", "cysteines", "novelty"):
            value = getattr(self, name)
            if value is None:
                continue
            pair = tuple(_number(v) for v in value) if isinstance(value, (list, tuple)) else None
            low, high = pair if pair is not None and len(pair) == 2 else (None, None)
            if low is None or high is None or low > high:
                raise ConfigError(f"rule {name!r} must be a range [low, high], got {value!r}")
            setattr(self, name, pair)
        for name in (
            "length_margin",
            "max_residue_fraction",
            "max_homopolymer",
            "entropy_window",
            "min_window_entropy",
        ):
            value = getattr(self, name)
            if value is None and name in ("length_margin", "entropy_window"):
                raise ConfigError(f"rule {name!r} cannot be off (null)")
            if value is not None:
                number = _number(value)
                if number is None:
                    raise ConfigError(f"rule {name!r} must be a finite number, got {value!r}")
                whole = name in ("max_homopolymer", "entropy_window")
                if whole and number != int(number):
                    raise ConfigError(f"rule {name!r} must be a whole number, got {value!r}")
                setattr(self, name, int(number) if whole else number)
        if not isinstance(self.composition_caps, dict):
            raise ConfigError(
                f"composition_caps must map letters to caps, got {self.composition_caps!r}"
            )
        if isinstance(self.forbidden_motifs, str) or not all(
            isinstance(m, str) for m in self.forbidden_motifs
        ):
            raise ConfigError(
                f"forbidden_motifs must be a list of regexes, got {self.forbidden_motifs!r}"
            )
        for letter, cap in self.composition_caps.items():
            value = _number(cap)
            if (
                not isinstance(letter, str)
                or len(letter) != 1
                or not (value is not None and 0.0 <= value <= 1.0)
            ):
                raise ConfigError(f"composition cap {letter!r}: {cap!r} must be a letter: [0, 1]")
        self.composition_caps = {k: float(v) for k, v in self.composition_caps.items()}
        if self.entropy_window < 2:
            raise ConfigError(f"entropy_window must be >= 2, got {self.entropy_window}")
        for motif in self.forbidden_motifs:
            try:
                re.compile(motif)
            except re.error as exc:
                raise ConfigError(f"forbidden motif {motif!r} is not a regex: {exc}") from exc


def _number(value: Any) -> float | None:
    """Return `value` as a finite float (numbers, or text such as YAML's '1e3'); None for
    anything else: NaN, inf, booleans, lists, text that is not a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        x = float(value)
    except ValueError:
        return None
    return x if math.isfinite(x) else None


def load_rules(path: str | Path | None) -> FeasibilityRules:
    """Return rules read from a YAML (.yaml/.yml) or TOML (.toml) file; defaults when None."""
    if path is None:
        return FeasibilityRules()
    values = read_rules_values(path)
    try:
        return config_from_dict(FeasibilityRules, values)
    except ConfigError as exc:
        raise ConfigError(f"rules file {path}: {exc}") from None


def read_rules_values(path: str | Path) -> dict[str, Any]:
    """Return the rule values a YAML or TOML rules file sets (checked against the rules)."""
    p = Path(path)
    if p.suffix.lower() not in (".toml", ".yaml", ".yml"):
        raise ConfigError(f"rules file {p.name!r} must end in .yaml, .yml or .toml")
    text = read_text(p, "rules file", ConfigError, ConfigError)
    try:
        if p.suffix.lower() == ".toml":
            values: Any = tomllib.loads(text)
        else:
            import yaml

            values = yaml.safe_load(text)
            if values is None:
                raise ConfigError(f"rules file {p} holds no rules (only comments or blanks)")
    except (tomllib.TOMLDecodeError, ValueError) as exc:
        raise ConfigError(f"cannot parse rules file {p}: {exc}") from exc
    except Exception as exc:  # yaml.YAMLError
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"cannot parse rules file {p}: {exc}") from exc
    if not isinstance(values, dict):
        raise ConfigError(f"rules file {p} must hold a mapping of rule names to values")
    values = values.get("rules", values)
    if not isinstance(values, dict):
        raise ConfigError(f"rules in {p} must be a mapping of rule names to values")
    try:
        config_from_dict(FeasibilityRules, values)  # unknown keys and bad values, by name
    except ConfigError as exc:
        raise ConfigError(f"rules file {p}: {exc}") from None
    return dict(values)


# Rules calibrated from the family: banded rules take [q, 1 - q] of the naturals' values, one-
# sided rules the naturals' q (minimum) or 1 - q (maximum) quantile; each band then widens by
# `margin` times its width, so a natural just outside the fitted quantile still passes.
CALIBRATED = (
    "net_charge",
    "pI",
    "gravy",
    "cysteines",
    "max_residue_fraction",
    "max_homopolymer",
    "min_window_entropy",
)


def calibrate_rules(
    sequences: Sequence[str],
    quantile: float = 0.005,
    margin: float = 0.1,
    overrides: dict[str, Any] | None = None,
    widen_only: bool = True,
) -> FeasibilityRules:
    """Return rules whose property bands come from natural `sequences` (ungapped).

    The rules in CALIBRATED are fitted at `quantile` with `margin`; with `widen_only` each
    fitted band is then joined with the fixed default band (never narrower than the defaults:
    a few dozen seed rows give quantiles too tight for new members). The length rule keeps its
    default (training lengths +- 10%); `overrides` (e.g. from a rules file) win over both.
    A rule set to null in `overrides` stays off.
    """
    if not 0.0 <= quantile < 0.5:
        raise ConfigError(f"rule quantile must lie in [0, 0.5), got {quantile}")
    if not (math.isfinite(margin) and margin >= 0):
        raise ConfigError(f"rule margin must be finite and >= 0, got {margin}")
    seqs = [s for s in sequences if s]
    if len(seqs) < 2:
        raise ConfigError(f"need at least 2 natural sequences to calibrate rules, got {len(seqs)}")
    base = FeasibilityRules()
    rows = [sequence_metrics(s, base) for s in seqs]

    def band(key: str, whole: bool = False) -> tuple[float, float]:
        v = np.array([float(r[key]) for r in rows])
        lo, hi = np.quantile(v, [quantile, 1.0 - quantile])
        pad = margin * (hi - lo)
        lo, hi = lo - pad, hi + pad
        if whole:
            return float(math.floor(lo)), float(math.ceil(hi))
        return round(float(lo), 4), round(float(hi), 4)

    values: dict[str, Any] = {
        "net_charge": band("net_charge"),
        "pI": band("pI"),
        "gravy": band("gravy"),
        "cysteines": (max(0.0, band("cysteines", whole=True)[0]), band("cysteines", True)[1]),
        "max_residue_fraction": min(1.0, band("top_fraction")[1]),
        "max_homopolymer": int(band("longest_run", whole=True)[1]),
        "min_window_entropy": max(0.0, band("min_window_entropy")[0]),
    }
    if widen_only:
        for key in ("net_charge", "pI", "gravy", "cysteines"):
            fixed = getattr(base, key)
            values[key] = (min(values[key][0], fixed[0]), max(values[key][1], fixed[1]))
        for key in ("max_residue_fraction", "max_homopolymer"):
            values[key] = max(values[key], getattr(base, key))
        values["min_window_entropy"] = min(values["min_window_entropy"], base.min_window_entropy)
    values.update(overrides or {})
    return config_from_dict(FeasibilityRules, values)


def rules_to_dict(rules: FeasibilityRules) -> dict[str, Any]:
    """Return the rules as a plain dict (for reports and JSON)."""
    return dataclasses.asdict(rules)


def longest_run(seq: str) -> int:
    """Return the length of the longest single-residue run in `seq`."""
    best, run = 0, 0
    prev = ""
    for c in seq:
        run = run + 1 if c == prev else 1
        prev = c
        best = max(best, run)
    return best


def min_window_entropy(seq: str, window: int = 12) -> float:
    """Return the lowest Shannon entropy (bits) over windows of `window` residues."""
    if len(seq) < window:
        window = max(len(seq), 1)
    counts = Counter(seq[:window])

    def entropy(c: Counter) -> float:
        return -sum(v / window * math.log2(v / window) for v in c.values() if v > 0)

    best = entropy(counts)
    for i in range(window, len(seq)):
        counts[seq[i]] += 1
        counts[seq[i - window]] -= 1
        best = min(best, entropy(counts))
    return best


def sequence_metrics(seq: str, rules: FeasibilityRules | None = None) -> dict[str, Any]:
    """Return the rule metrics of one ungapped sequence."""
    from Bio.SeqUtils.ProtParam import ProteinAnalysis

    rules = rules or FeasibilityRules()
    n = len(seq)
    if n == 0:
        return {"length": 0}
    pa = ProteinAnalysis(seq)
    counts = Counter(seq)
    top, top_n = counts.most_common(1)[0]
    motif_hits = [m for m in rules.forbidden_motifs if re.search(m, seq)]
    return {
        "length": n,
        "net_charge": round(float(pa.charge_at_pH(7.0)), 3),
        "pI": round(float(pa.isoelectric_point()), 3),
        "gravy": round(float(pa.gravy()), 4),
        "top_residue": top,
        "top_fraction": round(top_n / n, 4),
        "longest_run": longest_run(seq),
        "min_window_entropy": round(min_window_entropy(seq, rules.entropy_window), 4),
        "cysteines": counts.get("C", 0),
        "motif_hits": ";".join(motif_hits),
        "_counts": counts,
    }


def _inside(value: float, rng: Range | None) -> bool:
    """Return whether `value` lies in `rng` (always when the rule is off; NaN lies in no range)."""
    return rng is None or (rng[0] <= value <= rng[1])


def length_range(rules: FeasibilityRules, reference_lengths: Sequence[int] | None) -> Range | None:
    """Return the length range in force: the rule's, or the training range +- margin."""
    if rules.length is not None:
        return rules.length
    if reference_lengths is None or len(reference_lengths) == 0:
        return None
    lo, hi = min(reference_lengths), max(reference_lengths)
    return (math.floor(lo * (1 - rules.length_margin)), math.ceil(hi * (1 + rules.length_margin)))


def check(
    sequences: Sequence[str],
    rules: FeasibilityRules | None = None,
    identity: Sequence[float] | np.ndarray | None = None,
    reference_lengths: Sequence[int] | None = None,
) -> list[dict[str, Any]]:
    """Return one row per sequence: its metrics, `passed` and `failed` (rule names, ';'-joined).

    sequences: ungapped designs; identity: (N,) identity to the nearest training sequence
    (the novelty rule is skipped without it); reference_lengths: training lengths, for the
    default length rule.
    """
    rules = rules or FeasibilityRules()
    lengths = length_range(rules, reference_lengths)
    rows = []
    for i, seq in enumerate(sequences):
        m = sequence_metrics(seq, rules)
        failed = []
        if m["length"] == 0:
            failed = list(RULES)
        else:
            counts = m.pop("_counts")
            if not _inside(m["length"], lengths):
                failed.append("length")
            if not _inside(m["net_charge"], rules.net_charge):
                failed.append("net_charge")
            if not _inside(m["pI"], rules.pI):
                failed.append("pI")
            if not _inside(m["gravy"], rules.gravy):
                failed.append("gravy")
            over_cap = any(
                counts.get(a, 0) / m["length"] > cap for a, cap in rules.composition_caps.items()
            )
            too_much = (
                rules.max_residue_fraction is not None
                and m["top_fraction"] > rules.max_residue_fraction
            )
            if over_cap or too_much:
                failed.append("composition")
            if rules.max_homopolymer is not None and m["longest_run"] > rules.max_homopolymer:
                failed.append("homopolymer")
            if (
                rules.min_window_entropy is not None
                and m["min_window_entropy"] < rules.min_window_entropy
            ):
                failed.append("low_complexity")
            if not _inside(m["cysteines"], rules.cysteines):
                failed.append("cysteines")
            if m["motif_hits"]:
                failed.append("motifs")
        if identity is not None:
            m["identity"] = round(float(identity[i]), 4)
            if not _inside(float(identity[i]), rules.novelty) and "novelty" not in failed:
                failed.append("novelty")
        m["passed"] = not failed
        m["failed"] = ";".join(failed)
        rows.append(m)
    return rows


def pass_rates(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Return the fraction of rows passing each rule, and 'all' for passing every rule."""
    n = max(len(rows), 1)
    out = {}
    for rule in RULES:
        out[rule] = 1.0 - sum(rule in r["failed"].split(";") for r in rows) / n
    out["all"] = sum(bool(r["passed"]) for r in rows) / n
    return out
