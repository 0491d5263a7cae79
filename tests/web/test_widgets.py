"""The inference widget on model pages: what the page hands the script (task, examples, the
model's own mask token), and in a real browser against a live hub with the inference API on, the
fill-mask widget's predictions (equal to haven.pipeline's for the same text), the text-generation
widget's streamed text (equal to the pipeline's greedy output) and a hostile label shown as text."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import httpx
import pytest
import yaml
from huggingface_hub import HfApi

from fixtures.server import unique_name
from haven.server.web import widgets

CHROMIUM = "/usr/bin/chromium"
browser_only = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed")
HOSTILE = "<img src=x onerror=window.__xss=1>"
FILL_TEXT = "The weather was <mask> today."


def card(meta: dict) -> bytes:
    return f"---\n{yaml.safe_dump(meta, sort_keys=False)}---\n# Model\n".encode()


def test_mask_token_is_the_tokenizers_own(roberta_masked_lm_dir, bert_masked_lm_dir):
    from transformers import AutoTokenizer

    for folder in (roberta_masked_lm_dir, bert_masked_lm_dir):
        paths = {p.name for p in Path(folder).iterdir()}
        found = widgets.mask_token(lambda name, f=folder: (Path(f) / name).read_bytes(), paths)
        assert found == AutoTokenizer.from_pretrained(folder).mask_token
    assert widgets.mask_token(lambda name: b"{}", set()) == "[MASK]"
    assert widgets.mask_token(lambda name: b"not json", {"tokenizer_config.json"}) == "[MASK]"


def test_examples_come_from_the_card_else_the_task_default():
    meta = {"widget": [{"text": "Paris is <mask>.", "example_title": "Capital"}, {"nope": 1}, "bad"]}
    assert widgets.examples("fill-mask", meta, "<mask>") == [{"title": "Capital", "text": "Paris is <mask>."}]
    default = widgets.examples("fill-mask", {"widget": [{"nope": 1}]}, "<mask>")
    assert len(default) == 1 and "<mask>" in default[0]["text"] and "{mask}" not in default[0]["text"]
    zero = widgets.examples("zero-shot-classification", {"widget": [{"text": "t", "candidate_labels": ["a", "b"]}]}, "")
    assert zero == [{"title": None, "text": "t", "candidate_labels": "a, b"}]
    pairs = {"widget": [{"source_sentence": "s", "sentences": ["x", "y"]}, {"source_sentence": "s", "sentences": "x"}]}
    assert widgets.examples("sentence-similarity", pairs, "") == [{"title": None, "source_sentence": "s", "sentences": ["x", "y"]}]


@pytest.fixture(scope="module")
def models(hub_server, roberta_masked_lm_dir, gpt2_dir, bert_sequence_classification_dir, tmp_path_factory):
    owner = unique_name("widgets")
    token = hub_server.create_user(owner)
    api = HfApi(endpoint=hub_server.url, token=token)

    def publish(name: str, folder: str, meta: dict) -> str:
        repo = api.create_repo(f"{owner}/{name}").repo_id
        api.upload_folder(folder_path=folder, repo_id=repo)
        api.upload_file(path_or_fileobj=card(meta), path_in_repo="README.md", repo_id=repo)
        return repo

    publish("filler", roberta_masked_lm_dir,
            {"pipeline_tag": "fill-mask", "widget": [{"text": FILL_TEXT, "example_title": "Weather"}]})
    publish("writer", gpt2_dir, {"pipeline_tag": "text-generation"})
    hostile = tmp_path_factory.mktemp("hostile-labels")
    shutil.copytree(bert_sequence_classification_dir, hostile, dirs_exist_ok=True)
    config = json.loads((hostile / "config.json").read_text())
    config["id2label"] = {"0": HOSTILE, "1": HOSTILE + " too"}  # whichever wins, the label is hostile
    config["label2id"] = {HOSTILE: 0, HOSTILE + " too": 1}
    (hostile / "config.json").write_text(json.dumps(config))
    publish("judge", str(hostile), {"pipeline_tag": "text-classification"})
    plain = api.create_repo(f"{owner}/no-task").repo_id
    api.upload_file(path_or_fileobj=b"# nothing\n", path_in_repo="README.md", repo_id=plain)
    return hub_server.url, owner, {"filler": roberta_masked_lm_dir, "writer": gpt2_dir, "judge": str(hostile)}


def test_widget_only_for_a_task_haven_serves(models):
    url, owner, _ = models
    html = httpx.get(f"{url}/{owner}/filler").text
    assert 'data-task="fill-mask"' in html and f'data-endpoint="/models/{owner}/filler"' in html
    assert 'data-mask="&lt;mask&gt;"' in html
    assert "The weather was &lt;mask&gt; today.</textarea>" in html  # the card's example, escaped
    assert 'class="panel widget"' not in httpx.get(f"{url}/{owner}/no-task").text


def watch(page, selector: str) -> None:
    """Record every text `selector` shows (window.__seen), to see loading notes and streaming."""
    page.evaluate(
        """(sel) => { window.__seen = []; const el = document.querySelector(sel);
        new MutationObserver(() => window.__seen.push(el.textContent))
          .observe(el, {childList: true, characterData: true, subtree: true}); }""",
        selector,
    )


@browser_only
def test_fill_mask_widget_shows_the_pipelines_predictions(models, page):
    from haven import pipeline

    url, owner, folders = models
    page.goto(f"{url}/{owner}/filler")
    assert page.locator("#w-text").input_value() == FILL_TEXT
    watch(page, ".widget-status")
    page.get_by_role("button", name="Compute").click()
    rows = page.locator(".widget-bars li")
    rows.first.wait_for(timeout=60_000)
    expected = pipeline("fill-mask", model=folders["filler"])(FILL_TEXT)
    assert page.locator(".widget-bars .bar-label").all_text_contents() == [p["token_str"] for p in expected]
    scores = page.locator(".widget-bars li").evaluate_all("ls => ls.map(li => Number(li.dataset.score))")
    assert scores == pytest.approx([p["score"] for p in expected], abs=1e-4)
    page.locator(".widget-status", has_text="Computed in").wait_for()
    seen = page.evaluate("window.__seen")
    assert any("loading" in s for s in seen), seen  # the first request found the model not loaded yet: 503, then waited
    assert not page.dialogs


@browser_only
def test_text_generation_widget_streams_the_pipelines_text(models, page):
    from haven import pipeline

    url, owner, folders = models
    page.goto(f"{url}/{owner}/writer")
    prompt = page.locator("#w-text").input_value()
    page.fill("#w-max", "12")
    watch(page, ".widget-output")
    page.get_by_role("button", name="Compute").click()
    page.locator(".widget-status", has_text="tokens in").wait_for(timeout=60_000)
    expected = pipeline("text-generation", model=folders["writer"])(prompt, max_new_tokens=12, do_sample=False)
    assert page.locator(".widget-generated").text_content() == expected[0]["generated_text"]
    assert len(set(page.evaluate("window.__seen"))) > 1  # the text grew token by token

    page.fill("#w-max", "100000")  # over the server's cap: its message is shown
    page.get_by_role("button", name="Compute").click()
    error = page.locator(".widget-status.error")
    error.wait_for()
    assert "max_new_tokens" in error.text_content()


@browser_only
def test_labels_are_text_and_ctrl_enter_computes(models, page):
    from haven import pipeline

    url, owner, folders = models
    page.goto(f"{url}/{owner}/judge")
    text = page.locator("#w-text").input_value()
    page.click("#w-text")
    page.keyboard.press("Control+Enter")
    labels = page.locator(".widget-bars .bar-label")
    labels.first.wait_for(timeout=60_000)
    expected = pipeline("text-classification", model=folders["judge"])(text)
    assert labels.all_text_contents() == [p["label"] for p in expected]
    assert labels.first.text_content().startswith(HOSTILE)
    assert page.locator(".widget-output img").count() == 0
    assert page.evaluate("typeof window.__xss") == "undefined" and not page.dialogs


@pytest.fixture(scope="module")
def more_models(hub_server, bert_token_classification_dir, bert_sequence_classification_dir, bert_masked_lm_dir,
                tmp_path_factory):
    owner = unique_name("widgets2")
    api = HfApi(endpoint=hub_server.url, token=hub_server.create_user(owner))
    nli = tmp_path_factory.mktemp("nli")
    shutil.copytree(bert_sequence_classification_dir, nli, dirs_exist_ok=True)
    config = json.loads((nli / "config.json").read_text())
    config["id2label"], config["label2id"] = {"0": "contradiction", "1": "entailment"}, {"contradiction": 0, "entailment": 1}
    (nli / "config.json").write_text(json.dumps(config))
    folders = {
        "token-classification": bert_token_classification_dir,
        "zero-shot-classification": str(nli),
        "feature-extraction": bert_masked_lm_dir,
        "sentence-similarity": bert_masked_lm_dir,
    }
    for task, folder in folders.items():
        repo = api.create_repo(f"{owner}/{task}").repo_id
        api.upload_folder(folder_path=folder, repo_id=repo)
        api.upload_file(path_or_fileobj=card({"pipeline_tag": task}), path_in_repo="README.md", repo_id=repo)
    return hub_server.url, owner, folders


def compute(page, url: str) -> None:
    page.goto(url)
    page.get_by_role("button", name="Compute").click()
    page.locator(".widget-status", has_text="Computed in").wait_for(timeout=60_000)


@browser_only
def test_the_other_tasks_show_the_pipelines_answers(more_models, page):
    import numpy as np

    from haven import pipeline

    url, owner, folders = more_models

    compute(page, f"{url}/{owner}/token-classification")
    text = page.locator("#w-text").input_value()
    want = pipeline("token-classification", model=folders["token-classification"])(text)
    got = page.locator(".widget-entities mark").evaluate_all(
        "ms => ms.map(m => [m.firstChild.textContent, m.querySelector('.entity-label').textContent])")
    assert got == [[text[e["start"]:e["end"]], e["entity"]] for e in want]

    compute(page, f"{url}/{owner}/zero-shot-classification")
    text = page.locator("#w-text").input_value()
    labels = [s.strip() for s in page.locator("#w-labels").input_value().split(",")]
    want = pipeline("zero-shot-classification", model=folders["zero-shot-classification"])(text, candidate_labels=labels)
    assert page.locator(".widget-bars .bar-label").all_text_contents() == want["labels"]
    scores = page.locator(".widget-bars li").evaluate_all("ls => ls.map(li => Number(li.dataset.score))")
    assert scores == pytest.approx(want["scores"], abs=1e-4)

    compute(page, f"{url}/{owner}/feature-extraction")
    text = page.locator("#w-text").input_value()
    want = np.array(pipeline("feature-extraction", model=folders["feature-extraction"])(text))
    assert page.locator(".widget-shape").text_content() == f"Shape: [{', '.join(map(str, want.shape))}]"
    shown = page.locator(".widget-vector").text_content().rstrip(" …").split(", ")
    assert [float(v) for v in shown] == pytest.approx(want.reshape(-1, want.shape[-1])[0][:8].tolist(), abs=1e-4)

    compute(page, f"{url}/{owner}/sentence-similarity")
    source = page.locator("#w-source").input_value()
    sentences = page.locator("#w-sentences").input_value().split("\n")
    want = pipeline("sentence-similarity", model=folders["sentence-similarity"])(source, sentences)
    assert page.locator(".widget-bars .bar-label").all_text_contents() == sentences
    scores = page.locator(".widget-bars li").evaluate_all("ls => ls.map(li => Number(li.dataset.score))")
    assert scores == pytest.approx(list(want), abs=1e-4)
    assert not page.dialogs


@browser_only
def test_widget_on_a_private_model_uses_the_signed_in_session(hub_server, bert_sequence_classification_dir, page):
    from haven import pipeline

    name = unique_name("member")
    password = "correct horse battery"
    page.goto(f"{hub_server.url}/join")
    page.fill("#f-name", name)
    page.fill("#f-password", password)
    page.fill("#f-password2", password)
    page.click("button:text-is('Create account')")
    page.wait_for_url(f"{hub_server.url}/")
    page.goto(f"{hub_server.url}/settings/tokens")
    page.fill("#f-token-name", "upload")
    page.check("input[name=role][value=write]")
    page.click("button:text-is('Create token')")
    api = HfApi(endpoint=hub_server.url, token=page.locator("#new-token").inner_text().strip())
    repo = api.create_repo(f"{name}/private-judge", private=True).repo_id
    api.upload_folder(folder_path=bert_sequence_classification_dir, repo_id=repo)
    api.upload_file(path_or_fileobj=card({"pipeline_tag": "text-classification"}), path_in_repo="README.md", repo_id=repo)
    assert httpx.post(f"{hub_server.url}/models/{repo}", json={"inputs": "x"}).status_code == 404  # no session, no token

    compute(page, f"{hub_server.url}/{repo}")  # the page's fetch carries only the session cookie
    text = page.locator("#w-text").input_value()
    want = pipeline("text-classification", model=bert_sequence_classification_dir)(text)
    assert page.locator(".widget-bars .bar-label").all_text_contents() == [p["label"] for p in want]
