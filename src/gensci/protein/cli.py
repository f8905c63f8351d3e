"""The `gensci protein` commands: data, train, hmm, design, score, study."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from gensci import budget
from gensci.runtime import AccumulateOption, DeviceOption, OverwriteOption, SeedOption

if TYPE_CHECKING:
    from gensci.protein.design import Designs
    from gensci.protein.feasibility import FeasibilityRules
    from gensci.protein.io import MSA

app = typer.Typer(
    help="Protein design with a VAE over a protein family.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

FormatOpt = Annotated[
    str | None,
    typer.Option("--format", help="stockholm | a2m | a3m | fasta (default: from the extension)"),
]
FocusOpt = Annotated[
    str | None,
    typer.Option("--focus", help="focus sequence id: keep only its residue columns (EVE)"),
]
RulesOpt = Annotated[
    Path | None, typer.Option("--rules", help="feasibility rules, YAML or TOML (default rules)")
]
HmmOpt = Annotated[
    Path | None, typer.Option("--hmm", help="profile HMM of the family for the membership check")
]
EvalueOpt = Annotated[float, typer.Option("--evalue", help="HMM E-value for 'recognised'")]
OnUnknownOpt = Annotated[
    str | None,
    typer.Option(
        "--on-unknown",
        help="rows with ambiguous letters (X B Z J U O): error | drop (default error; ww: drop)",
    ),
]
RuleQuantileOpt = Annotated[
    float,
    typer.Option(
        "--rule-quantile",
        help="calibrate rule bands on the training naturals at this "
        "quantile (each side); --rules values override",
    ),
]
FixedRulesOpt = Annotated[
    bool, typer.Option("--fixed-rules", help="fixed default bands instead of calibrated ones")
]
ALIGNMENT_HELP = "aligned family (.sto .a2m .a3m .fasta); or fn3 | Pkinase | ww"


def _on_unknown(value: str | None) -> str | None:
    from gensci.errors import ConfigError

    if value is not None and value not in ("error", "drop"):
        raise ConfigError(f"--on-unknown must be 'error' or 'drop', not {value!r}")
    return value


def _read_family(
    alignment: str,
    format: str | None,
    focus: str | None,
    max_seq_gaps: float,
    max_col_gaps: float,
    on_unknown: str | None,
) -> MSA:
    """Return the gap-filtered MSA named by `alignment`, printing how it was read."""
    from gensci.protein.io import describe_read, load_family
    from gensci.protein.study import reading_defaults, resolve_alignment

    path, _ = resolve_alignment(alignment)
    fmt, unknown = reading_defaults(alignment, format, _on_unknown(on_unknown))
    msa = load_family(path, fmt, focus, max_seq_gaps, max_col_gaps, on_unknown=unknown)
    typer.echo(describe_read(msa))
    return msa


def _rules(
    rules: Path | None, fixed: bool, quantile: float, train_seqs: list[str]
) -> FeasibilityRules:
    """Return the feasibility rules: calibrated on `train_seqs` (aligned, gapped) unless
    `fixed`, with the rules file's values on top."""
    from gensci.protein.feasibility import calibrate_rules, load_rules, read_rules_values

    if fixed:
        return load_rules(rules)
    overrides = read_rules_values(rules) if rules is not None else None
    return calibrate_rules([s.replace("-", "") for s in train_seqs], quantile, overrides=overrides)


@app.command("data")
def data_cmd(
    family: Annotated[str, typer.Argument(help="packaged family: ww (Pfam PF00397)")],
    out: Annotated[
        Path,
        typer.Option(
            "--out", help="file to write (.a2m, or .fa to read the insert columns as gaps)"
        ),
    ],
    overwrite: OverwriteOption = False,
) -> None:
    """Copy a family alignment shipped in an installed package (ww: logomaker) to OUT."""
    from gensci.files import check_suffix
    from gensci.protein.io import FASTA_SUFFIXES, guess_format, packaged
    from gensci.runtime import atomic_save

    check_suffix(out, (".a2m", *FASTA_SUFFIXES), "alignment (A2M or aligned FASTA)")
    src = packaged(family)
    data = src.read_bytes()
    atomic_save(out, lambda p: p.write_bytes(data), overwrite=overwrite, suffix=out.suffix)
    typer.echo(
        f"wrote {out} ({len(data):,} bytes from {src}); it will be read as "
        f"{guess_format(out)} (pass --format to choose)"
    )


@app.command("hmm")
def hmm_cmd(
    alignment: Annotated[str, typer.Argument(help=ALIGNMENT_HELP)],
    out: Annotated[Path, typer.Option("--out", help="profile HMM to write (.hmm)")],
    format: FormatOpt = None,
    on_unknown: OnUnknownOpt = None,
    max_seq_gaps: Annotated[float, typer.Option("--max-seq-gaps")] = 0.5,
    max_col_gaps: Annotated[float, typer.Option("--max-col-gaps")] = 0.3,
    overwrite: OverwriteOption = False,
) -> None:
    """Build a profile HMM from the gap-filtered alignment (pyhmmer's hmmbuild)."""
    from gensci.files import check_suffix
    from gensci.protein.hmm import build_hmm, write_hmm
    from gensci.runtime import check_writable

    check_suffix(out, (".hmm",), "profile HMM")
    check_writable(out, overwrite)
    msa = _read_family(alignment, format, None, max_seq_gaps, max_col_gaps, on_unknown)
    hmm = build_hmm(msa, Path(str(alignment)).stem or "family")
    write_hmm(hmm, out, overwrite=overwrite)
    typer.echo(f"profile HMM of {hmm.M} match states -> {out}")


def _checkpoint_path(path: Path) -> Path:
    """Return the checkpoint file: `path` itself or `path`/model.safetensors."""
    return path / "model.safetensors" if path.is_dir() else path


def _resolve_device(device: str) -> str:
    from gensci.runtime import resolve_device

    return str(resolve_device(device))


@app.command("train")
def train_cmd(
    alignment: Annotated[str, typer.Argument(help=ALIGNMENT_HELP)],
    out: Annotated[Path, typer.Option("--out", help="output folder (model.safetensors)")],
    format: FormatOpt = None,
    on_unknown: OnUnknownOpt = None,
    focus: FocusOpt = None,
    latent_dim: Annotated[int, typer.Option("--latent-dim")] = 8,
    hidden: Annotated[str, typer.Option("--hidden", help="widths, e.g. 256,128")] = "128",
    steps: Annotated[int, typer.Option("--steps")] = 3000,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 64,
    lr: Annotated[float, typer.Option("--lr")] = 1e-3,
    kl_warmup: Annotated[int, typer.Option("--kl-warmup", help="KL annealing steps")] = 1000,
    dropout: Annotated[float, typer.Option("--dropout")] = 0.2,
    weight_decay: Annotated[float, typer.Option("--weight-decay")] = 0.05,
    decoder_groups: Annotated[
        int,
        typer.Option(
            "--decoder-groups",
            help="DeepSequence output layer: a sparsity scale per position and group of this "
            "many hidden units (4 as DeepSequence; 0: off)",
        ),
    ] = 0,
    decoder_temperature: Annotated[
        bool, typer.Option("--decoder-temperature", help="learn a softplus scale of the logits")
    ] = False,
    bayesian_decoder: Annotated[
        bool,
        typer.Option(
            "--bayesian-decoder",
            help="mean-field Gaussian decoder weights, KL to N(0, 1) per Neff (means in use)",
        ),
    ] = False,
    identity: Annotated[
        float, typer.Option("--identity", help="reweighting identity threshold")
    ] = 0.8,
    max_seq_gaps: Annotated[float, typer.Option("--max-seq-gaps")] = 0.5,
    max_col_gaps: Annotated[float, typer.Option("--max-col-gaps")] = 0.3,
    accumulate: AccumulateOption = 1,
    seed: SeedOption = 0,
    device: DeviceOption = "auto",
    overwrite: OverwriteOption = False,
) -> None:
    """Train the family VAE on an alignment; write OUT/model.safetensors and history.csv."""
    from gensci.errors import ConfigError
    from gensci.protein.model import FamilyConfig, save_family, train_family
    from gensci.protein.study import write_csv
    from gensci.runtime import (
        check_writable,
        init_distributed,
        is_main_process,
        prepare_out_dir,
        resolve_device,
        seed_everything,
    )

    init_distributed(resolve_device(device))  # under torchrun: before any rank looks at --out
    try:
        widths = tuple(int(w) for w in hidden.split(",") if w.strip())
    except ValueError as exc:
        raise ConfigError(f"--hidden must be comma-separated integers, got {hidden!r}") from exc
    config = FamilyConfig(
        latent_dim=latent_dim,
        hidden=widths,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        kl_warmup_steps=kl_warmup,
        dropout=dropout,
        weight_decay=weight_decay,
        identity_threshold=identity,
        seed=seed,
        accumulate=accumulate,
        decoder_groups=decoder_groups,
        decoder_temperature=decoder_temperature,
        bayesian_decoder=bayesian_decoder,
    )
    seed_everything(seed)
    msa = _read_family(alignment, format, focus, max_seq_gaps, max_col_gaps, on_unknown)
    dev = resolve_device(device)
    net = budget.protein_net(msa.length, latent_dim, widths, dropout)
    what = (
        f"protein train on {msa.n_sequences} sequences x {msa.length} columns with "
        f"--latent-dim {latent_dim}, --hidden {hidden}"
    )
    budget.check_need(
        budget.protein_train_need(msa.n_sequences, msa.length, net, batch_size, dev.type == "cuda"),
        what,
        "lower --latent-dim, --hidden or --batch-size",
        dev,
    )
    budget.check_time(
        budget.training_seconds(net, steps, batch_size, dev),
        f"{what} for {steps} steps",
        "lower --steps or --batch-size",
    )
    out_dir = prepare_out_dir(out, overwrite)
    check_writable(out_dir / "model.safetensors", overwrite)
    model, meta, history = train_family(
        msa, config, device=_resolve_device(device), progress=is_main_process()
    )
    if not is_main_process():
        return
    save_family(model, meta, out_dir / "model.safetensors", overwrite=overwrite)
    write_csv(out_dir / "history.csv", history, overwrite=overwrite)
    typer.echo(
        f"{msa.n_sequences} sequences x {msa.length} columns, Neff {meta.neff:.1f}; "
        f"trained {steps} steps in {meta.train_seconds:.1f} s -> {out_dir / 'model.safetensors'}"
    )


@app.command("design")
def design_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="model.safetensors (or its folder)")],
    out: Annotated[Path, typer.Option("--out", help="output folder")],
    n: Annotated[int, typer.Option("-n", "--n", help="number of designs (per draw)")] = 100,
    n_passing: Annotated[
        int | None,
        typer.Option(
            "--n-passing",
            help="draw -n designs at a time until this many pass every rule; write only those",
        ),
    ] = None,
    max_draws: Annotated[
        int, typer.Option("--max-draws", help="with --n-passing: give up after this many draws")
    ] = 50,
    temperature: Annotated[
        float, typer.Option("--temperature", help="0 = argmax; > 0 samples each position")
    ] = 0.0,
    rules: RulesOpt = None,
    rule_quantile: RuleQuantileOpt = 0.005,
    fixed_rules: FixedRulesOpt = False,
    near: Annotated[
        str | None, typer.Option("--near", help="design around this sequence's posterior")
    ] = None,
    to: Annotated[
        str | None, typer.Option("--to", help="with --near: designs on the line to this one")
    ] = None,
    scale: Annotated[float, typer.Option("--scale", help="spread around --near")] = 1.0,
    alignment: Annotated[
        Path | None,
        typer.Option("--alignment", help="take --near/--to from this alignment, not training"),
    ] = None,
    hmm: HmmOpt = None,
    evalue: EvalueOpt = 1e-3,
    family_check: Annotated[
        str | None,
        typer.Option(
            "--family-check",
            help="potts: fit a Potts model on the training rows and "
            "fail designs below --family-quantile of held-out naturals' scores; or a "
            "family_check.safetensors written by an earlier design",
        ),
    ] = None,
    family_quantile: Annotated[
        float | None,
        typer.Option(
            "--family-quantile",
            help="with --family-check: the threshold is this "
            "quantile of held-out naturals' Potts scores, in (0, 1) (default 0.05)",
        ),
    ] = None,
    family_decoys_fail: Annotated[
        float | None,
        typer.Option(
            "--family-decoys-fail",
            help="with --family-check: instead of --family-quantile, set the threshold so that "
            "this share of column-shuffled copies of the held-out naturals fail, in (0, 1)",
        ),
    ] = None,
    seed: SeedOption = 0,
    device: DeviceOption = "auto",
    overwrite: OverwriteOption = False,
) -> None:
    """Decode new sequences; write OUT/designs.fasta and OUT/metrics.csv (one row per design)."""
    from gensci.errors import ConfigError
    from gensci.protein.design import design
    from gensci.protein.hmm import load_hmm
    from gensci.protein.io import read_alignment
    from gensci.protein.model import load_family_model, match_alignment
    from gensci.protein.study import assess, summarise, write_csv
    from gensci.runtime import check_writable, prepare_out_dir

    model, meta = load_family_model(_checkpoint_path(checkpoint), device=_resolve_device(device))
    the_rules = _rules(rules, fixed_rules, rule_quantile, meta.train_seqs)
    check_file = _family_check_source(family_check, family_quantile, family_decoys_fail)
    fam = None
    if check_file is not None:  # a bad file stops before anything is written
        from gensci.protein.family import load_family_check

        fam = load_family_check(check_file, family_quantile, meta.length)
        if family_decoys_fail is not None:
            fam.quantile = fam.quantile_failing(family_decoys_fail)
        typer.echo(
            f"family check from {check_file}: threshold {fam.threshold:.3f} nats per "
            f"position, the {fam.quantile:.3g} quantile of {fam.natural_scores.size} "
            f"held-out naturals; it fails {fam.decoy_fail_share():.2f} of their "
            "column-shuffled copies"
        )
    if hmm is not None:
        load_hmm(hmm)  # a bad HMM file stops before anything is written
    else:
        typer.echo(
            "warning: no --hmm given, so family membership is not checked (build one "
            "with `gensci protein hmm ALIGNMENT --out family.hmm`)",
            err=True,
        )
    what = f"protein design of {n} designs of {meta.length} positions"
    budget.check_memory(
        budget.protein_design_bytes(n, meta.length, model.config.latent_dim),
        what,
        "lower -n (run several designs with other --seed values)",
        "the designs and their rows",
    )
    budget.check_disk(
        budget.protein_design_disk(n, meta.length), out / "designs.fasta", what, "lower -n"
    )
    out_dir = prepare_out_dir(out, overwrite)
    for name in ("designs.fasta", "metrics.csv"):
        check_writable(out_dir / name, overwrite)
    if to is not None and near is None:
        raise ConfigError("--to needs --near (designs on the line from --near to --to)")
    source = meta.msa()
    if alignment is not None:
        source = match_alignment(meta, read_alignment(alignment))
    codes = source.encode()
    if family_check is not None and fam is None:
        fam = _fit_family_check(family_quantile, family_decoys_fail, meta, seed, out_dir, overwrite)

    def draw(draw_seed: int, prefix: str) -> Designs:
        if near is None:
            return design(model, n, "prior", temperature, draw_seed, prefix=prefix)
        if to is None:
            return design(
                model,
                n,
                "near",
                temperature,
                draw_seed,
                [codes[source.index(near)]],
                scale,
                prefix=prefix,
            )
        pair = [codes[source.index(near)], codes[source.index(to)]]
        return design(model, n, "line", temperature, draw_seed, pair, prefix=prefix)

    if n_passing is None:
        result = draw(seed, "design")
        rows = assess(result, meta, the_rules, hmm, evalue, fam)
    else:
        result, rows = _draw_until_passing(
            draw,
            n_passing,
            max_draws,
            seed,
            lambda d: assess(d, meta, the_rules, hmm, evalue, fam),
            model.config.latent_dim,
            meta.length,
        )
    write_fasta_rows(out_dir, result, rows, overwrite)
    write_csv(out_dir / "metrics.csv", rows, overwrite=overwrite)
    s = summarise(rows, evalue)
    extra = ""
    if "hmm_recognised" in s["all"]:
        extra = f"; HMM recognises {s['all']['hmm_recognised']:.2f} at E <= {evalue:g}"
    if "family_check" in s["all"]:
        extra += f"; the family check passes {s['all']['family_check']:.2f}"
    if len(result) > 1:
        from gensci.protein.metrics import covariation_fidelity
        from gensci.protein.weights import sequence_weights

        train_codes = meta.train_codes()
        r = covariation_fidelity(result.codes, train_codes, sequence_weights(train_codes))
        extra += f"; covariation r {r:.2f} against the training naturals"
    typer.echo(
        f"{len(result)} unique designs, {s['all'].get('n', 0)} assessed, "
        f"{s['passed'].get('n', 0)} pass every rule; median identity "
        f"{s['all'].get('median_identity', float('nan')):.2f}{extra} -> {out_dir}"
    )


def _family_check_source(
    method: str | None, quantile: float | None, decoys_fail: float | None
) -> Path | None:
    """Return the family check file named by --family-check (None for 'potts'); raise
    ConfigError for an unknown method, a quantile or share outside (0, 1), both given, or
    either without a check."""
    from gensci.errors import ConfigError
    from gensci.protein.family import METHODS, check_quantile

    if method is None:
        for name, value in (("quantile", quantile), ("decoys-fail", decoys_fail)):
            if value is not None:
                raise ConfigError(f"--family-{name} needs --family-check potts")
        return None
    if quantile is not None and decoys_fail is not None:
        raise ConfigError("give --family-quantile or --family-decoys-fail, not both")
    if quantile is not None:
        check_quantile(quantile)
    if decoys_fail is not None:
        check_quantile(decoys_fail, "--family-decoys-fail")
    if method in METHODS:
        return None
    path = Path(method)
    if path.suffix == ".safetensors" and path.is_file():
        return path
    raise ConfigError(
        f"unknown --family-check {method!r}; choose one of {list(METHODS)} or a "
        "family_check.safetensors written by an earlier design"
    )


def _fit_family_check(
    quantile: float | None,
    decoys_fail: float | None,
    meta: Any,
    seed: int,
    out_dir: Path,
    overwrite: bool,
) -> Any:
    """Return a FamilyCheck whose Potts model is fitted on the checkpoint's training rows less
    the calibration clusters; write it to OUT/family_check.safetensors for reuse."""
    import time

    from gensci.protein.baseline import PottsConfig
    from gensci.protein.family import fit_family_check, save_family_check
    from gensci.protein.weights import sequence_weights

    codes = meta.train_codes()
    t0 = time.perf_counter()
    fam = fit_family_check(
        codes,
        sequence_weights(codes),
        0.05 if quantile is None else quantile,
        config=PottsConfig(steps=1000, seed=seed),
        seed=seed,
    )
    if decoys_fail is not None:
        fam.quantile = fam.quantile_failing(decoys_fail)
    path = save_family_check(
        fam,
        out_dir / "family_check.safetensors",
        overwrite,
        {"columns": list(meta.columns), "source": meta.source},
    )
    typer.echo(
        f"family check: Potts model fitted on the training rows less "
        f"{fam.natural_scores.size} held-out naturals (whole clusters below 80% identity) "
        f"in {time.perf_counter() - t0:.0f} s; threshold {fam.threshold:.3f} nats per "
        f"position, their {fam.quantile:.3g} quantile; it fails "
        f"{fam.decoy_fail_share():.2f} of their column-shuffled copies -> {path}"
    )
    return fam


def _draw_until_passing(
    draw: Any, n_passing: int, max_draws: int, seed: int, assess: Any, latent_dim: int, length: int
) -> tuple[Designs, list[dict[str, Any]]]:
    """Draw batches of designs (seeds seed, seed + 1, ...) until n_passing unique ones pass every
    rule, or max_draws draws were made, or a draw brings nothing new; return the passing ones."""
    from gensci.protein.design import concat, select

    kept: list[Designs] = []
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    drawn = 0
    for k in range(max_draws):
        batch = draw(seed + k, f"design{k}")
        drawn += len(batch)
        fresh = [i for i, q in enumerate(batch.sequences) if q not in seen]
        seen.update(batch.sequences)
        if not fresh:
            break
        batch = select(batch, fresh)
        batch_rows = assess(batch)
        good = [i for i, r in enumerate(batch_rows) if r["passed"]]
        good = good[: n_passing - len(rows)]
        kept.append(select(batch, good))
        rows += [batch_rows[i] for i in good]
        if len(rows) >= n_passing:
            break
    typer.echo(
        f"--n-passing {n_passing}: {len(rows)} passing designs from {drawn} drawn "
        f"in {k + 1} draws"
        + (
            ""
            if len(rows) >= n_passing
            else " (fewer than asked: raise --max-draws or --temperature)"
        )
    )
    return concat(kept, latent_dim, length), rows


def write_fasta_rows(
    out_dir: Path, designs: Designs, rows: list[dict[str, Any]], overwrite: bool
) -> None:
    """Write designs.fasta with 'passed'/'failed' noted in each header."""
    from gensci.protein.io import write_fasta

    names = [
        f"{r['id']} passed={r['passed']} failed={r['failed'] or '-'} identity={r['identity']:.3f}"
        for r in rows
    ]
    write_fasta(out_dir / "designs.fasta", names, designs.sequences, overwrite=overwrite)


@app.command("score")
def score_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="model.safetensors (or its folder)")],
    mutants: Annotated[Path, typer.Argument(help="CSV with a 'mutant' column, e.g. A23C:D45E")],
    out: Annotated[Path, typer.Option("--out", help="scores CSV to write")],
    wt: Annotated[
        str | None, typer.Option("--wt", help="wild-type sequence id (default: the focus)")
    ] = None,
    first_residue: Annotated[
        int | None,
        typer.Option("--first-residue", help="number of the wild type's first residue"),
    ] = None,
    samples: Annotated[int, typer.Option("--samples", help="ELBO samples per mutant")] = 20,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 256,
    column: Annotated[str, typer.Option("--column", help="mutant column name")] = "mutant",
    seed: SeedOption = 0,
    device: DeviceOption = "auto",
    overwrite: OverwriteOption = False,
) -> None:
    """Score mutants by delta-ELBO (mutant - wild type); write a scores CSV."""
    from gensci.files import check_suffix
    from gensci.protein.model import load_family_model
    from gensci.protein.scoring import dms_scores, read_mutants, score_mutants, spearman
    from gensci.protein.study import write_csv
    from gensci.runtime import check_writable

    check_suffix(out, (".csv",), "the scores table (CSV)")
    check_writable(out, overwrite)
    model, meta = load_family_model(_checkpoint_path(checkpoint), device=_resolve_device(device))
    if mutants.is_file():
        count = budget.count_lines(mutants)
        net = budget.vae_of(model.config)
        what = (
            f"protein score of {count} mutants with --samples {samples}, --batch-size {batch_size}"
        )
        budget.check_memory(
            budget.protein_score_need(
                count, mutants.stat().st_size, meta.length, net, batch_size
            ).total,
            what,
            "lower --batch-size, or score the mutants in parts",
        )
        budget.check_time(
            budget.protein_score_seconds(count, samples, batch_size, net, _resolve_device(device)),
            what,
            "lower --samples",
        )
    rows, fields = read_mutants(mutants, column)
    measured = dms_scores(rows, mutants) if "DMS_score" in fields else None
    scored = score_mutants(
        model,
        meta,
        [r[column] for r in rows],
        wt,
        first_residue,
        samples,
        batch_size,
        seed,
        progress=True,
    )
    merged = [
        {**r, "delta_elbo": s["delta_elbo"], "status": s["status"]}
        for r, s in zip(rows, scored, strict=True)
    ]
    write_csv(out, merged, overwrite=overwrite)
    msg = f"scored {sum(s['status'] == 'ok' for s in scored)} of {len(rows)} mutants -> {out}"
    if measured is not None:
        rho = spearman([s["delta_elbo"] for s in scored], measured)
        msg += (
            f"; Spearman vs DMS_score {rho:.3f}"
            if rho == rho
            else "; no Spearman vs DMS_score (fewer than 3 finite pairs)"
        )
    typer.echo(msg)


@app.command("study")
def study_cmd(
    alignment: Annotated[str, typer.Argument(help=ALIGNMENT_HELP)],
    out: Annotated[Path, typer.Option("--out", help="report folder")],
    format: FormatOpt = None,
    on_unknown: OnUnknownOpt = None,
    hmm: HmmOpt = None,
    n: Annotated[int, typer.Option("-n", "--n", help="designs per sampler")] = 1000,
    temperature: Annotated[float, typer.Option("--temperature")] = 0.0,
    rules: RulesOpt = None,
    rule_quantile: RuleQuantileOpt = 0.005,
    fixed_rules: FixedRulesOpt = False,
    evalue: EvalueOpt = 1e-3,
    focus: FocusOpt = None,
    steps: Annotated[int, typer.Option("--steps")] = 3000,
    latent_dim: Annotated[int, typer.Option("--latent-dim")] = 8,
    seed: SeedOption = 0,
    device: DeviceOption = "auto",
    overwrite: OverwriteOption = False,
) -> None:
    """Train, design, assess beside a site-independent sampler; write a report folder."""
    from gensci.protein.feasibility import read_rules_values
    from gensci.protein.model import FamilyConfig
    from gensci.protein.study import run_study

    overrides = read_rules_values(rules) if rules is not None else None
    summary = run_study(
        alignment,
        out,
        hmm,
        FamilyConfig(steps=steps, latent_dim=latent_dim, seed=seed),
        n,
        temperature,
        None,
        evalue,
        focus,
        _resolve_device(device),
        overwrite,
        format=format,
        on_unknown=_on_unknown(on_unknown),
        rule_quantile=None if fixed_rules else rule_quantile,
        rule_overrides=overrides,
    )
    typer.echo(summary["reading"])
    from gensci.report.records import record_protein

    record_protein(out, summary)  # the report section: `gensci report` renders this folder
    typer.echo(json.dumps({k: summary[k] for k in ("vae", "site_independent")}, indent=1))
