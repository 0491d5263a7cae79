"""Publishing in a real browser (Playwright + Debian's chromium, headless) against the live hub:
create a repo from /new, upload a file, edit the card (invalid YAML shows the error, valid YAML
commits and its tags appear), find it through a tag filter and the search box (card words), make
the repo private and see it vanish for a signed-out visitor,
delete it. Results are read back with huggingface_hub."""

from __future__ import annotations

import os

import pytest
from huggingface_hub import HfApi

from fixtures.server import unique_name
from web.account_helpers import PASSWORD

CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed (make test installs it)")


def test_create_upload_edit_private_delete(hub_server, page, browser, tmp_path):
    url = hub_server.url
    name = unique_name("publisher")
    page.goto(f"{url}/join")
    page.fill("#f-name", name)
    page.fill("#f-password", PASSWORD)
    page.fill("#f-password2", PASSWORD)
    page.click("button:text-is('Create account')")
    page.wait_for_url(f"{url}/")

    short = unique_name("web-made")
    repo_id = f"{name}/{short}"
    page.click(".account a:text-is('New')")
    page.wait_for_url("**/new")
    page.fill("#f-name", short)
    page.select_option("#f-license", "mit")
    page.click("button:text-is('Create repository')")
    page.wait_for_url(f"{url}/{repo_id}")
    api = HfApi(endpoint=url)
    assert api.model_info(repo_id).card_data["license"] == "mit"

    page.click(".repo-actions a:text-is('Upload files')")
    page.wait_for_url("**/upload/main")
    upload = tmp_path / "hello.txt"
    upload.write_text("hello from chromium\n")
    page.set_input_files("#f-files", str(upload))
    page.fill("#f-message", "Upload hello from the browser")
    page.click("button:text-is('Commit changes to main')")
    page.wait_for_url("**/tree/main")
    assert page.locator("table.files a:text-is('hello.txt')").is_visible()
    assert open(api.hf_hub_download(repo_id, "hello.txt"), encoding="utf-8").read() == "hello from chromium\n"
    assert api.list_repo_commits(repo_id)[0].title == "Upload hello from the browser"

    page.goto(f"{url}/{repo_id}")
    page.click(".repo-actions a:text-is('Edit card')")
    page.wait_for_url("**/edit/main/README.md")
    page.fill("#f-content", "---\nlicense: mit\ntags: [unclosed\n---\n# Card\n")
    page.click("button:text-is('Commit changes to main')")
    assert page.locator(".yaml-error").is_visible()
    assert "nothing was committed" in page.locator(".yaml-error").inner_text()
    page.fill("#f-content", "---\nlicense: mit\ntags:\n- made-in-chromium\n---\n# Card from a browser\n")
    page.click("button:text-is('Commit changes to main')")
    page.wait_for_url("**/blob/main/README.md")
    page.goto(f"{url}/{repo_id}")
    assert "made-in-chromium" in page.locator(".tags").inner_text()
    assert "made-in-chromium" in api.model_info(repo_id).tags

    # find it through the filters and the search box (which reads the card's words too)
    page.goto(f"{url}/models?author={name}")
    page.locator('[data-facet="filter"] a.chip', has_text="made-in-chromium").click()
    page.wait_for_url("**filter=made-in-chromium**")
    page.fill("#list-q", "card from a browser")
    page.press("#list-q", "Enter")
    page.wait_for_url("**search=card**")
    assert "filter=made-in-chromium" in page.url
    assert page.locator(".repo-row .repo-name").all_inner_texts() == [repo_id]
    page.click(f".repo-row a:text-is('{repo_id}')")
    page.wait_for_url(f"{url}/{repo_id}")

    page.click(".repo-actions a:text-is('Settings')")
    page.wait_for_url("**/settings")
    page.check("input[name=visibility][value=private]")
    page.click("button:text-is('Save visibility')")
    assert "is now private" in page.locator("[role=status]").inner_text()
    visitor = browser.new_page()
    try:
        assert visitor.goto(f"{url}/{repo_id}").status == 404
        visitor.goto(f"{url}/models?search={short}")
        assert visitor.locator(f"a:text-is('{repo_id}')").count() == 0
    finally:
        visitor.close()

    page.fill("#f-confirm", repo_id)
    page.click(f"button:text-is('Delete {repo_id}')")
    page.wait_for_url(f"{url}/{name}")
    assert not HfApi(endpoint=url, token=hub_server.create_token(name)).repo_exists(repo_id)
