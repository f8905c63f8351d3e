"""Registration of an AnnData's keys (condition, control/perturbed values, cell type, layer).

``setup_anndata`` names the keys once, checks them, looks at the expression values and says what
it found (raw counts, log-normalised or scaled); every later call (train, predict, metrics) reads
the registry from ``adata.uns["_gensci_cells"]``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import scipy.sparse as sp

from gensci.errors import DataError

REGISTRY_KEY = "_gensci_cells"


@dataclass(frozen=True)
class CellsRegistry:
    """The keys of one AnnData, as registered by ``setup_anndata``."""

    condition_key: str
    control: str
    perturbed: str
    cell_type_key: str
    layer: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        """Return the registry as a plain dict (None layer kept)."""
        return asdict(self)


@dataclass(frozen=True)
class DataState:
    """What ``check_data_state`` found in the expression matrix."""

    state: str  # "counts" | "log-normalised" | "scaled"
    n_cells: int
    n_genes: int
    sparse: bool
    min: float
    max: float
    message: str


def expression_matrix(adata, layer: str | None = None):  # type: ignore[no-untyped-def]
    """Return ``adata.X`` or ``adata.layers[layer]`` (dense ndarray or scipy sparse matrix)."""
    if layer is None:
        if adata.X is None:
            raise DataError("adata.X is empty (None); give the expression in X or name a layer")
        return adata.X
    if layer not in adata.layers:
        raise DataError(f"layer {layer!r} not in adata.layers (has {list(adata.layers.keys())})")
    return adata.layers[layer]


def dense_rows(matrix, rows: np.ndarray | None = None) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Return the chosen rows of a dense or sparse matrix as a float32 ndarray (n_rows, n_genes)."""
    sub = matrix if rows is None else matrix[rows]
    if sp.issparse(sub):
        sub = sub.toarray()
    return np.asarray(sub, dtype=np.float32)


def check_data_state(adata, layer: str | None = None) -> DataState:  # type: ignore[no-untyped-def]
    """Return the DataState of the expression (counts / log-normalised / scaled); raise on NaN/inf.

    Counts: non-negative integers with a maximum above 20. Scaled: any negative value (z-scores).
    Log-normalised: non-negative, non-integer values (log1p of normalised counts stays below ~15).
    """
    M = expression_matrix(adata, layer)
    where = f"layers[{layer!r}]" if layer else "X"
    values = M.data if sp.issparse(M) else np.asarray(M).ravel()
    if M.shape[0] == 0 or M.shape[1] == 0:
        raise DataError(f"adata.{where} is empty (shape {M.shape})")
    if not np.issubdtype(values.dtype, np.number):
        raise DataError(f"adata.{where} has non-numeric dtype {values.dtype}")
    bad = ~np.isfinite(values)
    if bad.any():
        raise DataError(
            f"adata.{where} holds {int(bad.sum())} NaN/inf values; remove or impute them first"
        )
    vmin = float(values.min()) if values.size else 0.0
    vmax = float(values.max()) if values.size else 0.0
    if sp.issparse(M) and values.size < M.shape[0] * M.shape[1]:
        vmin = min(vmin, 0.0)
    sample = values[: 200_000]
    integer = bool(np.all(np.equal(np.mod(sample, 1), 0)))
    if vmin < 0:
        state = "scaled"
        msg = (
            f"adata.{where} holds negative values (min {vmin:.3g}): looks scaled (z-scored). "
            "The model works on it, but log-normalised expression is what the metrics assume."
        )
    elif integer and vmax > 20:
        state = "counts"
        msg = (
            f"adata.{where} holds non-negative integers up to {vmax:.0f}: looks like raw counts. "
            "Log-normalise first: sc.pp.normalize_total(adata); sc.pp.log1p(adata)."
        )
    else:
        state = "log-normalised"
        msg = f"adata.{where} looks log-normalised (values in [{vmin:.3g}, {vmax:.3g}])."
    return DataState(state, M.shape[0], M.shape[1], sp.issparse(M), vmin, vmax, msg)


def _check_obs_key(adata, key: str, what: str) -> None:  # type: ignore[no-untyped-def]
    if key not in adata.obs.columns:
        raise DataError(f"{what} key {key!r} not in adata.obs (columns: {list(adata.obs.columns)})")
    if adata.obs[key].isna().any():
        n = int(adata.obs[key].isna().sum())
        raise DataError(f"adata.obs[{key!r}] has {n} missing values; drop or label those cells")


def setup_anndata(
    adata,  # type: ignore[no-untyped-def]
    condition_key: str | None = None,
    control: str | None = None,
    perturbed: str | None = None,
    cell_type_key: str | None = None,
    layer: str | None = None,
    verbose: bool = True,
) -> DataState:
    """Return the DataState found, after registering the keys in ``adata.uns["_gensci_cells"]``.

    Keys left as None are detected as the CLI does (``gensci.cells.data.detect_keys``: obs
    "condition" with control/stimulated or "label" with ctrl/stim, and the usual cell-type
    column names); with verbose, what was detected is printed. Raises DataError when a key is
    missing from obs (or cannot be detected), a condition value is absent, the layer is
    missing, or the expression holds NaN/inf.
    """
    if None in (condition_key, control, perturbed, cell_type_key):
        condition_key, control, perturbed, cell_type_key = _detect(
            adata, condition_key, control, perturbed, cell_type_key, verbose)
    assert condition_key and control and perturbed and cell_type_key  # filled by _detect
    _check_obs_key(adata, condition_key, "condition")
    _check_obs_key(adata, cell_type_key, "cell-type")
    values = sorted(adata.obs[condition_key].astype(str).unique())
    for name, value in (("control", control), ("perturbed", perturbed)):
        if value not in values:
            raise DataError(
                f"{name} value {value!r} not found in adata.obs[{condition_key!r}] "
                f"(values: {values})"
            )
    if control == perturbed:
        raise DataError(f"control and perturbed values are the same ({control!r})")
    state = check_data_state(adata, layer)
    reg = CellsRegistry(condition_key, str(control), str(perturbed), cell_type_key, layer)
    adata.uns[REGISTRY_KEY] = {k: ("" if v is None else v) for k, v in reg.to_dict().items()}
    adata.uns[REGISTRY_KEY]["data_state"] = state.state
    if verbose:
        counts = adata.obs.groupby(
            [cell_type_key, condition_key], observed=True
        ).size().unstack(fill_value=0)
        print(f"gensci.cells: {state.message}")
        print(f"gensci.cells: {state.n_cells} cells x {state.n_genes} genes "
              f"({'sparse' if state.sparse else 'dense'}); cells per type and condition:")
        print(counts.to_string())
    return state


def _detect(adata, condition_key, control, perturbed, cell_type_key, verbose):  # type: ignore[no-untyped-def]
    """Return the four keys with those not given filled from the known conventions
    (``gensci.cells.data.CONVENTIONS`` and ``CELL_TYPE_KEYS``, as the CLI detects them)."""
    from gensci.cells.data import CELL_TYPE_KEYS, CONVENTIONS

    if None in (condition_key, control, perturbed):
        for conv in CONVENTIONS.values():
            if condition_key not in (None, conv.condition_key):
                continue
            if conv.condition_key in adata.obs.columns:
                values = set(adata.obs[conv.condition_key].astype(str).unique())
                if {control or conv.control, perturbed or conv.perturbed} <= values:
                    condition_key = conv.condition_key
                    control, perturbed = control or conv.control, perturbed or conv.perturbed
                    break
        if None in (condition_key, control, perturbed):
            raise DataError(
                "could not detect the condition column: expected obs['condition'] with values "
                "'control'/'stimulated' or obs['label'] with 'ctrl'/'stim'; obs columns are "
                f"{list(adata.obs.columns)}; give condition_key, control and perturbed"
            )
    if cell_type_key is None:
        cell_type_key = next((k for k in CELL_TYPE_KEYS if k in adata.obs.columns), None)
        if cell_type_key is None:
            raise DataError(
                f"could not detect the cell-type column (tried {list(CELL_TYPE_KEYS)}); obs "
                f"columns are {list(adata.obs.columns)}; give cell_type_key"
            )
    if verbose:
        print(f"gensci.cells: detected condition_key={condition_key!r} ({control!r} vs "
              f"{perturbed!r}), cell_type_key={cell_type_key!r}")
    return condition_key, control, perturbed, cell_type_key


def get_registry(adata) -> CellsRegistry:  # type: ignore[no-untyped-def]
    """Return the CellsRegistry stored by ``setup_anndata``; raise DataError if there is none."""
    if REGISTRY_KEY not in adata.uns:
        raise DataError(
            "this AnnData was not registered; call gensci.cells.setup_anndata(adata, "
            "condition_key=..., control=..., perturbed=..., cell_type_key=...) first"
        )
    d = dict(adata.uns[REGISTRY_KEY])
    return CellsRegistry(
        condition_key=str(d["condition_key"]),
        control=str(d["control"]),
        perturbed=str(d["perturbed"]),
        cell_type_key=str(d["cell_type_key"]),
        layer=str(d["layer"]) or None,
    )


def cell_mask(
    adata,  # type: ignore[no-untyped-def]
    reg: CellsRegistry,
    condition: str | None = None,
    cell_types: list[str] | str | None = None,
) -> np.ndarray:
    """Return a boolean mask (n_cells,) of cells in `condition` ("control"/"perturbed"/None=any)
    and in `cell_types` (None = any); raise DataError naming an unknown cell type."""
    mask = np.ones(adata.n_obs, dtype=bool)
    if condition is not None:
        value = {"control": reg.control, "perturbed": reg.perturbed}[condition]
        mask &= adata.obs[reg.condition_key].astype(str).to_numpy() == value
    if cell_types is not None:
        if isinstance(cell_types, str):
            cell_types = [cell_types]
        labels = adata.obs[reg.cell_type_key].astype(str).to_numpy()
        known = sorted(set(labels))
        for t in cell_types:
            if t not in known:
                raise DataError(
                    f"cell type {t!r} not in adata.obs[{reg.cell_type_key!r}] (types: {known})"
                )
        mask &= np.isin(labels, list(cell_types))
    return mask
