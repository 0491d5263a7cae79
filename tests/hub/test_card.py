"""Model cards: front matter parsing, validation messages, templates, and a round trip via the hub."""

from __future__ import annotations

import pytest
import yaml

from haven.hub.card import CardData, ModelCard, ModelCardError

CARD = """---
language:
- en
- fr
license: apache-2.0
tags:
- text-classification
- tiny
datasets:
- imdb
metrics:
- accuracy
base_model: google-bert/bert-base-uncased
pipeline_tag: text-classification
library_name: transformers
model-index:
- name: tiny-imdb
  results:
  - task:
      type: text-classification
    dataset:
      type: imdb
      name: IMDB
    metrics:
    - type: accuracy
      value: 0.91
co2_eq_emissions: 12
---
# tiny-imdb

A tiny classifier.
"""


def test_front_matter_is_parsed_and_kept():
    card = ModelCard(CARD)
    assert card.data.language == ["en", "fr"] and card.data.license == "apache-2.0"
    assert card.data.tags == ["text-classification", "tiny"] and card.data.datasets == ["imdb"]
    assert card.data.base_model == "google-bert/bert-base-uncased"
    assert card.data.model_index[0]["results"][0]["metrics"][0]["value"] == 0.91
    assert card.data.co2_eq_emissions == 12  # unknown keys survive
    assert card.text == "# tiny-imdb\n\nA tiny classifier.\n"
    card.validate()
    # the regenerated file parses back to the same metadata and body
    again = ModelCard(card.content)
    assert again.data == card.data and again.text == card.text
    assert yaml.safe_load(card.content.split("---")[1]) == yaml.safe_load(CARD.split("---")[1])


def test_cards_without_front_matter_and_broken_yaml():
    plain = ModelCard("# just text\n")
    assert plain.data.to_dict() == {} and plain.content == "# just text\n"
    with pytest.raises(ModelCardError, match="YAML"):
        ModelCard("---\nlicense: [unclosed\n---\ntext")
    with pytest.raises(ModelCardError, match="mapping"):
        ModelCard("---\n- a\n- b\n---\ntext")


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        ({"license": "apache"}, "apache-2.0"),
        ({"license": "other"}, "license_name"),
        ({"language": "English"}, "ISO 639"),
        ({"tags": "a, b"}, None),  # a single string is accepted as one tag
        ({"tags": [1, 2]}, "tags must be a list of strings"),
        ({"pipeline_tag": "masked-lm"}, "fill-mask"),
        ({"base_model": "not a repo id"}, "owner/name"),
        ({"model-index": [{"name": "m", "results": [{"task": {}, "dataset": {"type": "x"}, "metrics": []}]}]},
         "task needs a 'type'"),
    ],
)
def test_validate_explains_each_problem(meta, message):
    card = ModelCard("---\n" + yaml.safe_dump(meta) + "---\nbody\n")
    if message is None:
        card.validate()
        return
    with pytest.raises(ModelCardError, match=message.replace("(", r"\(")):
        card.validate()


def test_validate_reports_every_problem_at_once():
    card = ModelCard("---\nlicense: nope\nlanguage: 12\npipeline_tag: x\n---\n")
    with pytest.raises(ModelCardError) as info:
        card.validate()
    assert str(info.value).count("\n- ") == 3


def test_from_template_has_the_usual_sections():
    card = ModelCard.from_template(
        CardData(language="en", license="mit", tags=["haven"]), model_id="me/tiny",
        description="Tiny model.", training_data="Wikipedia.",
    )
    text = card.text
    for title in ("Model description", "Intended uses & limitations", "How to use", "Limitations and bias",
                  "Training data", "Training procedure", "Evaluation results"):
        assert f"## {title}" in text
    assert "Tiny model." in text and "Wikipedia." in text and "More information needed" in text
    assert text.startswith("# me/tiny")
    assert ModelCard(card.content).data.to_dict() == {"language": "en", "license": "mit", "tags": ["haven"]}
    with pytest.raises(ModelCardError, match="unknown template section"):
        ModelCard.from_template({}, citation="x")


def test_save_load_and_push_round_trip(hub, tmp_path):
    card = ModelCard(CARD)
    card.save(tmp_path / "README.md")
    assert ModelCard.load(tmp_path).data == card.data
    assert ModelCard.load(tmp_path / "README.md").text == card.text

    repo = hub.new_repo("card")
    hub.client.create_repo(repo)
    card.data.license = "mit"
    card.push_to_hub(repo, commit_message="card")
    loaded = ModelCard.load(repo)
    assert loaded.data.license == "mit" and loaded.text == card.text
    info = hub.client.model_info(repo)
    assert info.pipeline_tag == "text-classification" and "tiny" in info.tags  # the hub indexed it

    card.data.license = "not-a-license"
    with pytest.raises(ModelCardError):
        card.push_to_hub(repo)  # refused before anything is sent
    assert ModelCard.load(repo).data.license == "mit"
