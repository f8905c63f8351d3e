"""Perturbation prediction by latent arithmetic on the core VAE (scGen) or by label swap (CVAE).

    setup_anndata(adata, condition_key="condition", control="control", perturbed="stimulated",
                  cell_type_key="cell_type")
    model = PerturbationModel(adata)                  # core gensci.models.vae.VAE, Gaussian
    model.train(seed=0)                               # core gensci.train.Trainer
    model.get_latent()                                # -> adata.obsm["X_gensci_latent"]
    pred = model.predict(cell_type="CD14+ Monocyte")  # AnnData of predicted perturbed cells

Unconditional model (default, scGen): encode the type's control cells, add the balanced latent
delta z = mean z(perturbed) - mean z(control) of the training cells (see ``gensci.cells.delta``),
decode. ``predict(..., delta="regression")`` shifts every cell by its own delta instead, from a
ridge regression of the training types' deltas on their control means (scVIDR's cell-type
specific delta). ``step="auto"`` lengthens or shortens the shift to the step that best
reproduces the training types' own responses (``calibrate_step``).

Conditional model (``conditional=True``): the condition (0 = control, 1 = perturbed) is a
decoder input (n_labels=2; the encoder sees it too unless ``cond_in_encoder=False``); encode the
control cells as controls and decode them as perturbed. Either way the latent delta and its
bootstrap interval are stored in the prediction's ``.uns``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from gensci.cells.delta import BALANCE_MODES, DELTA_MODES, balanced_delta, regressed_delta
from gensci.cells.registry import (
    CellsRegistry,
    cell_mask,
    check_data_state,
    dense_rows,
    expression_matrix,
    get_registry,
    setup_anndata,
)
from gensci.errors import CheckpointError, ConfigError, DataError
from gensci.models.vae import VAE, VAEConfig
from gensci.runtime import resolve_device

LATENT_KEY = "X_gensci_latent"
PREDICT_KEY = "gensci_cells_prediction"
FORMAT = "gensci.cells/1"
OUTPUTS = ("decoded", "residual")
# One default for the API, the CLI (`cells train --max-epochs`) and the study's "full" scale;
# early stopping (patience 25 epochs) usually ends training before it.
from gensci.cells.defaults import DEFAULT_MAX_EPOCHS, DEFAULT_PATIENCE  # noqa: E402  (re-exported)


def leave_out(adata, cell_type: str):  # type: ignore[no-untyped-def]
    """Return a copy of `adata` without the perturbed cells of `cell_type` (the training set of a
    leave-one-cell-type-out split)."""
    reg = get_registry(adata)
    held = cell_mask(adata, reg, "perturbed", cell_type)
    return adata[~held].copy()



_REGISTRY_KEYS = ("condition_key", "control", "perturbed", "cell_type_key", "layer")


def read_model_metadata(path: str | Path) -> dict[str, Any]:
    """Return the metadata of a gensci.cells model file; raise CheckpointError naming the file
    if it is another kind of checkpoint or lacks (or mistypes) what `PerturbationModel.load`
    needs: format, gene_names (list of names), registry (the five keys), conditional, extra."""
    from gensci import checkpoint
    from gensci.files import require_keys

    meta = checkpoint.load_metadata(path)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a gensci.cells model (format {meta.get('format')!r})")
    require_keys(meta, ("gene_names", "registry", "conditional"), f"the metadata of {path}",
                 CheckpointError)
    reg, genes, extra = meta["registry"], meta["gene_names"], meta.setdefault("extra", {})
    if not isinstance(reg, dict):
        raise CheckpointError(f"{path}: registry is a {type(reg).__name__}, not a mapping")
    require_keys(reg, _REGISTRY_KEYS, f"the registry in {path}", CheckpointError)
    if not (isinstance(genes, list) and genes and all(isinstance(g, str) for g in genes)):
        raise CheckpointError(f"{path}: gene_names is not a non-empty list of gene names")
    held = extra.get("held_out", []) if isinstance(extra, dict) else None
    if not isinstance(held, list):
        raise CheckpointError(f"{path}: extra.held_out is not a list of cell types")
    return meta


class PerturbationModel:
    """A (conditional) VAE over the registered AnnData's expression, with latent arithmetic."""

    setup_anndata = staticmethod(setup_anndata)

    def __init__(
        self,
        adata,  # type: ignore[no-untyped-def]
        latent_dim: int = 100,
        hidden: Sequence[int] = (800, 800),
        kl_weight: float = 5e-5,
        conditional: bool = False,
        cond_in_encoder: bool = True,
        dropout: float = 0.2,
        activation: str = "leaky_relu",
        gaussian_std: float | None = 1.0,
    ) -> None:
        """Build the model for a registered AnnData (scGen's defaults: 2 x 800, latent 100,
        KL weight 5e-5, squared error, i.e. a Gaussian likelihood of unit std)."""
        self.adata = adata
        self.registry: CellsRegistry = get_registry(adata)
        state = check_data_state(adata, self.registry.layer)
        if state.state == "counts":
            raise DataError(state.message)
        self.data_state = state.state
        self.gene_names = [str(g) for g in adata.var_names]
        self.conditional = bool(conditional)
        config = VAEConfig(
            data_dim=adata.n_vars,
            latent_dim=latent_dim,
            hidden=tuple(hidden),
            likelihood="gaussian",
            n_labels=2 if conditional else 0,
            cond_in_encoder=cond_in_encoder,
            kl_weight=kl_weight,
            gaussian_std=gaussian_std,
            dropout=dropout,
            activation=activation,
        )
        self.module = VAE(config)
        self.history: list[dict] = []
        self.train_settings: dict[str, Any] = {}
        self.is_trained = False

    # -- data -----------------------------------------------------------------------------------
    def _tensors(self, adata, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[no-untyped-def]
        """Return (x (n, G) float32, c (n,) long: 0 control / 1 perturbed) of the masked cells."""
        reg = get_registry(adata)
        x = dense_rows(expression_matrix(adata, reg.layer), np.flatnonzero(mask))
        cond = adata.obs[reg.condition_key].astype(str).to_numpy()[mask]
        c = (cond == reg.perturbed).astype(np.int64)
        return torch.from_numpy(x), torch.from_numpy(c)

    def _check_genes(self, adata) -> None:  # type: ignore[no-untyped-def]
        genes = [str(g) for g in adata.var_names]
        if genes != self.gene_names:
            missing = [g for g in self.gene_names if g not in set(genes)]
            raise DataError(
                f"the AnnData's genes differ from the model's ({len(genes)} vs "
                f"{len(self.gene_names)}; {len(missing)} of the model's missing, e.g. "
                f"{missing[:5]}); subset and order them as adata[:, model.gene_names]"
            )

    # -- training -------------------------------------------------------------------------------
    def train(
        self,
        max_epochs: int = DEFAULT_MAX_EPOCHS,
        batch_size: int = 32,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        seed: int = 0,
        val_fraction: float = 0.1,
        early_stopping: bool = True,
        patience: int = DEFAULT_PATIENCE,
        device: str = "auto",
        progress: bool = True,
        out_dir: str | Path | None = None,
        accumulate: int = 1,
    ) -> list[dict]:
        """Return the training history after fitting with the core Trainer.

        Cells of both conditions (every cell type) are used; `val_fraction` of them, drawn with
        `seed`, are kept for validation and early stopping (`patience` epochs without a better
        validation loss). Deterministic for a fixed seed on a fixed device.
        """
        from gensci.train import TrainConfig, Trainer

        if max_epochs < 1 or batch_size < 1 or not 0 <= val_fraction < 1:
            raise ConfigError(
                f"need max_epochs >= 1, batch_size >= 1, 0 <= val_fraction < 1; got "
                f"{max_epochs}, {batch_size}, {val_fraction}"
            )
        reg = self.registry
        mask = cell_mask(self.adata, reg, "control") | cell_mask(self.adata, reg, "perturbed")
        x, c = self._tensors(self.adata, mask)
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(x))
        n_val = int(round(val_fraction * len(x))) if len(x) >= 20 else 0
        val_idx, train_idx = order[:n_val], order[n_val:]
        if len(train_idx) == 0:
            raise DataError("no cells left to train on")
        data: tuple[torch.Tensor, ...] = (x[train_idx],)
        if self.conditional:
            data = data + (c[train_idx],)
        val = None
        if n_val:
            val = (x[val_idx],) + ((c[val_idx],) if self.conditional else ())
        steps_per_epoch = max(1, math.ceil(len(train_idx) / batch_size))
        steps = max_epochs * steps_per_epoch
        use_val = val is not None and early_stopping
        cfg = TrainConfig(
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            weight_decay=weight_decay,
            seed=seed,
            log_every=steps_per_epoch,
            val_every=steps_per_epoch if val is not None else 0,
            device=device,
            progress=progress,
            out_dir=str(out_dir) if out_dir is not None else None,
            resume=False,
            accumulate=accumulate,
            patience=patience if use_val else 0,  # counted in validations, one per epoch
        )
        torch.manual_seed(seed)  # the weights' initial draw is part of what the seed fixes
        self.module = VAE(self.module.config)
        trainer = Trainer(self.module, data, cfg, val_data=val)
        self.history = trainer.fit()
        self.module.eval()
        self.is_trained = True
        self.train_settings = {
            "max_epochs": max_epochs, "batch_size": batch_size, "lr": lr, "seed": seed,
            "val_fraction": val_fraction, "early_stopping": early_stopping, "patience": patience,
            "steps_run": int(self.history[-1]["step"]) if self.history else 0,
            "n_train_cells": int(len(train_idx)), "n_val_cells": int(n_val),
        }
        return self.history

    # -- inference ------------------------------------------------------------------------------
    def _device(self) -> torch.device:
        return next(self.module.parameters()).device

    @torch.no_grad()
    def _encode(self, x: torch.Tensor, c: torch.Tensor | None, batch: int = 4096) -> torch.Tensor:
        """Return posterior means mu(x, c), (n, latent)."""
        self.module.eval()
        dev = self._device()
        out = []
        for i in range(0, len(x), batch):
            cc = c[i : i + batch].to(dev) if (self.conditional and c is not None) else None
            out.append(self.module.encode(x[i : i + batch].to(dev), cc)[0].cpu())
        return torch.cat(out) if out else torch.zeros(0, self.module.config.latent_dim)

    @torch.no_grad()
    def _decode(self, z: torch.Tensor, c: torch.Tensor | None, batch: int = 4096) -> torch.Tensor:
        """Return decoded means (n, G)."""
        self.module.eval()
        dev = self._device()
        out = []
        for i in range(0, len(z), batch):
            cc = c[i : i + batch].to(dev) if c is not None else None
            out.append(self.module.decode(z[i : i + batch].to(dev), cc).cpu())
        return torch.cat(out) if out else torch.zeros(0, len(self.gene_names))

    def _require_trained(self) -> None:
        if not self.is_trained:
            raise ConfigError("the model is not trained yet; call model.train() first")

    def get_latent(self, adata=None, key: str = LATENT_KEY) -> np.ndarray:  # type: ignore[no-untyped-def]
        """Return the posterior means (n_cells, latent_dim), also stored in adata.obsm[key].

        Cells outside the control and perturbed conditions are encoded as controls.
        """
        self._require_trained()
        adata = self.adata if adata is None else adata
        self._check_genes(adata)
        x, c = self._tensors(adata, np.ones(adata.n_obs, dtype=bool))
        z = self._encode(x, c).numpy()
        adata.obsm[key] = z
        return z

    def latent_delta(
        self,
        balance: str = "upsample",
        restrict_to: Sequence[str] | None = None,
        n_bootstrap: int = 200,
        seed: int = 0,
        train: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    ):  # type: ignore[no-untyped-def]
        """Return the DeltaResult of the training cells' latent means (perturbed - control).

        train: the training cells' (z, types, is_perturbed) if already encoded.
        """
        self._require_trained()
        z, types, pert = self._training_latent() if train is None else train
        return balanced_delta(
            z, types, pert, balance=balance, restrict_to=restrict_to,
            seed=seed, n_bootstrap=n_bootstrap,
        )

    def _training_latent(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return (z (n, latent), cell types (n,), is_perturbed (n,)) of the training cells."""
        reg = self.registry
        mask = cell_mask(self.adata, reg, "control") | cell_mask(self.adata, reg, "perturbed")
        x, c = self._tensors(self.adata, mask)
        z = self._encode(x, c).numpy()
        types = self.adata.obs[reg.cell_type_key].astype(str).to_numpy()[mask]
        return z, types, c.numpy().astype(bool)

    def _shifts(
        self, z: np.ndarray, delta: str, balance: str, restrict_to: Sequence[str] | None,
        ridge: float, seed: int, n_bootstrap: int,
        train: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    ):  # type: ignore[no-untyped-def]
        """Return (latent shifts (n, latent) for the cells `z`, DeltaResult) of the delta mode.

        train: the training cells' (z, types, is_perturbed) if already encoded.
        """
        train = self._training_latent() if train is None else train
        z_train, types, pert = train
        if delta == "regression":
            return regressed_delta(
                z_train, types, pert, z, ridge=ridge, restrict_to=restrict_to, seed=seed,
                n_bootstrap=n_bootstrap,
            )
        result = self.latent_delta(balance, restrict_to, n_bootstrap, seed, train=train)
        return np.broadcast_to(result.delta, z.shape), result

    def calibrate_step(
        self,
        delta: str = "mean",
        output: str = "decoded",
        balance: str = "upsample",
        restrict_to: Sequence[str] | None = None,
        ridge: float = 1.0,
        seed: int = 0,
        grid: Sequence[float] | None = None,
        n_degs: int = 100,
    ) -> tuple[float, dict[str, list[float]]]:
        """Return (step k, {"step": grid, "loss": loss per step}): the length of the latent step
        with which the arithmetic best reproduces the training types' own responses.

        For every training type with cells in both conditions (and >= 2 in each), its control
        cells are shifted by k times the delta, decoded (or turned into `output`), and the mean
        response compared with the type's real mean response on its top `n_degs` DEGs
        (Wilcoxon, as the benchmark scores). The loss is the mean squared error averaged over
        types with equal weight; k minimises it over `grid` (default 0.5, 0.55, ..., 3).
        Only training cells are used, so the held-out type stays unseen.
        """
        from gensci.cells.metrics import top_degs

        self._require_trained()
        if self.conditional:
            raise ConfigError("the step applies to latent arithmetic, not the conditional model")
        steps = np.round(np.arange(0.5, 3.0 + 1e-9, 0.05), 4) if grid is None else np.asarray(
            grid, dtype=np.float64)
        if steps.ndim != 1 or len(steps) == 0 or not np.all(np.isfinite(steps)):
            raise ConfigError(f"grid must be a non-empty list of finite steps, got {grid}")
        reg = self.registry
        x_all = expression_matrix(self.adata, reg.layer)
        labels = self.adata.obs[reg.cell_type_key].astype(str).to_numpy()
        ctrl_mask = cell_mask(self.adata, reg, "control")
        pert_mask = cell_mask(self.adata, reg, "perturbed")
        train = self._training_latent()  # encoded once for every type's shifts
        chosen = self._shifts(train[0][:1], delta, balance, restrict_to, ridge, seed, 0,
                              train)[1].cell_types
        loss = np.zeros(len(steps))
        used = 0
        for t in chosen:
            ci = np.flatnonzero(ctrl_mask & (labels == t))
            pi = np.flatnonzero(pert_mask & (labels == t))
            if len(ci) < 2 or len(pi) < 2:
                continue
            xc, xp = dense_rows(x_all, ci), dense_rows(x_all, pi)
            degs = top_degs(xc, xp, self.gene_names, n=min(n_degs, xc.shape[1]))
            real = (xp.mean(0) - xc.mean(0))[degs]
            zc = self._encode(torch.from_numpy(xc), None)
            shift = torch.as_tensor(
                np.ascontiguousarray(self._shifts(zc.numpy(), delta, balance, restrict_to, ridge,
                                                  seed, 0, train)[0]), dtype=zc.dtype)
            base = self._decode(zc, None).numpy().mean(0) if output == "residual" else None
            for i, k in enumerate(steps):
                pred = self._decode(zc + float(k) * shift, None).numpy().mean(0)
                moved = pred - base if base is not None else pred - xc.mean(0)
                loss[i] += float(np.mean((moved[degs] - real) ** 2))
            used += 1
        if used == 0:
            raise DataError(
                "no training cell type has >= 2 cells in both conditions to calibrate the step on"
            )
        loss /= used
        best = int(np.argmin(loss))
        if len(steps) > 1 and best in (int(np.argmin(steps)), int(np.argmax(steps))):
            import warnings

            warnings.warn(
                f"the step calibration chose the edge of its grid ({steps[best]:g}); the best "
                "step may lie outside it (an under-trained model or a poor delta can cause this)",
                stacklevel=2,
            )
        return float(steps[best]), {"step": steps.tolist(), "loss": loss.tolist()}

    def predict(
        self,
        cell_type: str,
        adata=None,  # type: ignore[no-untyped-def]
        balance: str = "upsample",
        restrict_to: Sequence[str] | None = None,
        n_bootstrap: int = 200,
        seed: int = 0,
        output: str = "decoded",
        delta: str = "mean",
        ridge: float = 1.0,
        step: float | str = 1.0,
    ):  # type: ignore[no-untyped-def]
        """Return an AnnData of predicted perturbed cells, one per control cell of `cell_type`.

        output="decoded" (scGen): the decoder's output at the shifted latent point.
        output="residual": the control cell plus the decoder's change,
        x + decode(z + delta) - decode(z) (CVAE: decode(z, perturbed) - decode(z, control)), which
        cancels the reconstruction error of each cell and keeps its own detail.

        delta="mean" (scGen): one latent delta for every cell, balanced per `balance`.
        delta="regression": each cell's own delta from the ridge regression (penalty `ridge`) of
        the training types' deltas on their control means (``gensci.cells.delta.regressed_delta``;
        unconditional model only); `balance` does not apply.

        step: the latent shift is `step` times the delta; 1 is scGen's arithmetic, "auto" picks
        the step from the training types (``calibrate_step``). Unconditional model only. The
        delta in uns is the one before the step; uns["gensci_cells_prediction"]["step"] holds it.

        The control cells come from `adata` (default: the training AnnData); the delta from the
        training cells (balanced per `balance`, over `restrict_to` types if given). X has the
        input's form: sparse in the same format if the input is, its float dtype, and clipped
        at 0 for log-normalised data (the decoder can undershoot). obs is copied from the
        control cells with obs[condition_key] = "predicted", a new category when the column is
        categorical (the source cell's name in obs["source_cell"]);
        uns["gensci_cells_prediction"] holds the delta and its interval (for the regression: of
        the cells' mean delta; each cell's own in obsm["X_gensci_latent_delta"]).
        """
        import anndata as ad

        self._require_trained()
        if balance not in BALANCE_MODES:
            raise ConfigError(f"unknown balance {balance!r}; choose one of {BALANCE_MODES}")
        if output not in OUTPUTS:
            raise ConfigError(f"unknown output {output!r}; choose one of {OUTPUTS}")
        if delta not in DELTA_MODES:
            raise ConfigError(f"unknown delta {delta!r}; choose one of {DELTA_MODES}")
        if delta == "regression" and self.conditional:
            raise ConfigError(
                "delta='regression' shifts the latent point and needs the unconditional model; "
                "the conditional model predicts by swapping the condition label"
            )
        if step != "auto" and not (isinstance(step, (int, float)) and math.isfinite(step)
                                   and step > 0):
            raise ConfigError(f"step must be a positive number or 'auto', got {step!r}")
        if self.conditional and step != 1.0:
            raise ConfigError("the step applies to latent arithmetic, not the conditional model")
        adata = self.adata if adata is None else adata
        self._check_genes(adata)
        reg = get_registry(adata)
        ctrl = cell_mask(adata, reg, "control", cell_type)
        if not ctrl.any():
            raise DataError(
                f"cell type {cell_type!r} has no control cells "
                f"({reg.condition_key} == {reg.control!r}) to predict from"
            )
        x, c = self._tensors(adata, ctrl)
        z = self._encode(x, c)
        shift, result = self._shifts(z.numpy(), delta, balance, restrict_to, ridge, seed,
                                     n_bootstrap)
        step_used = 1.0
        if step == "auto" and not self.conditional:
            step_used, _ = self.calibrate_step(delta, output, balance, restrict_to, ridge, seed)
        elif not self.conditional:
            step_used = float(step)
        shift_t = step_used * torch.as_tensor(np.ascontiguousarray(shift), dtype=z.dtype)
        if self.conditional:
            pred = self._decode(z, torch.ones(len(z), dtype=torch.long))
            base = self._decode(z, torch.zeros(len(z), dtype=torch.long))
        else:
            pred = self._decode(z + shift_t, None)
            base = self._decode(z, None)
        if output == "residual":
            pred = x + pred - base
        obs = adata.obs[ctrl].copy()
        obs["source_cell"] = obs.index.astype(str)
        obs.index = [f"{n}-predicted" for n in obs.index.astype(str)]
        cond = adata.obs[reg.condition_key]
        if isinstance(cond.dtype, pd.CategoricalDtype):  # categorical obs stay categorical
            cats = [c for c in cond.cat.categories if c != "predicted"] + ["predicted"]
            obs[reg.condition_key] = pd.Categorical(["predicted"] * len(obs), categories=cats)
        else:
            obs[reg.condition_key] = "predicted"
        out = ad.AnnData(X=self._as_input(pred.numpy(), expression_matrix(adata, reg.layer)),
                         obs=obs, var=adata.var.copy())
        out.uns[PREDICT_KEY] = {
            "cell_type": cell_type,
            "method": "cvae_label_swap" if self.conditional else "latent_arithmetic",
            "output": output,
            "latent_delta": result.to_uns(),
            "delta": delta,
            "step": step_used,
            "step_mode": "auto" if step == "auto" else "fixed",
            "seed": int(seed),
            "registry": {k: ("" if v is None else v) for k, v in reg.to_dict().items()},
        }
        if delta == "regression":  # every cell has its own shift
            out.uns[PREDICT_KEY]["ridge"] = float(ridge)
            out.obsm["X_gensci_latent_delta"] = (step_used * shift).astype(np.float32)
        return out

    def _as_input(self, values: np.ndarray, like):  # type: ignore[no-untyped-def]
        """Return predicted values (n, G) in the form of the input matrix `like`: the same
        sparse format (or dense) and float dtype; log-normalised data is clipped at 0, since
        log expression cannot be negative (scaled data keeps its sign)."""
        import scipy.sparse as sp

        if self.data_state != "scaled":
            values = np.clip(values, 0.0, None)
        dtype = like.dtype if np.issubdtype(like.dtype, np.floating) else np.float32
        values = values.astype(dtype, copy=False)
        if sp.issparse(like):
            return sp.csr_matrix(values).asformat(like.format)
        return values

    # -- persistence ----------------------------------------------------------------------------
    def save(
        self, path: str | Path, overwrite: bool = False, extra: dict[str, Any] | None = None
    ) -> Path:
        """Write the model (weights, config, gene names, registered keys) to `path`; return it.

        `extra`: JSON-ready notes kept beside them (e.g. the held-out cell types), read back
        as ``model.metadata["extra"]``.
        """
        from gensci import checkpoint

        self._require_trained()
        meta = {
            "format": FORMAT,
            "gene_names": self.gene_names,
            "registry": self.registry.to_dict(),
            "conditional": self.conditional,
            "data_state": self.data_state,
            "train_settings": self.train_settings,
            "extra": extra or {},
        }
        return checkpoint.save(self.module, path, overwrite=overwrite, metadata=meta)

    @classmethod
    def load(cls, path: str | Path, adata, device: str = "cpu") -> PerturbationModel:  # type: ignore[no-untyped-def]
        """Return the model saved at `path`, bound to `adata` (its training cells, for the delta).

        If `adata` is not registered, the keys stored with the model are registered on it.
        """
        from gensci import checkpoint

        meta = read_model_metadata(path)
        module = checkpoint.load(path, device=resolve_device(device))
        if not isinstance(module, VAE):
            raise CheckpointError(f"{path} holds a {type(module).__name__}, not a VAE")
        reg = meta["registry"]
        if "_gensci_cells" not in adata.uns:
            setup_anndata(
                adata, reg["condition_key"], reg["control"], reg["perturbed"],
                reg["cell_type_key"], reg["layer"] or None, verbose=False,
            )
        self = cls.__new__(cls)
        self.adata = adata
        self.registry = get_registry(adata)
        self.gene_names = list(meta["gene_names"])
        self._check_genes(adata)
        self.conditional = bool(meta["conditional"])
        self.data_state = meta.get("data_state", "")
        self.module = module
        self.history = []
        self.train_settings = dict(meta.get("train_settings", {}))
        self.is_trained = True
        self.metadata = meta
        return self
