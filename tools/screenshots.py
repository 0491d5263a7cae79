"""Screenshots of the hub's main pages at desktop and phone widths: `make screenshots`.

    .venv/bin/python tools/screenshots.py [--out DIR]

Starts `haven serve --demo` on a free 127.0.0.1 port with a fresh data directory, waits for the
demo model to be published, signs a user up in Debian's chromium (driven by Playwright), creates
a repository from the browser, and saves each main page as `<page>-desktop.png` (1280 px wide)
and `<page>-phone.png` (390 px) in the output folder, which it prints.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SIZES = {"desktop": (1280, 900), "phone": (390, 844)}
DEMO = "demo/all-MiniLM-L6-v2"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


def _wait_for_demo(base: str, timeout: float = 180.0) -> None:
    """Until the demo model's weights are committed (`haven serve --demo` publishes it once up)."""
    import json

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/api/models/{DEMO}", timeout=5) as r:
                if any(s["rfilename"] == "model.safetensors" for s in json.load(r).get("siblings", [])):
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"the demo model {DEMO} was not published within {timeout:.0f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="screenshots", help="output folder (default ./screenshots)")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)

    from playwright.sync_api import sync_playwright

    data = Path(tempfile.mkdtemp(prefix="haven-screens-"))
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "haven.cli", "serve", "--demo", "--port", str(port), "--data", str(data),
           "--log-level", "warning"]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait(f"{base}/api/health")
        _wait_for_demo(base)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport=dict(zip(("width", "height"), SIZES["desktop"], strict=True)))
            page.goto(f"{base}/join")
            page.fill("input[name=name]", "alice")
            page.fill("input[name=password]", "a demo password")
            page.fill("input[name=password2]", "a demo password")
            page.click("form button[type=submit]")
            page.goto(f"{base}/new")
            page.fill("input[name=name]", "my-first-model")
            page.click("form.publish-form button[type=submit]")
            pages = {
                "home": "/",
                "models": "/models?pipeline_tag=sentence-similarity",
                "model": f"/{DEMO}",
                "files": f"/{DEMO}/tree/main",
                "blob": f"/{DEMO}/blob/main/config.json",
                "commits": f"/{DEMO}/commits/main",
                "new": "/new",
                "upload": "/alice/my-first-model/upload/main",
                "tokens": "/settings/tokens",
            }
            for label, (width, height) in SIZES.items():
                page.set_viewport_size({"width": width, "height": height})
                for name, path in pages.items():
                    page.goto(base + path)
                    page.screenshot(path=str(out / f"{name}-{label}.png"), full_page=label == "desktop")
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=15)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
