"""Size ceilings of the `gensci ct` commands: refused before any work, with the estimate."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

GENSCI = f"{sys.prefix}/bin/gensci"


def run(*args: str, limit: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENSCI_")}
    if limit is not None:
        env["GENSCI_MEMORY_LIMIT"] = limit
    return subprocess.run([GENSCI, *args], capture_output=True, text=True, env=env, timeout=120)


def refused(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    """Assert exit code 2 and one `error:` line holding every fragment; return the line."""
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_simulate_refuses_an_absurd_resolution(tmp_path: Path) -> None:
    np.save(tmp_path / "img.npy", np.random.default_rng(0).random((16, 16)))
    out = tmp_path / "sino.npz"
    line = refused(run("ct", "simulate", str(tmp_path / "img.npy"), "--out", str(out),
                       "--resolution", "100000"),
                   "ct simulate at 100000 x 100000 with 60 views needs about",
                   "TB (the Radon system matrix)", "available; lower --resolution")
    assert "--angles" in line
    assert not out.exists()


def test_reconstruct_refuses_under_a_small_limit(tmp_path: Path) -> None:
    n_det, views = 23, 10
    np.savez(tmp_path / "s.npz", sinogram=np.ones((n_det, views)),
             angles=np.arange(views) * 9.0, noise_std=np.asarray(0.1), image_size=np.asarray(16))
    out = tmp_path / "rec"
    refused(run("ct", "reconstruct", str(tmp_path / "s.npz"), "--out", str(out), limit="1M"),
            "ct reconstruct at 16 x 16 with 10 views needs about",
            "but GENSCI_MEMORY_LIMIT=1M allows 1 MB; lower --size")
    assert not out.exists()
    refused(run("ct", "reconstruct", str(tmp_path / "s.npz"), "--out", str(out), "--size",
                "200000"), "ct reconstruct at 200000 x 200000", "lower --size")
    assert not out.exists()
