"""Keyword arguments of `AutoTokenizer.from_pretrained`: each one changes what the tokenizer does as
it does in the reference library, or is refused (unknown names: TypeError)."""

from __future__ import annotations

import pytest
import transformers

from fixtures.tokenizers import LEGACY_TOKENIZER_FIXTURES, TOKENIZER_FIXTURES
from haven import AutoTokenizer
from haven.errors import TokenizerError

WORDS = ["Hello", "world", "café", "naïve", "Montréal", "東京"]
TEXT = "Hello  world, café naïve [MASK] <mask> <s>"
PREFIX_FIXTURES = [
    "roberta_tokenizer_dir",
    "gpt2_tokenizer_dir",
    "llama_tokenizer_dir",
    "camembert_tokenizer_dir",
    "bert_tokenizer_dir",
    "roberta_legacy_tokenizer_dir",
    "gpt2_legacy_tokenizer_dir",
    "llama_legacy_tokenizer_dir",
]


def both(path, **kwargs):
    return (
        transformers.AutoTokenizer.from_pretrained(path, **kwargs),
        AutoTokenizer.from_pretrained(path, **kwargs),
    )


def assert_same_encoding(ref, ours, *args, **kwargs):
    expected, got = ref(*args, **kwargs), ours(*args, **kwargs)
    assert got["input_ids"] == expected["input_ids"]
    if kwargs.get("return_offsets_mapping"):
        assert (
            got["offset_mapping"] == [tuple(o) for o in expected["offset_mapping"]]
            or got["offset_mapping"] == expected["offset_mapping"]
        )
    return expected, got


@pytest.mark.parametrize("name", PREFIX_FIXTURES)
@pytest.mark.parametrize("value", [True, False])
def test_add_prefix_space_matches_reference(request, name, value):
    ref, ours = both(request.getfixturevalue(name), add_prefix_space=value)
    expected, got = assert_same_encoding(ref, ours, WORDS, is_split_into_words=True)
    assert got.word_ids() == expected.word_ids()  # token-classification labels align word by word
    assert_same_encoding(ref, ours, TEXT)
    assert_same_encoding(ref, ours, [WORDS, WORDS[:2]], is_split_into_words=True, padding=ref.pad_token is not None)
    ids = ref(TEXT)["input_ids"]
    assert ours.decode(ids) == ref.decode(ids)


def test_add_prefix_space_changes_byte_level_words(roberta_tokenizer_dir):
    """The bug: the option was dropped for tokenizer.json, so words lost their leading 'Ġ'."""
    with_space = AutoTokenizer.from_pretrained(roberta_tokenizer_dir, add_prefix_space=True)
    without = AutoTokenizer.from_pretrained(roberta_tokenizer_dir)
    assert with_space.tokenize("Hello")[0].startswith("Ġ")
    assert not without.tokenize("Hello")[0].startswith("Ġ")


def test_add_prefix_space_feeds_token_classification(roberta_token_classification_dir):
    from haven import AutoModelForTokenClassification

    ref_tok = transformers.AutoTokenizer.from_pretrained(
        roberta_token_classification_dir, add_prefix_space=True
    )
    tok = AutoTokenizer.from_pretrained(roberta_token_classification_dir, add_prefix_space=True)
    model = AutoModelForTokenClassification.from_pretrained(roberta_token_classification_dir)
    ref_model = transformers.AutoModelForTokenClassification.from_pretrained(roberta_token_classification_dir)
    got = model(**tok(WORDS, is_split_into_words=True, return_tensors="pt")).logits
    expected = ref_model(**ref_tok(WORDS, is_split_into_words=True, return_tensors="pt")).logits
    assert got.shape == expected.shape
    assert (got - expected).abs().max() < 1e-4


@pytest.mark.parametrize("value", [True, False])
def test_trim_offsets_matches_reference(roberta_tokenizer_dir, value):
    ref, ours = both(roberta_tokenizer_dir, trim_offsets=value, add_prefix_space=True)
    expected, got = ref(TEXT, return_offsets_mapping=True), ours(TEXT, return_offsets_mapping=True)
    assert [tuple(o) for o in got["offset_mapping"]] == [tuple(o) for o in expected["offset_mapping"]]


@pytest.mark.parametrize("value", [True, False])
def test_legacy_matches_reference(llama_tokenizer_dir, value):
    ref, ours = both(llama_tokenizer_dir, legacy=value)
    assert_same_encoding(ref, ours, TEXT)
    assert_same_encoding(ref, ours, "Hello <s> world")


@pytest.mark.parametrize("name", ["bert_tokenizer_dir", "bert_legacy_tokenizer_dir"])
@pytest.mark.parametrize(
    "option",
    [
        {"do_lower_case": False},
        {"strip_accents": False},
        {"strip_accents": True},
        {"tokenize_chinese_chars": False},
        {"do_lower_case": False, "strip_accents": True},
    ],
)
def test_bert_normalisation_options_match_reference(request, name, option):
    ref, ours = both(request.getfixturevalue(name), **option)
    for text in (TEXT, "Ça coûte CHER à Montréal 東京"):
        assert_same_encoding(ref, ours, text)


@pytest.mark.parametrize("name", ["bert_tokenizer_dir", "llama_tokenizer_dir"])
def test_split_special_tokens_matches_reference(request, name):
    ref, ours = both(request.getfixturevalue(name), split_special_tokens=True)
    assert_same_encoding(ref, ours, TEXT)


@pytest.mark.parametrize("name", TOKENIZER_FIXTURES + LEGACY_TOKENIZER_FIXTURES)
def test_settings_overrides_match_reference(request, name):
    options = dict(model_max_length=7, padding_side="left", truncation_side="left")
    ref, ours = both(request.getfixturevalue(name), **options)
    for key in options:
        assert getattr(ours, key) == getattr(ref, key)
    batch = [TEXT, "Hello"]
    if ref.pad_token is not None:
        assert_same_encoding(ref, ours, batch, padding=True, truncation=True)
    assert_same_encoding(ref, ours, TEXT, truncation=True)


@pytest.mark.parametrize("name", ["gpt2_tokenizer_dir", "gpt2_legacy_tokenizer_dir", "bert_tokenizer_dir"])
def test_special_token_overrides_match_reference(request, name):
    options = {"pad_token": "<pad>", "mask_token": "<mask>"} if "gpt2" in name else {"pad_token": "[MASK]"}
    ref, ours = both(request.getfixturevalue(name), **options)
    assert ours.pad_token == ref.pad_token and ours.pad_token_id == ref.pad_token_id
    assert ours.all_special_tokens == ref.all_special_tokens
    assert len(ours) == len(ref)
    assert_same_encoding(ref, ours, [TEXT, "Hello"], padding=True)


def test_unknown_option_is_a_type_error_naming_it(bert_tokenizer_dir):
    with pytest.raises(TypeError, match="not_an_option") as info:
        AutoTokenizer.from_pretrained(bert_tokenizer_dir, not_an_option=1, padding_side="left")
    assert "padding_side" not in str(info.value).split("accepts")[0]


@pytest.mark.parametrize(
    "name, option, match",
    [
        ("gpt2_tokenizer_dir", {"do_lower_case": True}, "BERT normalizer"),
        ("llama_tokenizer_dir", {"trim_offsets": False}, "trim_offsets"),
        ("bert_tokenizer_dir", {"legacy": False}, "Metaspace"),
        ("bert_tokenizer_dir", {"add_bos_token": True}, "add_bos_token"),
        ("bert_tokenizer_dir", {"trust_remote_code": True}, "trust_remote_code"),
    ],
)
def test_options_that_cannot_apply_are_refused(request, name, option, match):
    with pytest.raises(TokenizerError, match=match):
        AutoTokenizer.from_pretrained(request.getfixturevalue(name), **option)


def test_old_token_name_is_refused(bert_tokenizer_dir):
    with pytest.raises(TypeError, match="token="):
        AutoTokenizer.from_pretrained(bert_tokenizer_dir, use_auth_token="x")


@pytest.mark.parametrize("use_fast", [True, False])
def test_harmless_reference_options_are_accepted(bert_tokenizer_dir, use_fast):
    """transformers 5 has one tokenizer for both values of use_fast, and so has Haven."""
    ref, ours = both(bert_tokenizer_dir, use_fast=use_fast, trust_remote_code=False)
    assert type(ours).__name__ == type(ref).__name__
    assert_same_encoding(ref, ours, TEXT)
