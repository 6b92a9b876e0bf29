import sys

import pytest


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny networks: torch's threads cost more than they give here.

    Acts only where a test module has imported torch, so the GLM tests
    (and the core without torch) are untouched.
    """
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
