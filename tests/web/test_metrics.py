"""The Metrics tab against a live hub: event files written by torch's SummaryWriter (the real
writer), pushed with huggingface_hub, read back on `/{owner}/{name}/tensorboard`. The values the
page carries are compared with the values written (as float32, the precision the writer keeps)."""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from huggingface_hub import HfApi

from fixtures.server import unique_name
from haven.server.storage.datatypes import LfsInfo, TreeEntry
from haven.server.web import tensorboard

LOSS = {"alpha": [2.0, 1.5, 1.2, 0.9, 0.8, 0.7, 0.65, 0.6], "beta": [2.2, 1.9, 1.4, 1.1, 0.95]}
ACCURACY = {"alpha": [0.5, 0.625, 0.75]}  # eval every 3 steps: steps 0, 3, 6
LONG = 2500  # steps of the run the page thins to MAX_POINTS


def write_runs(root: Path) -> tuple[float, float]:
    from torch.utils.tensorboard import SummaryWriter

    start = time.time()
    for run, losses in LOSS.items():
        writer = SummaryWriter(str(root / "runs" / run))
        for step, loss in enumerate(losses):
            writer.add_scalar("train/loss", loss, step)
        for i, acc in enumerate(ACCURACY.get(run, [])):
            writer.add_scalar("eval/accuracy", acc, i * 3)
        writer.add_text("notes", "<img src=x onerror=alert(1)>", 0)  # not a scalar: not charted
        writer.close()
    return start, time.time()


def page_data(html: str) -> dict:
    found = re.search(r'<script type="application/json" id="metrics-data">(.*?)</script>', html, re.S)
    assert found, "the page carries its series as JSON"
    return json.loads(found.group(1))


@pytest.fixture(scope="module")
def runs_site(hub_server, tmp_path_factory):
    owner = unique_name("metrics")
    token = hub_server.create_user(owner)
    api = HfApi(endpoint=hub_server.url, token=token)
    folder = tmp_path_factory.mktemp("tb")
    written = write_runs(folder)
    repo = api.create_repo(f"{owner}/trained").repo_id
    api.upload_folder(folder_path=str(folder), repo_id=repo, commit_message="runs")
    api.upload_file(path_or_fileobj=b"# trained\n", path_in_repo="README.md", repo_id=repo)

    plain = api.create_repo(f"{owner}/plain").repo_id
    api.upload_file(path_or_fileobj=b"# plain\n", path_in_repo="README.md", repo_id=plain)

    broken = api.create_repo(f"{owner}/broken").repo_id
    good = next((folder / "runs" / "alpha").iterdir()).read_bytes()
    api.upload_file(path_or_fileobj=good[:-7], path_in_repo="runs/cut/events.out.tfevents.1.host", repo_id=broken)
    api.upload_file(path_or_fileobj=b"\x00garbage" * 40, path_in_repo="runs/junk/events.out.tfevents.2.host",
                    repo_id=broken)

    from torch.utils.tensorboard import SummaryWriter

    long_dir = tmp_path_factory.mktemp("tb-long")
    writer = SummaryWriter(str(long_dir / "runs" / "long"))
    for step in range(LONG):
        writer.add_scalar("loss", 1.0 / (step + 1), step)
    writer.close()
    long_repo = api.create_repo(f"{owner}/long").repo_id
    api.upload_folder(folder_path=str(long_dir), repo_id=long_repo)

    private = api.create_repo(f"{owner}/hidden-runs", private=True).repo_id
    api.upload_folder(folder_path=str(folder), repo_id=private)
    return hub_server.url, owner, token, written


def test_page_shows_every_run_and_tag_with_the_written_values(runs_site):
    url, owner, _, (start, end) = runs_site
    r = httpx.get(f"{url}/{owner}/trained/tensorboard")
    assert r.status_code == 200, r.text
    data = page_data(r.text)
    assert data["runs"] == ["runs/alpha", "runs/beta"]
    assert [t["tag"] for t in data["tags"]] == ["eval/accuracy", "train/loss"]  # text summaries are not scalars
    charts = {t["tag"]: {s["run"]: s["points"] for s in t["series"]} for t in data["tags"]}
    for run, losses in LOSS.items():
        points = charts["train/loss"][f"runs/{run}"]
        assert [p[0] for p in points] == list(range(len(losses)))
        assert [p[2] for p in points] == [float(np.float32(v)) for v in losses]
        assert all(start - 1 <= p[1] <= end + 1 for p in points)
    accuracy = charts["eval/accuracy"]
    assert list(accuracy) == ["runs/alpha"]
    assert [(p[0], p[2]) for p in accuracy["runs/alpha"]] == [(3 * i, float(np.float32(v))) for i, v in enumerate(ACCURACY["alpha"])]
    for tag in ("train/loss", "eval/accuracy"):
        assert f"<figcaption>{tag}</figcaption>" in r.text
    # the table read without JavaScript: each run's last value
    assert "<td>runs/beta</td><td>4</td><td>0.95</td><td>5</td>" in r.text


def test_tab_appears_only_where_event_files_are(runs_site):
    url, owner, _, _ = runs_site
    card = httpx.get(f"{url}/{owner}/trained").text
    assert f'href="/{owner}/trained/tensorboard"' in card
    plain = httpx.get(f"{url}/{owner}/plain")
    assert plain.status_code == 200 and "/tensorboard" not in plain.text
    missing = httpx.get(f"{url}/{owner}/plain/tensorboard")
    assert missing.status_code == 404
    assert "holds no TensorBoard event files" in missing.text


def test_corrupt_and_truncated_files_give_a_message(runs_site):
    url, owner, _, _ = runs_site
    r = httpx.get(f"{url}/{owner}/broken/tensorboard")
    assert r.status_code == 200, r.text
    data = page_data(r.text)
    errors = {e["path"]: e["error"] for e in data["errors"]}
    assert set(errors) == {"runs/cut/events.out.tfevents.1.host", "runs/junk/events.out.tfevents.2.host"}
    assert "truncated" in errors["runs/cut/events.out.tfevents.1.host"]
    assert "runs/junk/events.out.tfevents.2.host" in r.text
    # the records before the cut are kept: all of alpha's losses but the file's last record
    loss = {t["tag"]: t for t in data["tags"]}["train/loss"]["series"]
    assert [s["run"] for s in loss] == ["runs/cut"]
    assert [p[2] for p in loss[0]["points"]] == [float(np.float32(v)) for v in LOSS["alpha"]]


def test_private_runs_and_bad_query(runs_site):
    url, owner, token, _ = runs_site
    assert httpx.get(f"{url}/{owner}/hidden-runs/tensorboard").status_code == 404
    r = httpx.get(f"{url}/{owner}/hidden-runs/tensorboard", headers={"authorization": f"Bearer {token}"})
    assert r.status_code == 200 and page_data(r.text)["runs"] == ["runs/alpha", "runs/beta"]
    r = httpx.get(f"{url}/{owner}/trained/tensorboard?smoothing=0.5")
    assert r.status_code == 400 and "smoothing" in r.text


class CountingStore:
    def __init__(self, content: bytes):
        self.content, self.opened = content, 0

    def open_file(self, repo_type, repo_id, commit, path):
        self.opened += 1
        return None, self.content


def test_series_are_cached_per_file_content(tmp_path):
    write_runs(tmp_path)
    content = next((tmp_path / "runs" / "beta").iterdir()).read_bytes()
    st = CountingStore(content)
    tensorboard.CACHE.clear()
    entry = TreeEntry("file", "runs/beta/events.out.tfevents.9", oid="a" * 40, size=len(content),
                      lfs=LfsInfo("b" * 64, len(content), 130))
    first = tensorboard.file_scalars(st, "model", "o/r", "c1", entry)
    moved = TreeEntry("file", "runs/other/events.out.tfevents.9", oid="a" * 40, size=len(content),
                      lfs=LfsInfo("b" * 64, len(content), 130))
    again = tensorboard.file_scalars(st, "model", "o/r", "c2", moved)  # same content at another commit and path
    assert st.opened == 1 and again is first
    changed = TreeEntry("file", entry.path, oid="a" * 40, size=len(content), lfs=LfsInfo("c" * 64, len(content), 130))
    tensorboard.file_scalars(st, "model", "o/r", "c3", changed)
    assert st.opened == 2


def test_a_missing_lfs_object_is_named_not_cached():
    from haven.server.storage.errors import LfsObjectMissing

    class Missing:
        def open_file(self, *args):
            raise LfsObjectMissing("the LFS object is not in the store")

    tensorboard.CACHE.clear()
    entry = TreeEntry("file", "runs/x/events.out.tfevents.1", oid="d" * 40, size=10, lfs=LfsInfo("e" * 64, 10, 130))
    found = tensorboard.file_scalars(Missing(), "model", "o/r", "c", entry)
    assert "not in the store" in found.error and found.transient  # the page holding it is not cached either
    assert tensorboard.CACHE.get("e" * 64) is None


def test_without_tensorboard_the_reader_says_so(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    path = tmp_path / "events.out.tfevents.1"
    path.write_bytes(b"")
    with pytest.raises(tensorboard.ReaderMissing):
        tensorboard.parse_event_file(str(path))


def debiased_ema(values: list[float], weight: float) -> list[float]:
    """TensorBoard's smoothing, computed here independently of the page's script."""
    out, last = [], 0.0
    for n, v in enumerate(values, 1):
        last = last * weight + (1 - weight) * v
        out.append(last / (1 - weight**n))
    return out


@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="Debian's chromium is not installed")
def test_browser_draws_one_line_per_run(runs_site, page):
    url, owner, _, _ = runs_site
    problems = []  # script errors and CSP refusals; the browser's own favicon probe is not the page's
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" and "404" not in m.text else None)
    page.on("pageerror", lambda err: problems.append(str(err)))
    missing = []
    page.on("response", lambda r: missing.append(r.url) if r.status >= 400 and "favicon" not in r.url else None)
    page.goto(f"{url}/{owner}/trained")
    page.click("nav.tabs >> text=Metrics")
    page.wait_for_url("**/tensorboard")
    loss = page.locator('figure[data-tag="train/loss"] svg path.line')
    loss.first.wait_for()
    assert loss.count() == 2
    assert [loss.nth(i).get_attribute("data-run") for i in range(2)] == ["runs/alpha", "runs/beta"]
    assert page.locator('figure[data-tag="eval/accuracy"] svg path.line').count() == 1
    assert page.locator('figure[data-tag="train/loss"] .legend li').all_inner_texts() == ["runs/alpha", "runs/beta"]
    smoothed = page.evaluate(f"window.havenSmooth({json.dumps(LOSS['alpha'])}, 0.6)")
    assert smoothed == pytest.approx(debiased_ema(LOSS["alpha"], 0.6), rel=1e-12)
    before = loss.first.get_attribute("d")
    page.locator("#m-smoothing").fill("0")
    assert page.locator("#m-smoothing-value").inner_text() == "0.00"
    assert loss.first.get_attribute("d") != before
    assert page.locator('figure[data-tag="train/loss"] path.raw').count() == 0  # no smoothing: raw lines only
    page.select_option("#m-x", "wall")
    assert page.locator('figure[data-tag="train/loss"] svg path.line').count() == 2
    assert not problems and not missing and not page.dialogs


def test_a_long_run_is_drawn_from_evenly_thinned_points(runs_site):
    url, owner, _, _ = runs_site
    r = httpx.get(f"{url}/{owner}/long/tensorboard")
    [chart] = page_data(r.text)["tags"]
    [series] = chart["series"]
    assert series["total"] == LONG and len(series["points"]) == tensorboard.MAX_POINTS
    assert series["points"][0][0] == 0 and series["points"][-1][0] == LONG - 1
    assert series["points"][-1][2] == float(np.float32(1.0 / LONG))
    assert f"<td>runs/long</td><td>{LONG - 1}</td>" in r.text and f"<td>{LONG}</td>" in r.text


def test_long_series_are_thinned_evenly_keeping_both_ends():
    points = [(i, float(i), float(i)) for i in range(5000)]
    kept = tensorboard.thin(points, 1000)
    assert len(kept) == 1000 and kept[0] == points[0] and kept[-1] == points[-1]
    steps = [p[0] for p in kept]
    gaps = {b - a for a, b in zip(steps, steps[1:])}
    assert steps == sorted(set(steps)) and gaps <= {5, 6}  # 4999 / 999 ~ 5.004
    assert tensorboard.thin(points[:10], 1000) == points[:10]
