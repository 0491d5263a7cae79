"""Shared fixtures. Each area keeps its fixtures in tests/fixtures/<area>.py."""

import os
import tempfile

# Tests never write the real caches (~/.cache/huggingface, ~/.cache/haven) nor read a real token:
# both homes point into one temporary folder for the session (tests that need their own set it).
_HOMES = tempfile.mkdtemp(prefix="haven-tests-")
os.environ["HF_HOME"] = os.path.join(_HOMES, "hf-home")
os.environ["HAVEN_HOME"] = os.path.join(_HOMES, "haven-home")
for _name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_TOKEN", "HAVEN_TOKEN", "HF_TOKEN_PATH"):
    os.environ.pop(_name, None)

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
