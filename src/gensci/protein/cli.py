"""The `gensci protein` commands: train, design, score, study."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from gensci import budget
from gensci.runtime import AccumulateOption, DeviceOption, OverwriteOption, SeedOption

if TYPE_CHECKING:
    from gensci.protein.design import Designs

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


def _checkpoint_path(path: Path) -> Path:
    """Return the checkpoint file: `path` itself or `path`/model.safetensors."""
    return path / "model.safetensors" if path.is_dir() else path


def _resolve_device(device: str) -> str:
    from gensci.runtime import resolve_device

    return str(resolve_device(device))


@app.command("train")
def train_cmd(
    alignment: Annotated[
        str, typer.Argument(help="aligned family (.sto .a2m .a3m .fasta); or fn3 | Pkinase")
    ],
    out: Annotated[Path, typer.Option("--out", help="output folder (model.safetensors)")],
    format: FormatOpt = None,
    focus: FocusOpt = None,
    latent_dim: Annotated[int, typer.Option("--latent-dim")] = 8,
    hidden: Annotated[str, typer.Option("--hidden", help="widths, e.g. 256,128")] = "128",
    steps: Annotated[int, typer.Option("--steps")] = 3000,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 64,
    lr: Annotated[float, typer.Option("--lr")] = 1e-3,
    kl_warmup: Annotated[int, typer.Option("--kl-warmup", help="KL annealing steps")] = 1000,
    dropout: Annotated[float, typer.Option("--dropout")] = 0.2,
    weight_decay: Annotated[float, typer.Option("--weight-decay")] = 0.05,
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
    from gensci.protein.io import load_family
    from gensci.protein.model import FamilyConfig, save_family, train_family
    from gensci.protein.study import resolve_alignment, write_csv
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
    seed_everything(seed)
    path, _ = resolve_alignment(alignment)
    msa = load_family(path, format, focus, max_seq_gaps, max_col_gaps)
    dev = resolve_device(device)
    net = budget.protein_net(msa.length, latent_dim, widths, dropout)
    what = (f"protein train on {msa.n_sequences} sequences x {msa.length} columns with "
            f"--latent-dim {latent_dim}, --hidden {hidden}")
    budget.check_need(
        budget.protein_train_need(msa.n_sequences, msa.length, net, batch_size,
                                  dev.type == "cuda"),
        what, "lower --latent-dim, --hidden or --batch-size", dev,
    )
    budget.check_time(
        budget.training_seconds(net, steps, batch_size, dev), f"{what} for {steps} steps",
        "lower --steps or --batch-size",
    )
    out_dir = prepare_out_dir(out, overwrite)
    check_writable(out_dir / "model.safetensors", overwrite)
    config = FamilyConfig(
        latent_dim=latent_dim, hidden=widths, steps=steps, batch_size=batch_size, lr=lr,
        kl_warmup_steps=kl_warmup, dropout=dropout, weight_decay=weight_decay,
        identity_threshold=identity, seed=seed, accumulate=accumulate,
    )
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
    n: Annotated[int, typer.Option("-n", "--n", help="number of designs")] = 100,
    temperature: Annotated[
        float, typer.Option("--temperature", help="0 = argmax; > 0 samples each position")
    ] = 0.0,
    rules: RulesOpt = None,
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
    seed: SeedOption = 0,
    device: DeviceOption = "auto",
    overwrite: OverwriteOption = False,
) -> None:
    """Decode new sequences; write OUT/designs.fasta and OUT/metrics.csv (one row per design)."""
    from gensci.errors import ConfigError
    from gensci.protein.design import design
    from gensci.protein.feasibility import load_rules
    from gensci.protein.hmm import load_hmm
    from gensci.protein.io import read_alignment
    from gensci.protein.model import load_family_model, match_alignment
    from gensci.protein.study import assess, summarise, write_csv
    from gensci.runtime import check_writable, prepare_out_dir

    model, meta = load_family_model(_checkpoint_path(checkpoint), device=_resolve_device(device))
    the_rules = load_rules(rules)
    if hmm is not None:
        load_hmm(hmm)  # a bad HMM file stops before anything is written
    what = f"protein design of {n} designs of {meta.length} positions"
    budget.check_memory(
        budget.protein_design_bytes(n, meta.length, model.config.latent_dim), what,
        "lower -n (run several designs with other --seed values)", "the designs and their rows",
    )
    budget.check_disk(budget.protein_design_disk(n, meta.length), out / "designs.fasta", what,
                      "lower -n")
    out_dir = prepare_out_dir(out, overwrite)
    for name in ("designs.fasta", "metrics.csv"):
        check_writable(out_dir / name, overwrite)
    if to is not None and near is None:
        raise ConfigError("--to needs --near (designs on the line from --near to --to)")
    source = meta.msa()
    if alignment is not None:
        source = match_alignment(meta, read_alignment(alignment))
    codes = source.encode()
    if near is None:
        result = design(model, n, "prior", temperature, seed)
    elif to is None:
        result = design(model, n, "near", temperature, seed, [codes[source.index(near)]], scale)
    else:
        pair = [codes[source.index(near)], codes[source.index(to)]]
        result = design(model, n, "line", temperature, seed, pair)
    rows = assess(result, meta, the_rules, hmm, evalue)
    write_fasta_rows(out_dir, result, rows, overwrite)
    write_csv(out_dir / "metrics.csv", rows, overwrite=overwrite)
    s = summarise(rows, evalue)
    typer.echo(
        f"{len(result)} unique designs, {s['all'].get('n', 0)} assessed, "
        f"{s['passed'].get('n', 0)} pass every rule; median identity "
        f"{s['all'].get('median_identity', float('nan')):.2f} -> {out_dir}"
    )


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
        what = (f"protein score of {count} mutants with --samples {samples}, "
                f"--batch-size {batch_size}")
        budget.check_memory(
            budget.protein_score_need(count, mutants.stat().st_size, meta.length, net,
                                      batch_size).total,
            what, "lower --batch-size, or score the mutants in parts",
        )
        budget.check_time(
            budget.protein_score_seconds(count, samples, batch_size, net, _resolve_device(device)),
            what, "lower --samples",
        )
    rows, fields = read_mutants(mutants, column)
    measured = dms_scores(rows, mutants) if "DMS_score" in fields else None
    scored = score_mutants(
        model, meta, [r[column] for r in rows], wt, first_residue, samples, batch_size, seed,
        progress=True,
    )
    merged = [{**r, "delta_elbo": s["delta_elbo"], "status": s["status"]} for r, s in zip(
        rows, scored, strict=True)]
    write_csv(out, merged, overwrite=overwrite)
    msg = f"scored {sum(s['status'] == 'ok' for s in scored)} of {len(rows)} mutants -> {out}"
    if measured is not None:
        rho = spearman([s["delta_elbo"] for s in scored], measured)
        msg += (f"; Spearman vs DMS_score {rho:.3f}" if rho == rho
                else "; no Spearman vs DMS_score (fewer than 3 finite pairs)")
    typer.echo(msg)


@app.command("study")
def study_cmd(
    alignment: Annotated[
        str, typer.Argument(help="aligned family, or fn3 | Pkinase (bundled Pfam seeds)")
    ],
    out: Annotated[Path, typer.Option("--out", help="report folder")],
    hmm: HmmOpt = None,
    n: Annotated[int, typer.Option("-n", "--n", help="designs per sampler")] = 1000,
    temperature: Annotated[float, typer.Option("--temperature")] = 0.0,
    rules: RulesOpt = None,
    evalue: EvalueOpt = 1e-3,
    focus: FocusOpt = None,
    steps: Annotated[int, typer.Option("--steps")] = 3000,
    latent_dim: Annotated[int, typer.Option("--latent-dim")] = 8,
    seed: SeedOption = 0,
    device: DeviceOption = "auto",
    overwrite: OverwriteOption = False,
) -> None:
    """Train, design, assess beside a site-independent sampler; write a report folder."""
    from gensci.protein.feasibility import load_rules
    from gensci.protein.model import FamilyConfig
    from gensci.protein.study import run_study

    summary = run_study(
        alignment, out, hmm, FamilyConfig(steps=steps, latent_dim=latent_dim, seed=seed), n,
        temperature, load_rules(rules), evalue, focus, _resolve_device(device), overwrite,
    )
    from gensci.report.records import record_protein

    record_protein(out, summary)  # the report section: `gensci report` renders this folder
    typer.echo(json.dumps({k: summary[k] for k in ("vae", "site_independent")}, indent=1))
