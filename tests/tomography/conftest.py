import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny sparse products run fastest on one thread (and do not fight over shared cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
