"""Hub throughput: the real `huggingface_hub` client against a real `haven serve`, in one run.

    .venv/bin/python benchmarks/hub.py [--size-mb 500] [--files 200] [--workdir DIR] [--xet-rounds 3]

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
  stored for it (its blob store's `xet/` area before and after; the upload sends what it stores);
- the floor: the same client uploading a fresh file of that size (`hf_xet.upload_files`, as
  `upload_file` calls it) to a stand-in CAS in this process that reads each request and throws the
  bytes away (no verifying, no storing, no commit): what a Xet upload costs on this machine with
  any server, since the client's own work (sha256, chunking, hashing, compressing, sending) shares
  the CPUs with the server's; it prints the client's CPU seconds too;
- `--xet-rounds` (default 3) hash + upload rounds in all, each on a fresh random file, for the
  ratio's spread, and for each round where its time went: the server writes its own split
  (HAVEN_XET_TIMINGS, `haven/server/xet/timing.py`) and the benchmark lines it up with the client's
  clock (before the first xorb, the xorbs, the shard, the commit).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from serving import haven, start_server  # this folder is on sys.path when run as a script

os.environ["HF_HUB_DISABLE_XET"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"


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
t0 = time.time(); t = time.perf_counter()
api.upload_file(path_or_fileobj=src, path_in_repo="x.bin", repo_id=repo)
up_s, t1 = time.perf_counter() - t, time.time()
if changed == "-":  # a repeat: the upload only
    print(json.dumps({"hash": hash_s, "up": up_s, "t0": t0, "t1": t1}), flush=True)
    sys.exit()
t = time.perf_counter(); path = hf_hub_download(repo, "x.bin", endpoint=url, token=token, cache_dir=cache)
down_s = time.perf_counter() - t
print(json.dumps({"hash": hash_s, "up": up_s, "t0": t0, "t1": t1, "down": down_s, "path": path}), flush=True)
input()  # the parent measures the store, then lets the changed file go
t = time.perf_counter(); api.upload_file(path_or_fileobj=changed, path_in_repo="x.bin", repo_id=repo)
print(json.dumps({"up2": time.perf_counter() - t}), flush=True)
"""


FLOOR_CLIENT = """
import json, resource, sys, time, hf_xet
src, url = sys.argv[1:3]
t = time.perf_counter(); hf_xet.hash_files([src]); hash_s = time.perf_counter() - t
cpu = resource.getrusage(resource.RUSAGE_SELF)
t = time.perf_counter()
hf_xet.upload_files([src], url, ("unchecked", int(time.time()) + 3600), None, None, "model")
up_s, used = time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"hash": hash_s, "up": up_s, "cpu": used.ru_utime + used.ru_stime - cpu.ru_utime - cpu.ru_stime}))
"""


def discarding_cas() -> str:
    """A stand-in CAS on a free 127.0.0.1 port, in a thread of this process, that reads every
    xorb and shard and keeps nothing (the dedup query finds nothing): the floor of a Xet upload."""
    import threading

    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    async def xorb(request):
        async for _ in request.stream():
            pass
        return JSONResponse({"was_inserted": True})

    async def shard(request):
        async for _ in request.stream():
            pass
        return JSONResponse({"result": 0})

    async def nothing(request):
        return Response(status_code=404)

    app = Starlette(routes=[Route("/v1/xorbs/{prefix}/{hash}", xorb, methods=["POST"]),
                            Route("/v1/shards", shard, methods=["POST"]), Route("/v1/chunks/{prefix}/{hash}", nothing)])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, http="h11", log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    return f"http://127.0.0.1:{port}"


def xet_floor(work: Path, size: int, rounds: int) -> list[dict]:
    """`rounds` times, on a fresh random file: the default client's chunk+hash, then its upload to
    the discarding CAS, in a fresh process (so no local cache knows the chunks)."""
    import json

    url, src, out = discarding_cas(), work / "floor.bin", []
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_DISABLE_XET"}
    for _ in range(rounds):
        write_random(src, size)
        run = subprocess.run([sys.executable, "-c", FLOOR_CLIENT, str(src), url], env=env, capture_output=True,
                             text=True, check=True, timeout=600)
        out.append(json.loads(run.stdout.strip().splitlines()[-1]))
        src.unlink()
    return out


def xet_usage(data: Path) -> int:
    from haven.server.storage.blobs import LocalBlobStore, usage

    return usage(LocalBlobStore(data), "xet/")[1]


def xet_client(url: str, token: str, repo: str, src: Path, changed: Path | None, cache: Path) -> subprocess.Popen:
    """The default client (Xet: no HF_HUB_DISABLE_XET) in a fresh process, as users run it."""
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_DISABLE_XET"}
    return subprocess.Popen([sys.executable, "-c", XET_CLIENT, url, token, repo, str(src), str(changed or "-"),
                             str(cache)], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def xet_runs(url: str, token: str, work: Path, size: int, repeats: int) -> dict:
    """The default client (Xet) on a fresh random file: hash, upload, download, 1%-changed re-upload;
    then `repeats - 1` more hash + upload rounds, each on a fresh random file of the same size."""
    import json

    src, changed = work / "xet.bin", work / "xet-changed.bin"
    digest = write_random(src, size)
    with open(src, "rb") as f, open(changed, "wb") as out:
        shutil.copyfileobj(f, out)
        out.seek(size // 2)
        out.write(os.urandom(size // 100))
    proc = xet_client(url, token, "bench/xet-model", src, changed, work / "xet-cache")
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
    first["rounds"] = [(first["hash"], first["up"], split(work / "xet-timings.jsonl", first["t0"], first["t1"]))]
    for i in range(1, repeats):
        write_random(src, size)
        proc = xet_client(url, token, f"bench/xet-repeat-{i}", src, None, work / "xet-cache")
        r = json.loads(proc.stdout.readline())
        if proc.wait() != 0:
            sys.exit("the Xet client failed")
        first["rounds"].append((r["hash"], r["up"], split(work / "xet-timings.jsonl", r["t0"], r["t1"])))
        src.unlink()
    return first


def split(timings: Path, t0: float, t1: float) -> dict:
    """Where one Xet upload's time went, from the server's records (HAVEN_XET_TIMINGS) between the
    client's start `t0` and end `t1` of `upload_file`: the phases on the client's clock, and the
    server's seconds per part of its work (summed over xorbs, which overlap)."""
    import json

    rows = [json.loads(line) for line in timings.read_text().splitlines()] if timings.exists() else []
    rows = [r for r in rows if t0 <= r["start"] and r["end"] <= t1]
    xorbs = [r for r in rows if r["kind"] == "xorb"]
    shards = [r for r in rows if r["kind"] == "shard"]
    hashed = [r for r in rows if r["kind"] == "run"]
    if not xorbs or not shards:
        return {}
    first, last = min(r["start"] for r in xorbs), max(r["end"] for r in xorbs)
    edges = sorted([(r["start"], 1) for r in xorbs] + [(r["end"], -1) for r in xorbs])
    at_once = peak = 0
    for _, step in edges:
        at_once += step
        peak = max(peak, at_once)
    shard = shards[-1]
    return {
        "before": first - t0, "xorbs": last - first, "count": len(xorbs), "peak": peak,
        "wait": sum(r["wait"] for r in xorbs), "verify": sum(r["verify"] for r in xorbs),
        "write": sum(r["write"] for r in xorbs), "record": sum(r["record"] for r in xorbs),
        "sha256": sum(r["sha256"] for r in hashed), "hashed_mb": sum(r["bytes"] for r in hashed) / 1e6,
        "gap": shard["start"] - last, "shard": shard["end"] - shard["start"], "shard_sha256": shard["sha256"],
        "read_back_mb": shard["read_back"] / 1e6, "commit": t1 - shard["end"],
    }


def print_split(s: dict, hash_s: float, up_s: float) -> None:
    if not s:
        print("  (no server timings: the server did not write HAVEN_XET_TIMINGS)")
        return
    print(f"  client chunk+hash alone {hash_s:.2f} s; upload_file {up_s:.2f} s, of which:")
    print(f"    {s['before']:6.2f} s  before the first xorb (tokens, preupload, the client chunking its first xorb)")
    print(f"    {s['xorbs']:6.2f} s  {s['count']} xorbs, first start to last answer (at most {s['peak']} at once); "
          f"server seconds, summed over xorbs: waiting for bytes {s['wait']:.2f}, verifying (decode, BLAKE3, "
          f"Merkle) {s['verify']:.2f}, writing {s['write']:.2f}, recording {s['record']:.2f}; sha256 of the run "
          f"in the background {s['sha256']:.2f} ({s['hashed_mb']:.0f} MB)")
    print(f"    {s['gap']:6.2f} s  last xorb answered to shard received")
    print(f"    {s['shard']:6.2f} s  shard (waiting for / finishing the sha256 {s['shard_sha256']:.2f} s, "
          f"{s['read_back_mb']:.0f} MB read back)")
    print(f"    {s['commit']:6.2f} s  shard answered to upload_file returning (the NDJSON commit)")


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=int, default=500)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--workdir", type=Path, default=None, help="where to put data (default: a temp dir)")
    parser.add_argument("--xet-rounds", type=int, default=3,
                        help="Xet hash + upload rounds, each on a fresh file (the ratio's spread)")
    args = parser.parse_args()
    if args.xet_rounds < 1:
        parser.error("--xet-rounds must be at least 1")

    import httpx
    from huggingface_hub import CommitOperationAdd, HfApi, hf_hub_download

    work = Path(tempfile.mkdtemp(prefix="haven-hub-bench-", dir=args.workdir))
    data = work / "data"
    os.environ["HAVEN_XET_TIMINGS"] = str(work / "xet-timings.jsonl")  # the server's split of Xet uploads
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
        xet = xet_runs(url, token, work, size, args.xet_rounds)
        floor = xet_floor(work, size, args.xet_rounds)
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
        print(f"first Xet upload stored {xet['stored1'] / 1e6:.1f} MB for {mb:.1f} MB; the 1%-changed re-upload "
              f"stored {xet['stored2'] / 1e6:.2f} MB ({xet['stored2'] / size:.2%} of the file)")
        ratios = sorted(up / h for h, up, _ in xet["rounds"])
        print(f"Xet upload / client chunk+hash (each measured in the same client process, just before): "
              f"{', '.join(f'{up / h:.2f}x' for h, up, _ in xet['rounds'])}: median {ratios[len(ratios) // 2]:.2f}x, "
              f"range {ratios[0]:.2f}-{ratios[-1]:.2f}x (target <= 1.5x)")
        floors = sorted(r["up"] / r["hash"] for r in floor)
        each = ", ".join(f"{r['up']:.2f} s = {r['up'] / r['hash']:.2f}x" for r in floor)
        cpu = ", ".join(f"{r['cpu']:.2f}" for r in floor)
        print(f"the floor, upload to a CAS that discards the bytes / client chunk+hash: {each}: median "
              f"{floors[len(floors) // 2]:.2f}x; the client's CPU for the upload alone {cpu} s "
              f"(on {os.cpu_count()} CPUs)")
        for i, (h, up, parts) in enumerate(xet["rounds"]):
            print(f"Xet upload round {i + 1}:")
            print_split(parts, h, up)
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
