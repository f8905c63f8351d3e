import os

import pytest
import torch

# Tests use tiny models, which gain nothing from threads; and when the two cores are shared, torch's
# thread pool spins and slows tiny products by orders of magnitude. One thread, also for subprocesses.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


@pytest.fixture(autouse=True)
def _seed_global_generators() -> None:
    """Every test starts from the same global random state (torch seeds itself at random)."""
    from gensci.runtime import seed_everything

    seed_everything(0)
