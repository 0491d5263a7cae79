"""Generation tests run tiny models: one intra-op thread is faster than several, and on a busy
machine much faster (OpenMP threads waiting on each other dominate microsecond-sized ops)."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
