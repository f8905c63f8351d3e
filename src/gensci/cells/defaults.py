"""Training defaults of the cells study, importable without anndata or torch (the CLI uses them)."""

DEFAULT_MAX_EPOCHS = 200
DEFAULT_PATIENCE = 25
