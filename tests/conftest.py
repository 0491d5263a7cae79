"""Shared fixtures. Each area keeps its fixtures in tests/fixtures/<area>.py."""

import os

# Tests never reach the network: hub clients only talk to servers the tests start on loopback.
os.environ.setdefault("HF_HUB_OFFLINE", "0")
os.environ["HF_HUB_DISABLE_XET"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HAVEN_DISABLE_PROGRESS_BARS"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

pytest_plugins = [
    "fixtures.tokenizers",
    "fixtures.encoders",
    "fixtures.decoders",
    "fixtures.server",
]
