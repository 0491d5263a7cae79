"""The CAS as its own process: a second `haven serve` on the same data (database, secret, blob
store) serves the Xet routes, and the hub sends clients there with `--cas-url`."""

from __future__ import annotations

import os

import httpx

from fixtures.server import start_server, stop_server, unique_name

from .conftest import default_env, run_client


def test_hub_sends_xet_clients_to_a_separate_cas(xet_hub, tmp_path):
    cas_url = f"{xet_hub.url}/cas"  # the package's hub plays the CAS process
    hub = start_server(tmp_path, args=("--data", str(xet_hub.data_dir), "--cas-url", cas_url))
    try:
        user = unique_name("casey")
        token = xet_hub.create_user(user)  # one database for both processes
        answer = httpx.get(f"{hub.url}/api/models/{user}/m/xet-write-token/main",
                           headers={"authorization": f"Bearer {token}"})
        assert answer.status_code == 404  # no such repository yet: nothing to hand out
        data = os.urandom(2 << 20)
        (tmp_path / "w.bin").write_bytes(data)
        env = default_env(xet_hub, token) | {"HF_ENDPOINT": hub.url}
        path = run_client(hub, token, """
from huggingface_hub import HfApi, hf_hub_download
api = HfApi()
api.create_repo(P["repo"])
api.upload_file(path_or_fileobj=P["f"], path_in_repo="w.bin", repo_id=P["repo"])
OUT = hf_hub_download(P["repo"], "w.bin")
""", env=env, repo=f"{user}/m", f=str(tmp_path / "w.bin"))
        assert open(path, "rb").read() == data
        answer = httpx.get(f"{hub.url}/api/models/{user}/m/xet-read-token/main",
                           headers={"authorization": f"Bearer {token}"})
        assert answer.json()["casUrl"] == cas_url == answer.headers["X-Xet-Cas-Url"]
    finally:
        stop_server(hub)
