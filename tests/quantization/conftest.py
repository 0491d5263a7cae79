"""The quantization tests run the portable path unless they test the compiled kernels
(tests/quantization/test_kernels.py), so no other test waits for a compiler."""

import pytest


@pytest.fixture(autouse=True)
def _portable_path_unless_asked(request, monkeypatch):
    if "kernels" not in request.node.nodeid:
        monkeypatch.setenv("HAVEN_QUANT_KERNELS", "0")
