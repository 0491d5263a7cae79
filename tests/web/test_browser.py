"""The web pages in a real browser: Playwright drives Debian's chromium (headless) against the
live hub. Find a repo through the filters and the search box, open its card, files, a file,
the history and a commit diff; hostile content runs no script (no dialog, no window flag)."""

from __future__ import annotations

import os
from urllib.parse import quote

import pytest

CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed (make test installs it)")


def test_find_a_model_and_read_it(site, page):
    page.goto(f"{site.url}/models?author={site.owner}")
    page.locator('[data-facet="license"] a.chip', has_text="mit").click()
    page.wait_for_url("**license=mit**")
    page.fill("#list-q", "tiny")
    page.press("#list-q", "Enter")
    page.wait_for_url("**search=tiny**")
    assert "license=mit" in page.url and f"author={site.owner}" in page.url
    rows = page.locator(".repo-row .repo-name")
    assert rows.all_inner_texts() == [f"{site.owner}/tiny-bert"]
    rows.first.click()
    assert page.locator(".card h1").inner_text().startswith("Tiny BERT")
    assert page.locator(".results-table td", has_text="0.4242").count() == 1

    page.click("text=Files and versions")
    page.wait_for_url("**/tree/main")
    page.click("a.file:text-is('config.json')")
    page.wait_for_url("**/blob/main/config.json")
    assert page.locator(".code-view .linenos").is_visible()
    assert '"hidden_size": 16' in page.locator(".code-view td.code").inner_text()

    page.click(".file-head >> text=History")
    page.wait_for_url("**/commits/main")
    page.click("a.title:text-is('Grow hidden size')")
    page.wait_for_url(f"**/commit/{site.second_commit}")
    diff = page.locator(".diff-lines").first.inner_text()
    assert '+  "hidden_size": 16' in diff and '-  "hidden_size": 8' in diff
    assert not page.dialogs


def test_tag_selector_without_javascript_help(site, page):
    page.goto(f"{site.url}/{site.owner}/tiny-bert/tree/main")
    page.click("details.revs summary")
    page.click("details.revs a:text-is('v1.0')")
    page.wait_for_url("**/tree/v1.0")
    assert page.locator("details.revs summary").inner_text().strip().endswith("v1.0")


def test_hostile_content_runs_no_script(site, page):
    owner = site.owner
    paths = [
        f"/{owner}/hostile",
        f"/{owner}/hostile/tree/main",
        f"/{owner}/hostile/blob/main/{quote(site.hostile_file)}",
        f"/{owner}/hostile/commits/main",
        f"/{owner}/hostile/commit/{site.hostile_commit}",
    ]
    for path in paths:
        page.goto(site.url + path)
        assert page.evaluate("typeof window.__xss") == "undefined", path
    page.goto(f"{site.url}/{owner}/hostile")
    for text in ("js link", "data link", "click me"):
        page.get_by_text(text, exact=True).first.click()
    assert page.evaluate("typeof window.__xss") == "undefined"
    page.goto(f"{site.url}/{owner}/hostile/tree/main")
    assert page.get_by_text(site.hostile_file, exact=True).count() == 1  # shown as text
    assert page.dialogs == []
