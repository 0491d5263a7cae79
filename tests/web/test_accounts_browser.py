"""Accounts in a real browser (Playwright + Debian's chromium, headless) against the live hub:
sign up, create a write token on /settings/tokens and use it with huggingface_hub (create a repo,
upload a file), like the repo and see the count, sign out."""

from __future__ import annotations

import os

import pytest
from huggingface_hub import HfApi

from fixtures.server import unique_name
from web.account_helpers import PASSWORD

CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed (make test installs it)")


def test_sign_up_token_like_sign_out(hub_server, page):
    name = unique_name("browser")
    page.goto(f"{hub_server.url}/")
    page.click("a:text-is('Sign up')")
    page.wait_for_url("**/join")
    page.fill("#f-name", name)
    page.fill("#f-password", PASSWORD)
    page.fill("#f-password2", PASSWORD)
    page.click("button:text-is('Create account')")
    page.wait_for_url(f"{hub_server.url}/")
    assert page.locator(".account .me").inner_text() == name

    page.click(".account a:text-is('Settings')")
    page.wait_for_url("**/settings/tokens")
    page.fill("#f-token-name", "from the browser")
    page.check("input[name=role][value=write]")
    page.click("button:text-is('Create token')")
    token = page.locator("#new-token").inner_text().strip()
    assert token.startswith("hv_")

    api = HfApi(endpoint=hub_server.url, token=token)
    repo_id = api.create_repo(f"{name}/from-browser").repo_id
    api.upload_file(path_or_fileobj=b"# Made in a browser\n", path_in_repo="README.md", repo_id=repo_id)
    page.goto(f"{hub_server.url}/settings/tokens")
    assert page.locator("td.last-used").first.inner_text() == "just now"

    page.goto(f"{hub_server.url}/")
    assert page.locator(".mine .repo-name").all_inner_texts() == [repo_id]
    page.click(f".mine a:text-is('{repo_id}')")
    page.wait_for_url(f"**/{repo_id}")
    assert page.locator(".card h1").inner_text().strip() == "Made in a browser"
    page.click("button.like")
    page.wait_for_url(f"**/{repo_id}")
    assert page.locator("button.like").get_attribute("aria-pressed") == "true"
    assert page.locator("button.like .like-count").inner_text() == "1"
    assert api.model_info(repo_id).likes == 1

    page.click("button:text-is('Sign out')")
    page.wait_for_url(f"{hub_server.url}/")
    assert page.locator(".account a:text-is('Sign in')").is_visible()
    page.goto(f"{hub_server.url}/{repo_id}")
    assert page.locator("a.like .like-count").inner_text() == "1"  # signed out: the count, a sign-in link
    assert not page.dialogs
