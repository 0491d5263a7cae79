"""The hub's web pages, read through httpx against a live `haven serve`, checked against the API,
the real client, transformers' own mappings and values computed here (hashlib, the files sent)."""

from __future__ import annotations

import hashlib
import re
from html import unescape
from urllib.parse import quote

import httpx
from huggingface_hub import HfApi

from fixtures.server import unique_name


def get(site, path: str, token: str | None = None, **params) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(f"{site.url}{path}", params=params, headers=headers)


def listed(html: str) -> list[str]:
    """The repo ids of a page's repo rows, in order."""
    return [unescape(m) for m in re.findall(r'class="repo-name" href="[^"]*">([^<]+)</a>', html)]


def facet(html: str, name: str) -> dict[str, int]:
    """{value: count} of one facet group of a list page."""
    block = re.search(rf'data-facet="{name}">(.*?)</ul>', html, re.S)
    if not block:
        return {}
    pairs = re.findall(r'class="chip[^"]*" href="[^"]*">([^<]+?) <span class="n">(\d+)</span>', block.group(1))
    return {unescape(v): int(n) for v, n in pairs}


def test_pages_carry_a_strict_csp_and_nosniff(site):
    for path in ("/", "/models", f"/{site.owner}/tiny-bert", f"/{site.owner}/tiny-bert/tree/main", "/no-such-user"):
        r = get(site, path)
        assert r.headers["content-type"].startswith("text/html")
        csp = r.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert r.headers["x-content-type-options"] == "nosniff"
        assert re.search(r"<script(?![^>]*\bsrc=)", r.text) is None  # no inline script: JS from /-/static/
    js = get(site, "/-/static/haven.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    css = get(site, "/-/static/pygments.css")
    assert css.status_code == 200 and ".hl .k" in css.text and "prefers-color-scheme: dark" in css.text


def test_home_lists_models_and_hides_private_ones(site):
    html = get(site, "/").text
    assert f"{site.owner}/tiny-bert" in html
    assert "secret-model" not in html
    assert 'name="search"' in html and 'action="/models"' in html


def test_models_list_filters_like_the_api(site):
    for params in (
        {"license": "mit"},
        {"language": "fr", "pipeline_tag": "fill-mask"},
        {"license": "apache-2.0"},
        {"filter": "tiny", "license": "mit"},
        {"license": "mit", "language": "de"},
    ):
        page = get(site, "/models", author=site.owner, **params)
        api = httpx.get(f"{site.url}/api/models", params={"author": site.owner, **params}).json()
        assert page.status_code == 200
        assert sorted(listed(page.text)) == sorted(m["id"] for m in api), params
    # the real client agrees on what license:mit selects
    client = HfApi(endpoint=site.url)
    assert listed(get(site, "/models", author=site.owner, license="mit").text) == [
        m.id for m in client.list_models(author=site.owner, filter="license:mit")
    ]


def test_filter_counts_and_links(site):
    html = get(site, "/models", author=site.owner).text
    licenses = facet(html, "license")
    assert licenses == {"mit": 1, "apache-2.0": 1}  # tiny-bert and hostile; never the private one
    assert facet(html, "pipeline_tag") == {"fill-mask": 1}
    assert facet(html, "language") == {"fr": 1, "en": 1}
    assert facet(html, "dataset") == {"wiki-fr": 1}
    # a facet link adds its filter with the API's query name and keeps the others
    link = re.search(r'href="([^"]*)">mit <span class="n">', html).group(1)
    assert unescape(link) == f"/models?author={site.owner}&license=mit"
    # counts follow the current query
    narrowed = get(site, "/models", author=site.owner, language="fr").text
    assert facet(narrowed, "license") == {"mit": 1}


def test_private_repo_counts_only_for_those_who_may_see_it(site):
    anonymous = get(site, "/models", author=site.owner).text
    assert "secret-model" not in anonymous and "secret-license" not in anonymous
    assert "text-classification" not in anonymous and "secret-tag" not in anonymous
    assert get(site, "/models", search="secret", author=site.owner).text.count('class="repo-row"') == 0
    owner = get(site, "/models", token=site.token, author=site.owner).text
    assert f"{site.owner}/secret-model" in listed(owner)
    assert facet(owner, "license")["secret-license"] == 1
    assert 'class="badge private"' in owner
    stranger = get(site, "/models", token=site.stranger_token, author=site.owner).text  # signed in, no access
    assert "secret-model" not in stranger


def test_private_repo_pages_are_404_like_a_missing_repo(site):
    for tail in ("", "/tree/main", "/blob/main/README.md", "/raw/main/README.md", "/commits/main", "/commit/main"):
        hidden = get(site, f"/{site.owner}/secret-model{tail}")
        missing = get(site, f"/{site.owner}/no-such-model{tail}")
        assert hidden.status_code == missing.status_code == 404, tail
        assert hidden.headers["content-type"].startswith("text/html")
        assert hidden.text.replace("secret-model", "X") == missing.text.replace("no-such-model", "X")
        assert "Secret" not in hidden.text
        assert get(site, f"/{site.owner}/secret-model{tail}", token=site.token).status_code == 200, tail
    # a missing path inside a repo the viewer may see is an HTML 404 too
    for token in (None, site.token):
        r = get(site, f"/{site.owner}/secret-model/tree/main/sub", token=token)
        assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
    profile = get(site, f"/{site.owner}").text
    assert "secret-model" not in profile and f"{site.owner}/tiny-bert" in profile
    assert "secret-model" in get(site, f"/{site.owner}", token=site.token).text


def test_list_sorts_and_pages(site, hub_server):
    owner = unique_name("pager")
    api = HfApi(endpoint=site.url, token=hub_server.create_user(owner))
    names = [f"m{i:02d}" for i in range(32)]
    for name in names:
        api.create_repo(f"{owner}/{name}")
    first = get(site, "/models", author=owner, sort="created")
    assert "Page 1 of 2" in first.text
    assert listed(first.text) == [f"{owner}/{n}" for n in reversed(names)][:30]  # newest first
    second = get(site, "/models", author=owner, sort="created", p="2")
    assert listed(second.text) == [f"{owner}/m01", f"{owner}/m00"]
    assert get(site, "/models", author=owner, p="0").status_code == 400
    bad = get(site, "/models", sort="sideways")
    assert bad.status_code == 400 and "trending" in bad.text
    unknown = get(site, "/models", colour="blue")
    assert unknown.status_code == 400 and "colour" in unknown.text


def test_model_card_page(site):
    r = get(site, f"/{site.owner}/tiny-bert")
    html = r.text
    assert r.status_code == 200
    assert '<h2 id="results-table">' in html  # heading anchors
    assert "<table>" in html and "<td>0.42</td>" in html
    assert '<span class="kn">from</span>' in html  # fenced code highlighted by Pygments
    assert f'href="/{site.owner}/tiny-bert/blob/main/config.json"' in html  # relative link into the repo
    # side panel from the YAML metadata and the model-index results table
    assert re.search(r"<dt>License</dt>\s*<dd><span>mit</span>", html)
    assert "<dt>Base model</dt>" in html and "some-org/base-bert" in html
    assert "<td>Accuracy</td><td>0.4242</td>" in html
    # tags link back to the filtered list
    assert 'href="/models?license=mit"' in html and 'href="/models?pipeline_tag=fill-mask"' in html
    assert 'href="/models?language=fr"' in html and 'href="/models?dataset=wiki-fr"' in html
    assert f'data-copy="{site.owner}/tiny-bert"' in html
    # snippets: the task and the Auto class transformers itself uses for BertForMaskedLM
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    assert MODEL_FOR_MASKED_LM_MAPPING_NAMES["bert"] == "BertForMaskedLM"
    text = unescape(html)
    assert f'pipeline("fill-mask", model="{site.owner}/tiny-bert")' in text
    assert "from haven import AutoTokenizer, AutoModelForMaskedLM" in text
    assert "from transformers import AutoTokenizer, AutoModelForMaskedLM" in text
    assert f"git clone {site.url}/{site.owner}/tiny-bert" in text
    assert f"haven download {site.owner}/tiny-bert" in text and f"hf download {site.owner}/tiny-bert" in text


def test_missing_and_invalid_cards_are_said_plainly(site, hub_server):
    from haven.server import storage

    api = site.api
    bare = api.create_repo(f"{site.owner}/no-card").repo_id
    assert "No model card" in get(site, f"/{bare}").text
    broken = api.create_repo(f"{site.owner}/broken-card").repo_id
    # the API refuses invalid metadata, so write the commit with the storage library (as an old push would)
    lfs = storage.LfsStore(hub_server.data_dir / "lfs")
    store = storage.RepoStore(hub_server.data_dir / "repos", lfs)
    store.commit("model", broken, "main", [storage.AddFile("README.md", b"---\nlicense: [mit\n---\n# Body text\n")],
                 message="broken card", author=site.owner)
    html = get(site, f"/{broken}").text
    assert "metadata could not be read" in html and "invalid YAML" in html
    assert "Body text" in html


def test_tree_page_matches_the_api_listing(site):
    html = get(site, f"/{site.owner}/tiny-bert/tree/main").text
    files = {e.path: e for e in site.api.list_repo_tree(f"{site.owner}/tiny-bert", expand=True)}
    assert f'href="/{site.owner}/tiny-bert/tree/main/src">src/</a>' in html
    for path in ("config.json", "README.md", "model.safetensors"):
        row = re.search(rf'>{re.escape(path)}</a>(.*?)</tr>', html, re.S).group(1)
        assert files[path].last_commit.title in unescape(row)
    lfs_row = re.search(r">model.safetensors</a>(.*?)</tr>", html, re.S).group(1)
    assert 'class="badge lfs"' in lfs_row and f"{len(site.weights_v2)} B" in lfs_row
    assert files["model.safetensors"].lfs.size == len(site.weights_v2)
    # branch and tag selector; the tag shows the older weights
    assert f'href="/{site.owner}/tiny-bert/tree/v1.0">v1.0</a>' in html
    old = get(site, f"/{site.owner}/tiny-bert/tree/v1.0").text
    assert f"{len(site.weights_v1)} B" in re.search(r">model.safetensors</a>(.*?)</tr>", old, re.S).group(1)
    sub = get(site, f"/{site.owner}/tiny-bert/tree/main/src").text
    assert ">notes.py</a>" in sub and "config.json" not in sub
    assert get(site, f"/{site.owner}/tiny-bert/tree/no-such-branch").status_code == 404
    assert get(site, f"/{site.owner}/tiny-bert/tree/main/no/such/dir").status_code == 404


def test_blob_page_text_and_lfs(site):
    html = get(site, f"/{site.owner}/tiny-bert/blob/main/src/notes.py").text
    assert 'href="#L-2"' in html and 'id="L-2"' in html  # line numbers, linkable
    assert '<span class="k">def</span>' in html  # Python highlighted
    lfs = get(site, f"/{site.owner}/tiny-bert/blob/main/model.safetensors").text
    assert hashlib.sha256(site.weights_v2).hexdigest() in lfs
    assert f"({len(site.weights_v2)} bytes)" in lfs
    assert f'href="/{site.owner}/tiny-bert/resolve/main/model.safetensors"' in lfs
    at_tag = get(site, f"/{site.owner}/tiny-bert/blob/v1.0/model.safetensors").text
    assert hashlib.sha256(site.weights_v1).hexdigest() in at_tag
    assert get(site, f"/{site.owner}/tiny-bert/blob/main/nope.txt").status_code == 404


def test_raw_is_sandboxed_plain_text(site):
    r = get(site, f"/{site.owner}/hostile/raw/main/{quote(site.hostile_file)}")
    assert r.status_code == 200 and r.content == b"<script>alert(1)</script>\n"
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in r.headers["content-security-policy"]
    pointer = get(site, f"/{site.owner}/tiny-bert/raw/main/model.safetensors").text
    assert f"oid sha256:{hashlib.sha256(site.weights_v2).hexdigest()}" in pointer


def test_history_and_commit_diff(site):
    html = get(site, f"/{site.owner}/tiny-bert/commits/main").text
    titles = [unescape(t) for t in re.findall(r'class="title" href="[^"]*">([^<]+)</a>', html)]
    assert titles == [c.title for c in site.api.list_repo_commits(f"{site.owner}/tiny-bert")]
    assert titles[:2] == ["Grow hidden size", "Add tiny bert"]
    assert get(site, f"/{site.owner}/tiny-bert/commits/main", p="9").status_code == 404
    diff = unescape(get(site, f"/{site.owner}/tiny-bert/commit/{site.second_commit}").text)
    assert 'class="del">-  "hidden_size": 8<' in diff and 'class="add">+  "hidden_size": 16<' in diff
    assert "Twice as wide." in diff and "2 files changed" in diff
    for weights in (site.weights_v1, site.weights_v2):
        assert hashlib.sha256(weights).hexdigest() in diff and f"({len(weights)} bytes)" in diff
    assert get(site, f"/{site.owner}/tiny-bert/commit/{'0' * 40}").status_code == 404


def test_large_diffs_start_collapsed(site):
    repo = f"{site.owner}/tiny-bert"
    text = "".join(f"line {i}\n" for i in range(600)).encode()
    site.api.create_branch(repo, branch="big")
    sha = site.api.upload_file(path_or_fileobj=text, path_in_repo="big.txt", repo_id=repo, revision="big").oid
    html = get(site, f"/{repo}/commit/{sha}").text
    assert '<details class="diff" >' in html and "large diff" in html
    small = get(site, f"/{repo}/commit/{site.second_commit}").text
    assert '<details class="diff" open>' in small


def test_dataset_pages(site):
    html = get(site, f"/datasets/{site.owner}/fr-reviews").text
    assert "Dataset card" in html and "<h1 id=\"reviews\">" in html
    assert f"hf download {site.owner}/fr-reviews --repo-type dataset" in unescape(html)
    listing = get(site, "/datasets", author=site.owner).text
    assert listed(listing) == [f"{site.owner}/fr-reviews"]
    assert facet(listing, "language") == {"fr": 1}
    assert get(site, f"/datasets/{site.owner}/fr-reviews/tree/main").status_code == 200
    assert get(site, f"/{site.owner}/fr-reviews").status_code == 404  # not a model


def test_unknown_pages_and_api_paths(site):
    assert get(site, "/no-such-user-anywhere").status_code == 404
    r = get(site, "/api/no-such-thing")
    assert r.status_code == 404 and r.headers["content-type"] == "application/json"  # the API's answer


def test_hostile_content_is_inert(site):
    card = get(site, f"/{site.owner}/hostile").text
    body = card.split('<div class="card">', 1)[1].split("</article>", 1)[0]
    assert "<script" not in body.lower() and "onerror" not in body.lower() and "onclick" not in body.lower()
    assert 'href="javascript' not in body.lower() and 'href="data:' not in body.lower()
    assert "js link</a>" in body and "data link</a>" in body  # the links' text stays, without the URL
    assert "<iframe" not in body and "<svg" not in body and "style=" not in body
    tree = get(site, f"/{site.owner}/hostile/tree/main").text
    assert "&lt;img src=x onerror=alert(1)&gt;.txt" in tree and "<img src=x" not in tree
    for path in (f"/{site.owner}/hostile/commits/main", f"/{site.owner}/hostile/commit/{site.hostile_commit}"):
        html = get(site, path).text
        assert "&lt;script&gt;window.__xss=6&lt;/script&gt;&lt;b&gt;bold&lt;/b&gt; message" in html
        assert "<script>window.__xss" not in html and "<b>bold</b>" not in html
    blob = get(site, f"/{site.owner}/hostile/blob/main/{quote(site.hostile_file)}").text
    assert "<script>alert(1)</script>" not in blob and "<img src=x" not in blob


def test_browsers_get_the_hubs_html_404_for_paths_no_route_serves(hub_server):
    """A mistyped link (`/a/b/c/d`) is the site's own 404 page for a browser; clients of the API
    (no text/html in Accept, or any /api/ path) keep the JSON "no such route"."""
    html = {"accept": "text/html,application/xhtml+xml"}
    for path in ("/a/b/c/d/e", "/some/repo/no-such-tab"):
        r = httpx.get(f"{hub_server.url}{path}", headers=html)
        assert r.status_code == 404 and r.headers["content-type"].startswith("text/html"), path
        assert "there is no page at" in r.text and "Content-Security-Policy" in r.headers
        r = httpx.get(f"{hub_server.url}{path}")
        assert r.status_code == 404 and r.json()["error"].startswith("no such route")
    r = httpx.get(f"{hub_server.url}/api/no-such-thing", headers=html)
    assert r.status_code == 404 and r.json()["error"].startswith("no such route")
