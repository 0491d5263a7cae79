"""`GET /api/models` and `/api/datasets` apply every Hub parameter they accept, through the real
`huggingface_hub` client where it sends them, and refuse (400) what they cannot apply."""

from __future__ import annotations

import json

import httpx
import pytest
import torch
import yaml
from huggingface_hub import CommitOperationAdd, HfApi
from safetensors.torch import save

from fixtures.server import unique_name

CARDS = {
    "fr-bert": {
        "license": "mit",
        "language": ["fr", "en"],
        "datasets": ["wiki-fr"],
        "base_model": "some-org/base-bert",
        "tags": ["tiny"],
    },
    "de-keras": {"license": "apache-2.0", "language": "de", "library_name": "keras"},
}
# parameter counts written in the safetensors headers (the Hub counts every tensor element)
PARAMS = {"fr-bert": 1_500_000, "de-keras": 50_000}


def _card(meta: dict) -> bytes:
    return f"---\n{yaml.safe_dump(meta)}---\n# Model\n".encode()


def _weights(n: int) -> bytes:
    return save({"a.weight": torch.zeros(n - 10, dtype=torch.int8), "a.bias": torch.zeros(10, dtype=torch.int8)})


@pytest.fixture(scope="module")
def listed(hub_server):
    """Three models and one dataset of one fresh author."""
    name = unique_name("lister")
    api = HfApi(endpoint=hub_server.url, token=hub_server.create_user(name))
    for repo, card in CARDS.items():
        repo_id = api.create_repo(f"{name}/{repo}").repo_id
        files = {"README.md": _card(card), "model.safetensors": _weights(PARAMS[repo])}
        if repo == "fr-bert":
            files["config.json"] = json.dumps({"model_type": "bert", "architectures": ["BertForMaskedLM"]}).encode()
            files["tokenizer.json"] = b"{}"
        ops = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=data) for p, data in files.items()]
        api.create_commit(repo_id, ops, commit_message="add")
    gpt = api.create_repo(f"{name}/no-card").repo_id
    api.upload_file(
        path_or_fileobj=json.dumps({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}).encode(),
        path_in_repo="config.json",
        repo_id=gpt,
    )
    ds = api.create_repo(f"{name}/fr-reviews", repo_type="dataset").repo_id
    card = {"language": ["fr"], "license": "mit", "task_categories": ["text-classification"], "paperswithcode_id": "x"}
    api.upload_file(path_or_fileobj=_card(card), path_in_repo="README.md", repo_id=ds, repo_type="dataset")
    return name, api


def _ids(models) -> list[str]:
    return sorted(m.id.split("/", 1)[1] for m in models)


def _get(hub_server, path: str, **params) -> httpx.Response:
    return httpx.get(f"{hub_server.url}{path}", params=params)


def test_card_metadata_filters_with_the_client(listed):
    name, api = listed
    # Hub tags: license:, dataset:, base_model: (and base_model:finetune:), bare language codes
    assert _ids(api.list_models(author=name, filter="license:mit")) == ["fr-bert"]
    assert _ids(api.list_models(author=name, filter="language:fr")) == ["fr-bert"]
    assert _ids(api.list_models(author=name, filter=["language:de", "license:apache-2.0"])) == ["de-keras"]
    assert _ids(api.list_models(author=name, filter=["language:de", "license:mit"])) == []
    assert _ids(api.list_models(author=name, trained_dataset="wiki-fr")) == ["fr-bert"]
    assert _ids(api.list_models(author=name, filter="base_model:finetune:some-org/base-bert")) == ["fr-bert"]
    assert _ids(api.list_models(author=name, filter="keras")) == ["de-keras"]
    assert _ids(api.list_models(author=name, gated=False)) == ["de-keras", "fr-bert", "no-card"]
    assert _ids(api.list_models(author=name, gated=True)) == []  # this hub has no gated repos


def test_num_parameters(listed):
    name, api = listed
    assert _ids(api.list_models(author=name, num_parameters="min:1M")) == ["fr-bert"]
    assert _ids(api.list_models(author=name, num_parameters="max:100K")) == ["de-keras"]
    assert _ids(api.list_models(author=name, num_parameters="min:10K,max:1.5M")) == ["de-keras", "fr-bert"]
    assert _ids(api.list_models(author=name, num_parameters="min:1.6M")) == []
    [info] = api.list_models(author=name, search="fr-bert", expand=["safetensors"])
    assert info.safetensors.total == PARAMS["fr-bert"]


def test_query_parameters_other_clients_send(hub_server, listed):
    name, _ = listed

    def ordered(**params):
        r = _get(hub_server, "/api/models", author=name, **params)
        assert r.status_code == 200, r.text
        return [m["id"].split("/", 1)[1] for m in r.json()]

    def ids(**params):
        return sorted(ordered(**params))

    assert ids(language="fr") == ["fr-bert"]
    assert ids(language="de") == ["de-keras"]
    assert ids(license="mit") == ["fr-bert"]
    assert ids(library="keras") == ["de-keras"]
    assert ids(library="transformers") == ["fr-bert", "no-card"]
    assert ids(dataset="wiki-fr") == ["fr-bert"]
    assert ids(filter="license:mit,language:en") == ["fr-bert"]  # comma-joined: all must match
    assert ids(search="FR-B") == ["fr-bert"]
    assert ordered(sort="id", direction="-1") == ["no-card", "fr-bert", "de-keras"]
    assert ordered(sort="id", direction="1") == ["de-keras", "fr-bert", "no-card"]
    assert ids(**{"expand[]": "tags"}) == ["de-keras", "fr-bert", "no-card"]


def test_expand_returns_exactly_the_keys(listed):
    name, api = listed
    [info] = api.list_models(author=name, search="fr-bert", expand=["cardData", "transformersInfo", "siblings"])
    assert info.card_data.license == "mit" and info.card_data.language == ["fr", "en"]
    assert info.transformers_info.auto_model == "AutoModelForMaskedLM"
    assert sorted(s.rfilename for s in info.siblings) == [
        ".gitattributes", "README.md", "config.json", "model.safetensors", "tokenizer.json"
    ]
    assert info.downloads is None and info.tags is None  # not asked for
    [info] = api.list_models(author=name, search="de-keras", expand=["library_name", "usedStorage", "tags"])
    assert info.library_name == "keras" and info.used_storage > 0 and "license:apache-2.0" in info.tags
    [info] = api.list_models(author=name, search="fr-bert", cardData=True, fetch_config=True)
    assert info.card_data.datasets == ["wiki-fr"] and info.config["architectures"] == ["BertForMaskedLM"]


def test_datasets_filters_and_expand(listed):
    name, api = listed
    assert [d.id for d in api.list_datasets(author=name, language="fr")] == [f"{name}/fr-reviews"]
    assert [d.id for d in api.list_datasets(author=name, language="de")] == []
    assert [d.id for d in api.list_datasets(author=name, task_categories="text-classification")] == [
        f"{name}/fr-reviews"
    ]
    assert [d.id for d in api.list_datasets(author=name, filter="license:mit")] == [f"{name}/fr-reviews"]
    [info] = api.list_datasets(author=name, expand=["cardData", "paperswithcode_id"])
    assert info.card_data.task_categories == ["text-classification"] and info.paperswithcode_id == "x"


@pytest.mark.parametrize(
    ("path", "params", "says"),
    [
        ("/api/models", {"lang": "fr"}, "unknown query parameter 'lang'"),
        ("/api/models", {"expand": "nonsense"}, "unknown expand key 'nonsense'"),
        ("/api/models", {"expand": "trendingScore"}, "not supported by this hub"),
        ("/api/models", {"expand": "gguf"}, "not supported by this hub"),
        ("/api/models", {"sort": "trendingScore"}, "not supported by this hub"),
        ("/api/models", {"inference_provider": "all"}, "not supported by this hub"),
        ("/api/models", {"num_parameters": "lots"}, "invalid num_parameters"),
        ("/api/models", {"num_parameters": "min:x"}, "invalid parameter count"),
        ("/api/models", {"gated": "maybe"}, "not a boolean"),
        ("/api/models", {"direction": "up"}, "unknown direction"),
        ("/api/models", {"expand": "tags", "full": "true"}, "cannot be combined"),
        ("/api/datasets", {"pipeline_tag": "fill-mask"}, "applies to models only"),
        ("/api/datasets", {"expand": "transformersInfo"}, "unknown expand key"),
        ("/api/datasets", {"expand": "mainSize"}, "not supported by this hub"),
        ("/api/models", {"filter": "t" * 201}, "a filter value is at most 200 characters"),
    ],
)
def test_refusals_name_what_to_use(hub_server, path, params, says):
    r = _get(hub_server, path, **params)
    assert r.status_code == 400, r.text
    assert says in r.json()["error"]
    assert "X-Error-Code" not in r.headers


def test_unknown_parameter_lists_the_known_ones(hub_server):
    error = _get(hub_server, "/api/models", languages="fr").json()["error"]
    for known in ("search", "author", "filter", "language", "license", "num_parameters", "expand"):
        assert known in error
