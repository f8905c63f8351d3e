"""The Trainer: losses fall, resume continues exactly, EMA and early stopping, DDP equals one process."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gensci.errors import ConfigError, DataError, ShapeError
from gensci.models import MADE, VAE, MADEConfig, VAEConfig
from gensci.train import TrainConfig, Trainer


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
    state = torch.load(tmp_path / "b" / "last.pt", weights_only=False)
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_ddp_equals_single_process(tmp_path):
    script = Path(__file__).with_name("ddp_step.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    subprocess.run([sys.executable, str(script), str(tmp_path / "one.pt")], check=True, env=env)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            f"--master_port={_free_port()}",
            "--master_addr=127.0.0.1",
            str(script),
            str(tmp_path / "two.pt"),
        ],
        check=True,
        env=env,
        capture_output=True,
    )
    one, two = torch.load(tmp_path / "one.pt"), torch.load(tmp_path / "two.pt")
    start = MADE(MADEConfig(n_dims=5, n_categories=3, hidden=(16,))).double().state_dict()
    moved = False
    for k in one:
        assert torch.allclose(one[k], two[k], atol=1e-6, rtol=0), k
        moved |= not torch.equal(one[k], start[k].to(one[k]))
    assert moved  # the step changed the weights
