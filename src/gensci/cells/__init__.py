"""Single-cell perturbation prediction by latent arithmetic.

    import gensci.cells as gc
    adata = gc.make_perturbation_benchmark(seed=0)   # or anndata.read_h5ad("kang.h5ad")
    gc.setup_anndata(adata, condition_key="condition", control="control",
                     perturbed="stimulated", cell_type_key="cell_type")
    model = gc.PerturbationModel(gc.leave_out(adata, "CD14+ Monocyte"))
    model.train(seed=0)
    predicted = model.predict(cell_type="CD14+ Monocyte", adata=adata)
"""

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

# Every name loads its module on first use: `import gensci.cells` (and the CLI, which imports
# it) stays free of anndata and torch until they are needed.
_HOME = {
    "CONVENTIONS": "data", "detect_keys": "data", "make_perturbation_benchmark": "data",
    "balanced_delta": "delta", "regressed_delta": "delta",
    "check_data_state": "registry", "get_registry": "registry", "setup_anndata": "registry",
    "PerturbationModel": "model", "leave_out": "model",
}


def __getattr__(name: str):  # type: ignore[no-untyped-def]
    if name in _HOME:
        import importlib

        return getattr(importlib.import_module(f"gensci.cells.{_HOME[name]}"), name)
    raise AttributeError(f"module 'gensci.cells' has no attribute {name!r}")
