"""The bounds of every numeric command-line option, checked before any work starts.

One table, keyed by option name, says what each number may be; `install(app)` wraps every command
of the `gensci` CLI so that its numeric options are checked against it (and every float for NaN or
inf) before the command body runs. A test walks the whole CLI and fails on any int or float option
that the table does not cover, so a new option cannot slip through unchecked.
"""

from __future__ import annotations

import functools
import inspect
import math
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gensci.errors import ConfigError, DataError, GensciError
from gensci.runtime import finish_out_dirs


class Interrupted(GensciError):
    """The user stopped a command (Ctrl-C); its last checkpoint, if any, is kept."""


@dataclass(frozen=True)
class Bound:
    """An interval lo .. hi (None: unbounded), each end open or closed."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def holds(self, value: float) -> bool:
        if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
            return False
        return not (
            self.hi is not None and (value >= self.hi if self.hi_open else value > self.hi)
        )

    def describe(self) -> str:
        if self.lo is not None and self.hi is None:
            return f"{'>' if self.lo_open else '>='} {self.lo:g}"
        if self.hi is not None and self.lo is None:
            return f"{'<' if self.hi_open else '<='} {self.hi:g}"
        left, right = "(" if self.lo_open else "[", ")" if self.hi_open else "]"
        return f"in {left}{self.lo:g}, {self.hi:g}{right}"


COUNT = Bound(lo=1)  # sizes, steps, samples, widths: at least one
NONNEGATIVE = Bound(lo=0)
POSITIVE = Bound(lo=0, lo_open=True)
FRACTION = Bound(lo=0, hi=1)
FRACTION_BELOW_ONE = Bound(lo=0, hi=1, hi_open=True)  # dropout
FRACTION_ABOVE_ZERO = Bound(lo=0, hi=1, lo_open=True)  # an identity threshold
SEED = Bound(lo=0, hi=2**63 - 1)

# option name (the Python parameter) -> bound; "command option" keys override for one command.
BOUNDS: dict[str, Bound] = {
    "seed": SEED,
    # counts
    **dict.fromkeys(
        (
            "steps", "batch_size", "base_channels", "latent_dim", "n_heldout", "resolution",
            "n_det", "size", "samples", "n_slices", "n_views", "sampler_steps", "dps_steps",
            "dds_steps", "n_examples", "n", "limit", "max_epochs", "min_cells", "schedule_steps",
            "accumulate",
        ),
        COUNT,
    ),
    "checkpoint_every": NONNEGATIVE,  # 0: only at the end
    "n_bootstrap": NONNEGATIVE,  # 0: no interval (one draw has no spread: none reported)
    **dict.fromkeys(
        ("augment", "warmup", "kl_warmup", "project", "patience", "slice_index",
         "heldout_centre", "first_residue"),
        NONNEGATIVE,
    ),
    # real numbers
    **dict.fromkeys(("lr", "dps_zeta", "dds_lam", "scale", "evalue", "noise_std"), POSITIVE),
    "discrepancy_threshold": POSITIVE,  # ct reconstruct: accepted ||Ax - y||^2 / (m sigma^2)
    "extrapolation_margin": POSITIVE,  # ct reconstruct: posterior / TV misfit on left-out views
    **dict.fromkeys(("photons", "fov"), POSITIVE),  # ct simulate: I0 counts per ray, mm
    # ct simulate / reconstruct --geometry fan: source-isocentre and source-detector, pixels
    **dict.fromkeys(("source_distance", "detector_distance"), POSITIVE),
    **dict.fromkeys(
        ("noise", "tv_weight", "weight_decay", "kl_weight", "guided", "temperature", "ridge"),
        NONNEGATIVE,
    ),
    **dict.fromkeys(("nonzero_boundary_fraction", "max_seq_gaps", "max_col_gaps", "eta"),
                    FRACTION),
    "dropout": FRACTION_BELOW_ONE,
    "identity": FRACTION_ABOVE_ZERO,
    "rule_quantile": Bound(lo=0, hi=0.5, hi_open=True),  # protein: calibrated rule bands
    **dict.fromkeys(("n_passing", "max_draws"), COUNT),  # protein design
    # protein design --family-check: quantiles of the naturals' / decoys' scores
    **dict.fromkeys(("family_quantile", "family_decoys_fail"),
                    Bound(lo=0, hi=1, lo_open=True, hi_open=True)),
    "decoder_groups": NONNEGATIVE,  # protein train: 0 = no group sparsity
    **dict.fromkeys(("latent_fields", "n_train", "restarts"), COUNT),  # symmetry
    # cells data kang: gene and cell counts of the prepared Kang 2018 data
    **dict.fromkeys(("n_top_genes", "n_per_condition"), Bound(lo=50)),
    # per command
    "poisson generate n": Bound(lo=5),  # interior nodes must remain after the boundary
    "tol": Bound(lo=0, hi=1, lo_open=True, hi_open=True),  # a relative error tolerance
    # dynamics
    **dict.fromkeys(("box", "period", "r0", "gamma", "kt", "dt", "spread", "frame_dt"), POSITIVE),
    **dict.fromkeys(("amplitude", "strength", "init_amplitude", "init_strength", "burn_in"),
                    NONNEGATIVE),
    **dict.fromkeys(("configs", "tracks", "width", "points"), COUNT),
    "dynamics simulate n": Bound(lo=2, hi=4096),
    "dynamics study n": Bound(lo=2, hi=4096),
    "dim": Bound(lo=1, hi=2),
    # calorimetry
    **dict.fromkeys(("e_min", "e_max"), POSITIVE),
    "classifier_steps": COUNT,
    # style
    **dict.fromkeys(("ae_steps", "n_images"), COUNT),
    **dict.fromkeys(("seed_a", "seed_b"), SEED),
    "alpha": FRACTION,
    "frames": Bound(lo=2, hi=64),
}


def numeric_options(callback: Callable[..., Any]) -> dict[str, type]:
    """Return {parameter name: int | float} for the numeric parameters of a command callback."""
    hints = typing.get_type_hints(callback)
    found: dict[str, type] = {}
    for name, hint in hints.items():
        if name == "return":
            continue
        for t in (float, int):  # `float | None`, `int`, ...; a bool is not a number here
            if hint is t or t in typing.get_args(hint):
                found[name] = t
                break
    return found


def bound_for(command: str, option: str) -> Bound | None:
    """Return the bound of `option` in `command` (e.g. "poisson generate"), or None if none."""
    return BOUNDS.get(f"{command} {option}", BOUNDS.get(option))


def check_options(command: str, values: dict[str, Any], kinds: dict[str, type]) -> None:
    """Raise ConfigError naming the first option of `values` that is not finite or out of bounds."""
    for name, kind in kinds.items():
        value = values.get(name)
        if value is None or isinstance(value, bool):
            continue
        flag = "--" + name.replace("_", "-")
        if kind is float and not math.isfinite(value):
            raise ConfigError(f"{flag} must be a finite number, got {value}")
        bound = bound_for(command, name)
        if bound is not None and not bound.holds(value):
            raise ConfigError(f"{flag} must be {bound.describe()}, got {value}")


def guarded(command: str, callback: Callable[..., Any]) -> Callable[..., Any]:
    """Return `callback` with its numeric options checked first, and two escapes made clear.

    Ctrl-C becomes Interrupted (exit code 130). An EOFError (a reader meeting the end of an
    empty or cut file) becomes a DataError instead of
    the 'interrupted' that the CLI framework would make of it.
    """
    kinds = numeric_options(callback)
    signature = inspect.signature(callback)

    @functools.wraps(callback)
    def run(*args: Any, **kwargs: Any) -> Any:
        bound_args = signature.bind_partial(*args, **kwargs)
        check_options(command, dict(bound_args.arguments), kinds)
        try:
            result = callback(*args, **kwargs)
        except KeyboardInterrupt:
            raise Interrupted("interrupted; the last checkpoint written, if any, is kept") from None
        except EOFError as exc:
            if isinstance(exc, GensciError):
                raise
            raise DataError(
                f"an input file ended unexpectedly (empty or truncated): {exc or 'end of file'}"
            ) from None
        finish_out_dirs()  # the command's output folders now hold a complete result
        return result

    return run


def install(app: Any, prefix: str = "") -> None:
    """Wrap every command of the typer `app` (and of its sub-apps) with `guarded`."""
    for info in app.registered_commands:
        if getattr(info.callback, "__wrapped__", None) is not None:
            continue
        name = info.name or info.callback.__name__.replace("_", "-")
        info.callback = guarded(f"{prefix}{name}".strip(), info.callback)
    for group in app.registered_groups:
        install(group.typer_instance, f"{prefix}{group.name} ")


def walk_commands(app: Any, prefix: str = "") -> list[tuple[str, Callable[..., Any]]]:
    """Return (command path, callback) for every command of the typer `app`, recursively."""
    found = []
    for info in app.registered_commands:
        name = info.name or info.callback.__name__.replace("_", "-")
        found.append((f"{prefix}{name}".strip(), info.callback))
    for group in app.registered_groups:
        found += walk_commands(group.typer_instance, f"{prefix}{group.name} ")
    return found
