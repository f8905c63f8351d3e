"""The Trainer: losses fall, resume continues exactly, EMA and early stopping, DDP equals one process."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gensci.errors import ConfigError, DataError, ShapeError
from gensci.models import MADE, VAE, MADEConfig, VAEConfig
from gensci.train import TrainConfig, Trainer
from tests.launch import clean_env, torchrun


def made_data() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 2, (512, 6), generator=g)
    x[:, 1] = x[:, 0]  # a dependency to learn
    return x


def test_loss_falls_and_metrics_logged(tmp_path):
    torch.manual_seed(0)  # the initial weights come from the global generator
    model = MADE(MADEConfig(n_dims=6, n_categories=2, hidden=(32,)))
    cfg = TrainConfig(
        steps=200, batch_size=64, lr=5e-3, log_every=50, out_dir=str(tmp_path), progress=False
    )
    history = Trainer(model, made_data(), cfg).fit()
    assert history[-1]["loss"] < history[0]["loss"] - 0.3
    lines = (tmp_path / "metrics.csv").read_text().splitlines()
    assert lines[0].startswith("step,loss") and len(lines) == 5
    assert (tmp_path / "last.pt").exists()


def test_resume_matches_uninterrupted_run(tmp_path):
    def run(steps: int, out: Path) -> dict:
        torch.manual_seed(0)
        model = MADE(MADEConfig(n_dims=6, n_categories=2, hidden=(16,)))
        cfg = TrainConfig(steps=steps, batch_size=64, lr=5e-3, out_dir=str(out), progress=False)
        Trainer(model, made_data(), cfg).fit()
        return model.state_dict()

    full = run(37, tmp_path / "a")
    run(13, tmp_path / "b")  # "interrupted" mid-epoch after 13 steps, its state on disk
    resumed = run(37, tmp_path / "b")
    for k in full:
        assert torch.equal(resumed[k], full[k]), k
    state = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    assert state["step"] == 37


def test_resume_continues_from_saved_step(tmp_path):
    torch.manual_seed(0)
    model = MADE(MADEConfig(n_dims=6, n_categories=2, hidden=(16,)))
    cfg = TrainConfig(steps=30, batch_size=64, out_dir=str(tmp_path), progress=False, log_every=10)
    Trainer(model, made_data(), cfg).fit()
    cfg2 = TrainConfig(steps=50, batch_size=64, out_dir=str(tmp_path), progress=False, log_every=10)
    history = Trainer(model, made_data(), cfg2).fit()
    assert [r["step"] for r in history] == [10, 20, 30, 40, 50]


class Linear1(torch.nn.Module):
    """loss = w: a constant gradient of 1, so bias-corrected Adam moves w by -lr every step."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros((), dtype=torch.float64))

    def loss(self, batch, step):
        return self.w * 1.0


@pytest.mark.parametrize("schedule,warmup", [("constant", 0), ("cosine", 0), ("cosine", 4)])
def test_learning_rate_schedule_is_applied(schedule, warmup):
    # with a constant gradient, bias-corrected Adam moves w by exactly -lr_t at step t
    cfg = TrainConfig(steps=20, batch_size=1, lr=0.01, lr_schedule=schedule, warmup_steps=warmup,
                      grad_clip=0.0, log_every=5, progress=False, device="cpu")
    model = Linear1()
    history = Trainer(model, torch.zeros(4, 1), cfg).fit()
    rates = [cfg.lr_at(s) for s in range(cfg.steps)]
    assert float(model.w) == pytest.approx(-sum(rates), rel=1e-6)
    assert [r["lr"] for r in history] == [rates[s - 1] for s in (5, 10, 15, 20)]
    if schedule == "cosine":
        assert rates[-1] < 0.01 * cfg.lr and max(rates) <= cfg.lr
        assert all(a >= b for a, b in zip(rates[warmup:], rates[warmup + 1:], strict=False))
    if warmup:
        assert rates[:warmup] == pytest.approx([cfg.lr * (s + 1) / warmup for s in range(warmup)])
    with pytest.raises(ConfigError, match="lr_schedule"):
        TrainConfig(lr_schedule="linear")


def test_stopping_part_way_along_a_longer_schedule():
    """schedule_steps: a 15-step run follows the first 15 rates of a 20-step cosine schedule."""
    full = TrainConfig(steps=20, batch_size=1, lr=0.01, lr_schedule="cosine", grad_clip=0.0,
                       progress=False, device="cpu")
    part = TrainConfig(steps=15, schedule_steps=20, batch_size=1, lr=0.01, lr_schedule="cosine",
                       grad_clip=0.0, progress=False, device="cpu")
    model = Linear1()
    Trainer(model, torch.zeros(4, 1), part).fit()
    prefix = [full.lr_at(s) for s in range(15)]
    assert float(model.w) == pytest.approx(-sum(prefix), rel=1e-6)
    assert part.lr_at(14) > 0.05 * part.lr  # not decayed to zero at its own end
    with pytest.raises(ConfigError, match="cosine"):
        TrainConfig(schedule_steps=30)
    with pytest.raises(ConfigError, match="reach 0 before training ends"):
        TrainConfig(steps=20, schedule_steps=10, lr_schedule="cosine")


def test_ema_weights_are_the_exponential_average():
    lr, decay, steps = 0.01, 0.8, 6
    model = Linear1()
    cfg = TrainConfig(
        steps=steps, batch_size=2, lr=lr, ema_decay=decay, grad_clip=0.0, progress=False
    )
    Trainer(model, torch.zeros(4, 1), cfg).fit()
    ema = 0.0
    for k in range(1, steps + 1):
        d = min(decay, k / (9 + k))  # the Trainer's warm-up: the step count before this update is k-1
        ema = d * ema + (1 - d) * (-k * lr)
    assert abs(model.w.item() - ema) < 1e-6, (model.w.item(), ema)


def test_early_stopping_restores_best():
    torch.manual_seed(0)
    x = torch.randn(64, 4)
    val = torch.randn(64, 4) + 5.0  # a validation set it cannot fit: val loss worsens
    model = VAE(VAEConfig(data_dim=4, latent_dim=2, hidden=(16,)))
    cfg = TrainConfig(steps=400, batch_size=32, lr=1e-2, val_every=20, patience=3, progress=False)
    history = Trainer(model, x, cfg, val_data=val).fit()
    vals = [r["val_loss"] for r in history if "val_loss" in r]
    assert history[-1]["step"] < 400  # it stopped early
    assert min(vals) < vals[-1]


def test_sample_weights_choose_examples():
    """With all weight on one example, every batch is that example."""
    seen = []

    class Probe(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def loss(self, batch, step):
            seen.append(batch[0].clone())
            return (self.w - 1).pow(2).sum()

    data = torch.arange(10.0).reshape(10, 1)
    weights = torch.zeros(10)
    weights[7] = 1.0
    Trainer(
        Probe(), data, TrainConfig(steps=3, batch_size=4, progress=False), sample_weights=weights
    ).fit()
    assert all((b == 7.0).all() for b in seen)


def test_bad_inputs_are_named():
    model = MADE(MADEConfig(n_dims=6, n_categories=2))
    with pytest.raises(ShapeError, match="examples"):
        Trainer(model, (made_data(), torch.zeros(3)))
    bad = torch.randn(8, 2)
    bad[3, 1] = float("inf")
    with pytest.raises(DataError, match="NaN/inf"):
        Trainer(VAE(VAEConfig(data_dim=2)), bad)
    with pytest.raises(ConfigError, match="steps"):
        TrainConfig(steps=0)
    with pytest.raises(ConfigError, match="loss"):
        Trainer(torch.nn.Linear(2, 2), torch.randn(4, 2))


def test_two_process_ddp_equals_one_process_accumulating_two_shards(tmp_path):
    """2 gloo processes each take half of every batch, and step exactly as 1 process with
    accumulate=2 (same shards, same noise); training each rank alone would not."""
    script = Path(__file__).with_name("ddp_step.py")
    env = clean_env()
    one, alone = tmp_path / "one", tmp_path / "alone"
    subprocess.run([sys.executable, str(script), str(one), "2"], check=True, env=env)
    subprocess.run([sys.executable, str(script), str(alone), "1"], check=True, env=env)
    proc = torchrun(str(script), str(tmp_path / "two"))
    assert proc.returncode == 0, proc.stderr[-4000:]
    ref = torch.load(f"{one}.rank0", weights_only=True)
    solo = torch.load(f"{alone}.rank0", weights_only=True)
    ranks = [torch.load(tmp_path / f"two.rank{r}", weights_only=True) for r in (0, 1)]
    assert ref["seen"] == [8] * 6  # 3 steps x 2 shards of 8
    for rank in ranks:
        assert rank["world"] == 2 and rank["seen"] == [8] * 3  # each rank: its half of the batch
        for k, v in ref["state"].items():
            assert torch.allclose(rank["state"][k], v, atol=1e-10, rtol=0), k
    # the check can fail: one process on whole batches (other noise draws) ends elsewhere
    assert any(not torch.allclose(solo["state"][k], v, atol=1e-6) for k, v in ref["state"].items())


# -- reliability: loading, exact resume, early stopping, DDP ----------------------------------


class _Payload:
    """Unpickling this object would call os.system: the restricted loader must refuse it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_payload_in_last_pt_is_refused_and_never_runs(tmp_path):
    from gensci.errors import CheckpointError

    marker = tmp_path / "ran"
    out = tmp_path / "run"
    out.mkdir()
    torch.save({"model": {}, "evil": _Payload(marker)}, out / "last.pt")
    model = MADE(MADEConfig(n_dims=6, n_categories=2, hidden=(8,)))
    cfg = TrainConfig(steps=2, batch_size=16, out_dir=str(out), progress=False)
    with pytest.raises(CheckpointError, match="refused"):
        Trainer(model, made_data(), cfg).fit()
    assert not marker.exists()
    # a genuine state holds only tensors and plain values: it loads with the restricted loader
    good = tmp_path / "good"
    Trainer(model, made_data(), TrainConfig(steps=2, batch_size=16, out_dir=str(good),
                                            progress=False, ema_decay=0.9)).fit()
    assert torch.load(good / "last.pt", weights_only=True)["step"] == 2


def _vae_run(out: Path, steps: int, **cfg) -> tuple[dict, list]:
    """Train a small VAE (a noisy loss: reparameterisation and dropout) and return its weights."""
    torch.manual_seed(0)
    model = VAE(VAEConfig(data_dim=4, latent_dim=2, hidden=(16,), dropout=0.1))
    data = torch.randn(40, 4, generator=torch.Generator().manual_seed(3))
    val = torch.randn(16, 4, generator=torch.Generator().manual_seed(4))
    weights = cfg.pop("weights", None)
    config = TrainConfig(steps=steps, out_dir=str(out), progress=False, log_every=2,
                         checkpoint_every=1, **cfg)
    trainer = Trainer(model, data, config, val_data=val, sample_weights=weights)
    history = trainer.fit()
    return {k: v.clone() for k, v in model.state_dict().items()}, history


@pytest.mark.parametrize(
    "options",
    [
        {"batch_size": 8, "ema_decay": 0.9},  # EMA weights must come back on resume
        {"batch_size": 64},  # fewer examples than a batch: drawn with replacement
        {"batch_size": 8, "weights": torch.linspace(0.1, 1.0, 40)},  # weighted draws
        {"batch_size": 8, "val_every": 2, "patience": 50, "ema_decay": 0.5},  # best-weight tracking
    ],
    ids=["ema", "replacement", "weights", "validation"],
)
def test_killed_and_resumed_run_equals_uninterrupted_run(tmp_path, options):
    full, full_history = _vae_run(tmp_path / "a", 11, **dict(options))
    _vae_run(tmp_path / "b", 6, **dict(options))  # the run stops after 6 steps, state on disk
    resumed, history = _vae_run(tmp_path / "b", 11, **dict(options))
    for k in full:
        assert torch.equal(resumed[k], full[k]), k
    assert [r["step"] for r in history] == [r["step"] for r in full_history]
    # the metrics file holds each step once, as the uninterrupted run's does
    def steps(run: str) -> list[int]:
        rows = (tmp_path / run / "metrics.csv").read_text().splitlines()
        return [int(r.split(",")[0]) for r in rows[1:]]

    assert steps("b") == steps("a") == [r["step"] for r in full_history]


def test_resume_after_a_kill_between_checkpoints_drops_the_unsaved_rows(tmp_path):
    """Rows logged after the last checkpoint are written again on resume, not twice."""
    out = tmp_path / "run"
    _vae_run(out, 6, batch_size=8)
    with (out / "metrics.csv").open("a") as fh:  # what a run killed after step 7 had logged
        fh.write("8,0.5,,0.001,1.0\n")
    _vae_run(out, 10, batch_size=8)
    steps = [int(r.split(",")[0]) for r in (out / "metrics.csv").read_text().splitlines()[1:]]
    assert steps == [2, 4, 6, 8, 10]


def test_resume_with_other_settings_is_refused(tmp_path):
    from gensci.errors import CheckpointError

    _vae_run(tmp_path / "r", 3, batch_size=8)
    with pytest.raises(CheckpointError, match=r"batch_size: 8 -> 4"):
        _vae_run(tmp_path / "r", 6, batch_size=4)
    with pytest.raises(CheckpointError, match="lr"):
        _vae_run(tmp_path / "r", 6, batch_size=8, lr=0.5)


def test_accumulated_shards_equal_one_large_batch_for_a_deterministic_loss():
    """Gradient accumulation over equal shards gives the full batch's mean gradient."""
    def run(accumulate: int) -> dict:
        torch.manual_seed(0)
        model = MADE(MADEConfig(n_dims=6, n_categories=2, hidden=(16,))).double()
        cfg = TrainConfig(steps=5, batch_size=32, lr=1e-2, accumulate=accumulate,
                          progress=False)
        Trainer(model, made_data(), cfg).fit()
        return model.state_dict()

    one, four = run(1), run(4)
    for k in one:
        assert torch.allclose(one[k], four[k], atol=1e-10), k
    with pytest.raises(ConfigError, match="shards"):
        Trainer(MADE(MADEConfig(n_dims=6, n_categories=2)), made_data(),
                TrainConfig(steps=1, batch_size=30, accumulate=4, progress=False)).fit()


def test_early_stopping_leaves_the_best_validated_weights():
    torch.manual_seed(0)
    x = torch.randn(64, 4)
    val = torch.randn(64, 4) + 5.0
    model = VAE(VAEConfig(data_dim=4, latent_dim=2, hidden=(16,)))
    cfg = TrainConfig(steps=400, batch_size=32, lr=1e-2, val_every=20, patience=3,
                      progress=False, device="cpu")
    trainer = Trainer(model, x, cfg, val_data=val)
    history = trainer.fit()
    vals = [r["val_loss"] for r in history if "val_loss" in r]
    assert min(vals) < vals[-1]
    # the model now holds the weights that scored the best validation loss, not the last ones
    assert trainer.validate() == pytest.approx(min(vals), rel=1e-6)


def test_bad_train_configs_are_refused():
    for bad in ({"lr": float("nan")}, {"lr": -1.0}, {"weight_decay": -0.1},
                {"grad_clip": float("inf")}, {"accumulate": 0}, {"betas": (0.9, 1.0)},
                {"patience": -1}, {"batch_size": 0}):
        with pytest.raises(ConfigError):
            TrainConfig(**bad)
