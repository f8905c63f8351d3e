"""Single-cell perturbation prediction by latent arithmetic.

    import gensci.cells as gc
    adata = gc.make_perturbation_benchmark(seed=0)   # or anndata.read_h5ad("kang.h5ad")
    gc.setup_anndata(adata, condition_key="condition", control="control",
                     perturbed="stimulated", cell_type_key="cell_type")
    model = gc.PerturbationModel(gc.leave_out(adata, "CD14+ Monocyte"))
    model.train(seed=0)
    predicted = model.predict(cell_type="CD14+ Monocyte", adata=adata)
"""

from gensci.cells.data import CONVENTIONS, detect_keys, make_perturbation_benchmark
from gensci.cells.delta import balanced_delta, regressed_delta
from gensci.cells.registry import check_data_state, get_registry, setup_anndata

__all__ = [
    "CONVENTIONS",
    "PerturbationModel",
    "balanced_delta",
    "check_data_state",
    "detect_keys",
    "get_registry",
    "leave_out",
    "make_perturbation_benchmark",
    "regressed_delta",
    "setup_anndata",
]


def __getattr__(name: str):  # type: ignore[no-untyped-def]
    # The model pulls in torch; load it only when asked for.
    if name in ("PerturbationModel", "leave_out"):
        from gensci.cells import model

        return getattr(model, name)
    raise AttributeError(f"module 'gensci.cells' has no attribute {name!r}")
