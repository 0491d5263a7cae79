"""Hub throughput: the real `huggingface_hub` client against a real `haven serve`, in one run.

    .venv/bin/python benchmarks/hub.py [--size-mb 500] [--files 200] [--workdir DIR]

Starts `haven serve` on a free 127.0.0.1 port with a fresh data directory (created with
`haven admin create-user/create-token`), then measures, on the same disk:

- a plain file copy of a random N MB file (`shutil.copyfile`): the baseline;
- `HfApi.upload_file` of that file as an LFS file (client hashing, preupload, LFS batch, PUT of
  the bytes to the signed href, NDJSON commit) and `hf_hub_download` of it into an empty cache;
  throughput is reported as a ratio to the plain copy (target >= 0.5);
- one `create_commit` with 200 small regular files (target < 5 s);
- for reference, sha256 of the file: an LFS upload hashes it twice (the client before sending,
  the server while receiving), so it bounds the upload throughput;
- for reference, the server alone with `curl` as client (PUT to the signed LFS href from the
  batch API, GET of the resolve URL), which separates the server's cost from the client's.

It also reports the server's peak memory (VmHWM): the 500 MB object is streamed, never held.
The LFS rows run the client with HF_HUB_DISABLE_XET=1. The Xet rows run the default client (a
fresh process without that variable, as users run it) on a second file of the same size:

- the client's own chunking and hashing of the file (`hf_xet.hash_files`): the floor of a Xet
  upload; the upload target is <= 1.5x that time;
- `upload_file` through Xet, and `hf_hub_download` of it through Xet into an empty cache;
- dedup: the file with 1% of its bytes changed in one place uploaded again, with the bytes the hub
  stored for it (its blob store's `xet/` area before and after; the upload sends what it stores).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

os.environ["HF_HUB_DISABLE_XET"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def haven(*args: str, data: Path) -> str:
    cmd = [sys.executable, "-m", "haven.cli", *args, "--data", str(data)]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()


def start_server(data: Path, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "haven.cli", "serve", "--no-demo", "--host", "127.0.0.1", "--port", str(port),
           "--data", str(data), "--public-url", url, "--log-level", "warning"]
    proc = subprocess.Popen(cmd, stdout=open(log, "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"haven serve exited:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/api/health", timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    sys.exit(f"haven serve did not start:\n{log.read_text()}")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def write_random(path: Path, size: int) -> str:
    hasher = hashlib.sha256()
    block = 16 << 20
    with open(path, "wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(block, left))
            hasher.update(chunk)
            f.write(chunk)
            left -= len(chunk)
    return hasher.hexdigest()


XET_CLIENT = """
import json, sys, time, hf_xet
from huggingface_hub import HfApi, hf_hub_download
url, token, repo, src, changed, cache = sys.argv[1:7]
api = HfApi(endpoint=url, token=token)
api.create_repo(repo)
t = time.perf_counter(); hf_xet.hash_files([src]); hash_s = time.perf_counter() - t
t = time.perf_counter(); api.upload_file(path_or_fileobj=src, path_in_repo="x.bin", repo_id=repo); up_s = time.perf_counter() - t
t = time.perf_counter(); path = hf_hub_download(repo, "x.bin", endpoint=url, token=token, cache_dir=cache)
down_s = time.perf_counter() - t
print(json.dumps({"hash": hash_s, "up": up_s, "down": down_s, "path": path}), flush=True)
input()  # the parent measures the store, then lets the changed file go
t = time.perf_counter(); api.upload_file(path_or_fileobj=changed, path_in_repo="x.bin", repo_id=repo)
print(json.dumps({"up2": time.perf_counter() - t}), flush=True)
"""


def xet_usage(data: Path) -> int:
    from haven.server.storage.blobs import LocalBlobStore

    return LocalBlobStore(data).usage("xet/")[1]


def xet_runs(url: str, token: str, work: Path, size: int) -> dict:
    """The default client (Xet) on a fresh random file: hash, upload, download, 1%-changed re-upload."""
    import json

    src, changed = work / "xet.bin", work / "xet-changed.bin"
    digest = write_random(src, size)
    with open(src, "rb") as f, open(changed, "wb") as out:
        shutil.copyfileobj(f, out)
        out.seek(size // 2)
        out.write(os.urandom(size // 100))
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_DISABLE_XET"}
    proc = subprocess.Popen([sys.executable, "-c", XET_CLIENT, url, token, "bench/xet-model", str(src), str(changed),
                             str(work / "xet-cache")], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    first = json.loads(proc.stdout.readline())
    hasher = hashlib.sha256()
    with open(first["path"], "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            hasher.update(block)
    first["ok"] = hasher.hexdigest() == digest
    before = xet_usage(work / "data")
    proc.stdin.write("\n")
    proc.stdin.flush()
    first.update(json.loads(proc.stdout.readline()))
    if proc.wait() != 0:
        sys.exit("the Xet client failed")
    first["stored2"] = xet_usage(work / "data") - before
    first["stored1"] = before
    for p in (src, changed):
        p.unlink()
    shutil.rmtree(work / "xet-cache", ignore_errors=True)
    return first


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=int, default=500)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--workdir", type=Path, default=None, help="where to put data (default: a temp dir)")
    args = parser.parse_args()

    import httpx
    from huggingface_hub import CommitOperationAdd, HfApi, hf_hub_download

    work = Path(tempfile.mkdtemp(prefix="haven-hub-bench-", dir=args.workdir))
    data = work / "data"
    proc = None
    try:
        haven("admin", "create-user", "bench", data=data)
        token = haven("admin", "create-token", "bench", "--role", "write", data=data).splitlines()[-1]
        proc, url = start_server(data, work / "server.log")
        api = HfApi(endpoint=url, token=token)
        repo_id = "bench/big-model"
        api.create_repo(repo_id)

        size = args.size_mb * 1024 * 1024
        src = work / "weights.safetensors"
        digest = write_random(src, size)
        copy_s, _ = timed(lambda: shutil.copyfile(src, work / "copy.bin"))
        (work / "copy.bin").unlink()

        def sha256_file() -> str:
            hasher = hashlib.sha256()
            with open(src, "rb") as f:
                for block in iter(lambda: f.read(1 << 24), b""):
                    hasher.update(block)
            return hasher.hexdigest()

        hash_s, _ = timed(sha256_file)  # LFS needs it twice: the client hashes, the server verifies

        up_s, _ = timed(lambda: api.upload_file(path_or_fileobj=str(src), path_in_repo="model.safetensors",
                                                repo_id=repo_id, commit_message="big file"))
        down_s, path = timed(lambda: hf_hub_download(repo_id, "model.safetensors", endpoint=url, token=token,
                                                     cache_dir=work / "cache"))
        ok = Path(path).stat().st_size == size
        hasher = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 24), b""):
                hasher.update(block)
        ok = ok and hasher.hexdigest() == digest
        shutil.rmtree(work / "cache")

        curl_up_s = curl_down_s = None
        if shutil.which("curl"):
            other = work / "other.bin"
            other_oid = write_random(other, size)
            batch = httpx.post(f"{url}/{repo_id}.git/info/lfs/objects/batch", headers={
                "Authorization": f"Bearer {token}", "Accept": "application/vnd.git-lfs+json",
                "Content-Type": "application/vnd.git-lfs+json"}, json={
                "operation": "upload", "transfers": ["basic"], "objects": [{"oid": other_oid, "size": size}]})
            href = batch.json()["objects"][0]["actions"]["upload"]["href"]
            curl_up_s = float(subprocess.run(["curl", "-sS", "-f", "-T", str(other), "-w", "%{time_total}", href],
                                             check=True, capture_output=True, text=True).stdout)
            other.unlink()
            resolve = f"{url}/{repo_id}/resolve/main/model.safetensors"
            curl_down_s = float(subprocess.run(
                ["curl", "-sS", "-f", "-H", f"Authorization: Bearer {token}", "-o", str(work / "dl.bin"),
                 "-w", "%{time_total}", resolve], check=True, capture_output=True, text=True).stdout)
            (work / "dl.bin").unlink()

        ops = [CommitOperationAdd(path_in_repo=f"configs/part_{i:03d}.json",
                                  path_or_fileobj=f'{{"index": {i}, "name": "file {i}"}}\n'.encode())
               for i in range(args.files)]
        many_s, _ = timed(lambda: api.create_commit(repo_id, operations=ops, commit_message="many small files"))
        listed = [f for f in api.list_repo_files(repo_id) if f.startswith("configs/")]
        xet = xet_runs(url, token, work, size)
        rss = peak_rss_mb(proc.pid)

        mb = size / 1e6
        rows = [
            ("plain file copy (baseline)", f"{copy_s:.2f} s", f"{mb / copy_s:.0f} MB/s", "1.00", ""),
            ("  sha256 of the file (LFS verification)", f"{hash_s:.2f} s", f"{mb / hash_s:.0f} MB/s",
             f"{copy_s / hash_s:.2f}", ""),
            (f"upload_file {args.size_mb} MB (LFS)", f"{up_s:.2f} s", f"{mb / up_s:.0f} MB/s",
             f"{copy_s / up_s:.2f}", ">= 0.5"),
            (f"hf_hub_download {args.size_mb} MB", f"{down_s:.2f} s", f"{mb / down_s:.0f} MB/s",
             f"{copy_s / down_s:.2f}", ">= 0.5"),
            ("  Xet: client chunk+hash (hf_xet.hash_files)", f"{xet['hash']:.2f} s", f"{mb / xet['hash']:.0f} MB/s",
             f"{copy_s / xet['hash']:.2f}", ""),
            (f"upload_file {args.size_mb} MB (Xet)", f"{xet['up']:.2f} s", f"{mb / xet['up']:.0f} MB/s",
             f"{copy_s / xet['up']:.2f}", "<=1.5xh"),
            (f"hf_hub_download {args.size_mb} MB (Xet)", f"{xet['down']:.2f} s", f"{mb / xet['down']:.0f} MB/s",
             f"{copy_s / xet['down']:.2f}", ""),
            ("Xet re-upload, 1% changed", f"{xet['up2']:.2f} s",
             f"{xet['stored2'] / 1e6:.1f} MB sent", f"{xet['stored2'] / size:.1%}", "< 5%"),
            (f"create_commit {args.files} small files", f"{many_s:.2f} s", f"{args.files / many_s:.0f} files/s",
             "", "< 5 s"),
        ]
        if curl_up_s is not None:
            rows += [
                (f"  server alone: curl PUT {args.size_mb} MB", f"{curl_up_s:.2f} s", f"{mb / curl_up_s:.0f} MB/s",
                 f"{copy_s / curl_up_s:.2f}", ""),
                (f"  server alone: curl GET {args.size_mb} MB", f"{curl_down_s:.2f} s",
                 f"{mb / curl_down_s:.0f} MB/s", f"{copy_s / curl_down_s:.2f}", ""),
            ]
        print(f"\nHaven hub benchmark (huggingface_hub client; LFS rows with HF_HUB_DISABLE_XET=1; data on {work})")
        print(f"{'operation':44} {'time':>9} {'throughput':>14} {'vs copy':>8} {'target':>8}")
        for row in rows:
            print(f"{row[0]:44} {row[1]:>9} {row[2]:>14} {row[3]:>8} {row[4]:>8}")
        load = os.getloadavg()[0]
        print(f"load average {load:.1f} on {os.cpu_count()} CPUs; ", end="")
        print(f"download content identical (sha256): {ok} (Xet: {xet['ok']}); {len(listed)}/{args.files} small "
              f"files listed; server peak RSS {rss:.0f} MB")
        print(f"Xet upload / client chunk+hash: {xet['up'] / xet['hash']:.2f}x (target <= 1.5x); first Xet upload "
              f"stored {xet['stored1'] / 1e6:.1f} MB for {mb:.1f} MB; the 1%-changed re-upload stored "
              f"{xet['stored2'] / 1e6:.2f} MB ({xet['stored2'] / size:.2%} of the file)")
        if not ok or not xet["ok"] or len(listed) != args.files:
            sys.exit(1)
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
