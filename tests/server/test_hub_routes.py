"""What routes answer: unknown routes say so (never "Repository Not Found"), Hub features this hub
does not implement answer 501 naming them, git serves only its own paths, `transformersInfo`
names the head's Auto class, and `/api/docs` works offline."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import httpx
import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError
from transformers.models.auto import modeling_auto

from fixtures.server import unique_name
from haven.server.api import docs, index
from haven.server.api.common import ApiError


@pytest.fixture(scope="module")
def account(hub_server):
    name = unique_name("router")
    token = hub_server.create_user(name)
    api = HfApi(endpoint=hub_server.url, token=token)
    repo_id = api.create_repo(f"{name}/tiny").repo_id
    return name, token, api, repo_id


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/nope"),
        ("GET", "/api/models/ns/name/nonsense"),
        ("POST", "/v1/nothing/here"),
        ("GET", "/nothing/here/at/all"),
    ],
)
def test_unknown_route_is_not_a_missing_repo(hub_server, method, path):
    r = httpx.request(method, f"{hub_server.url}{path}")
    assert r.status_code == 404
    assert r.json() == {"error": f"no such route: {method} {path}"}
    assert "X-Error-Code" not in r.headers


def test_post_to_a_repo_path_is_not_git(hub_server, account):
    _, token, _, repo_id = account
    auth = {"authorization": f"Bearer {token}"}
    path = f"/{repo_id}/anything"
    r = httpx.post(f"{hub_server.url}{path}", json={"inputs": "hi"}, headers=auth)
    assert r.status_code == 404
    assert r.json()["error"] == f"no such route: POST {path}"
    assert "git" not in r.text and "X-Error-Code" not in r.headers
    # /models/{id} is the inference API: a repo without a task Haven runs is told so, not sent to git
    r = httpx.post(f"{hub_server.url}/models/{repo_id}", json={"inputs": "hi"}, headers=auth)
    assert r.status_code == 400, r.text
    assert "git" not in r.text and "pipeline_tag:" in r.json()["error"]


def test_discussions_are_501_through_the_client(account):
    _, _, api, repo_id = account
    with pytest.raises(HfHubHTTPError) as caught:
        list(api.get_repo_discussions(repo_id))
    assert caught.value.response.status_code == 501
    assert "discussions and pull requests are not supported by this hub" in str(caught.value)
    assert not isinstance(caught.value, RepositoryNotFoundError)
    with pytest.raises(HfHubHTTPError, match="not supported by this hub") as caught:
        api.create_pull_request(repo_id, title="x")
    assert caught.value.response.status_code == 501


@pytest.mark.parametrize(
    ("call", "feature"),
    [
        (lambda api, repo: list(api.list_spaces()), "Spaces"),
        (lambda api, repo: api.space_info("a/b"), "Spaces"),
        (lambda api, repo: list(api.list_collections()), "collections"),
        (lambda api, repo: api.super_squash_history(repo), "squashing"),
        (lambda api, repo: list(api.list_lfs_files(repo)), "LFS files"),
        (lambda api, repo: list(api.list_webhooks()), "webhooks"),
        (lambda api, repo: api.auth_check(repo), "auth-check"),
    ],
)
def test_unimplemented_hub_features_answer_501(account, call, feature):
    _, _, api, repo_id = account
    with pytest.raises(HfHubHTTPError) as caught:
        call(api, repo_id)
    assert caught.value.response.status_code == 501
    assert feature in str(caught.value) and "not supported by this hub" in str(caught.value)


def test_missing_repos_are_still_repo_not_found(account):
    name, _, api, _ = account
    assert not api.repo_exists(f"{name}/missing")
    assert not api.repo_exists("gpt2")  # no namespace: a repo this hub cannot have
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("bert-base-uncased")


# The reference library's mappings from head class to Auto class are the Hub's convention
REFERENCE_AUTO = {
    "AutoModelForMaskedLM": modeling_auto.MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    "AutoModelForCausalLM": modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
    "AutoModelForSequenceClassification": modeling_auto.MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES,
    "AutoModelForTokenClassification": modeling_auto.MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES,
    "AutoModelForQuestionAnswering": modeling_auto.MODEL_FOR_QUESTION_ANSWERING_MAPPING_NAMES,
    "AutoModelForMultipleChoice": modeling_auto.MODEL_FOR_MULTIPLE_CHOICE_MAPPING_NAMES,
    "AutoModel": modeling_auto.MODEL_MAPPING_NAMES,
}
ARCHITECTURES = [
    "BertForMaskedLM", "GPT2LMHeadModel", "LlamaForCausalLM", "DistilBertForSequenceClassification",
    "RobertaForTokenClassification", "BertForQuestionAnswering", "BertForMultipleChoice", "BertModel",
    "GPT2Model", "LlamaModel", "RobertaForMaskedLM", "LlamaForSequenceClassification",
]


def _reference_auto(arch: str) -> str:
    [auto] = [auto for auto, names in REFERENCE_AUTO.items() if arch in set(names.values())]
    return auto


def test_auto_model_follows_the_reference_mappings():
    for arch in ARCHITECTURES:
        assert index.auto_model_from_architectures([arch]) == _reference_auto(arch), arch
    assert index.auto_model_from_architectures(["GPT2DoubleHeadsModel"]) is None
    assert index.auto_model_from_architectures(["Mystery"]) is None


# the Hub's pipeline tag for each head, as the public Hub shows it for such models
HUB_TASKS = {"BertForMaskedLM": "fill-mask", "GPT2LMHeadModel": "text-generation",
             "LlamaForCausalLM": "text-generation", "BertModel": "feature-extraction"}


@pytest.mark.parametrize("arch", sorted(HUB_TASKS))
def test_model_info_transformers_info(account, arch):
    name, _, api, _ = account
    repo_id = api.create_repo(f"{name}/{arch.lower()}").repo_id
    config = json.dumps({"model_type": "x", "architectures": [arch]}).encode()
    api.upload_file(path_or_fileobj=config, path_in_repo="config.json", repo_id=repo_id)
    info = api.model_info(repo_id).transformers_info
    assert info.auto_model == _reference_auto(arch)
    assert info.pipeline_tag == HUB_TASKS[arch]
    assert info.processor is None  # no tokenizer files
    api.upload_file(path_or_fileobj=b"{}", path_in_repo="tokenizer.json", repo_id=repo_id)
    assert api.model_info(repo_id).transformers_info.processor == "AutoTokenizer"


def _same_origin_urls(html: str) -> list[str]:
    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']|url:\s*['"]([^'"]+)['"]""", html)
    return [a or b for a, b in urls]


@pytest.mark.skipif(docs.swagger_folder() is None, reason=f"needs the {docs.PACKAGE} package")
def test_api_docs_use_only_the_hubs_own_assets(hub_server):
    r = httpx.get(f"{hub_server.url}/api/docs")
    assert r.status_code == 200 and "SwaggerUIBundle" in r.text
    urls = _same_origin_urls(r.text)
    assert len(urls) >= 4
    kinds = set()
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), url
        asset = httpx.get(f"{hub_server.url}{url}")
        assert asset.status_code == 200, url
        kinds.add(asset.headers["content-type"].split(";")[0])
    assert {"text/javascript", "text/css", "application/json"} <= kinds
    assert "validatorUrl" in r.text and "null" in r.text  # no call to an outside validator
    assert httpx.get(f"{hub_server.url}/api/docs/assets/../../etc/passwd").status_code == 404


def test_api_docs_without_the_package_say_what_to_install(monkeypatch):
    monkeypatch.setattr(docs, "swagger_folder", lambda: None)
    request = SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(settings=SimpleNamespace(public_url="http://h"))))
    with pytest.raises(ApiError) as caught:
        docs.docs(request)
    assert caught.value.status == 501 and f"pip install {docs.PACKAGE}" in caught.value.message
    with pytest.raises(ApiError):
        docs.asset("swagger-ui.css")
