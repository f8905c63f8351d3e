"""Every training command runs under torchrun (2 CPU processes, gloo) through the CLI.

Only rank 0 checks and writes the output folder, and the model it writes equals that of one
process accumulating 2 shards per step (the same shards and the same noise draws).
"""

import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import load_file

from tests.launch import clean_env, torchrun


def gensci(*args: str, processes: int = 1) -> None:
    if processes > 1:
        proc = torchrun("-m", "gensci.cli", *map(str, args), processes=processes)
    else:
        proc = subprocess.run([sys.executable, "-m", "gensci.cli", *map(str, args)],
                              env=clean_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("torchrun")
    base = np.outer(np.hanning(16), np.hanning(16))
    np.save(root / "stack.npy", np.stack([base * (0.5 + 0.05 * i) for i in range(12)]))
    gensci("poisson", "generate", "--out", root / "poisson.npz", "--n-examples", 8, "--n", 16)
    gensci("cells", "simulate", "--out", root / "cells.h5ad")
    gensci("calo", "simulate", "--out", root / "showers.h5", "--n-showers", 64)
    return root


COMMANDS = {
    "ct": (["ct", "train-prior", "--data", "{root}/stack.npy", "--resolution", 16,
            "--base-channels", 4, "--channel-mults", "1,2", "--batch-size", 4, "--n-heldout", 2,
            "--steps", 2, "--checkpoint-every", 1], "prior.safetensors"),
    "poisson": (["poisson", "train", "--data", "{root}/poisson.npz", "--steps", 2,
                 "--batch-size", 4, "--base-channels", 4, "--channel-mults", "1,2"],
                "model.safetensors"),
    "cells": (["cells", "train", "{root}/cells.h5ad", "--latent-dim", 2, "--hidden", "8",
               "--max-epochs", 1, "--batch-size", 64], "model.safetensors"),
    "protein": (["protein", "train", "fn3", "--latent-dim", 2, "--hidden", "8", "--steps", 3,
                 "--batch-size", 8], "model.safetensors"),
    "symmetry": (["symmetry", "train", "--data", "digits", "--channels", "4,4",
                  "--latent-fields", 2, "--n-train", 64, "--steps", 3, "--batch-size", 8],
                 "model.safetensors"),
    "calorimetry": (["calo", "train", "{root}/showers.h5", "--model", "correlated", "--hidden",
                     "16,16", "--steps", 3, "--batch-size", 8, "--checkpoint-every", 1],
                    "model.safetensors"),
    "style": (["style", "train", "--model", "adain", "--steps", 3, "--n-images", 32,
               "--batch-size", 8], "generator.safetensors"),
}


@pytest.mark.parametrize("study", list(COMMANDS))
def test_training_under_torchrun_equals_one_process(inputs, study):
    args, model_file = COMMANDS[study]
    args = [str(a).format(root=inputs) for a in args]
    one, two = inputs / f"{study}-one", inputs / f"{study}-two"
    gensci(*args, "--out", one, "--device", "cpu", "--accumulate", 2)
    gensci(*args, "--out", two, "--device", "cpu", processes=2)
    a, b = load_file(one / model_file), load_file(two / model_file)
    assert a.keys() == b.keys()
    for k in a:
        assert np.allclose(a[k], b[k], atol=1e-5, rtol=1e-4), k
    # one writer: the output folder holds what a single process writes, nothing twice
    assert sorted(p.name for p in one.rglob("*")) == sorted(p.name for p in two.rglob("*"))
