"""The names people type: every config/model class of every architecture, the Auto classes and the
tokenizer classes are importable from `haven` under the reference library's names, and the
tokenizer classes load the files the reference class of the same name loads, with the same ids."""

from __future__ import annotations

import importlib
import pickle
import shutil
from pathlib import Path

import pytest
import transformers

import haven
from haven.auto import MODEL_MODULES
from haven.errors import TokenizerError
from haven.tokenizer import Tokenizer

TEXTS = ["Hello world! Le château, naïve café 🤗 東京", "x", "", "  Bonjour   le monde  "]
PAIR = "Une élève française étudie."


def _auto_classes() -> list[type]:
    classes = []
    for module in sorted(set(MODEL_MODULES.values())):
        for table in importlib.import_module(f"haven.models.{module}").AUTO.values():
            classes += list(table.values())
    return list(dict.fromkeys(classes))


@pytest.mark.parametrize("cls", _auto_classes(), ids=lambda c: c.__name__)
def test_every_auto_table_class_is_a_top_level_name(cls):
    assert hasattr(transformers, cls.__name__), f"{cls.__name__} is not a reference name"
    assert getattr(haven, cls.__name__) is cls
    assert cls.__name__ in haven.__all__ and cls.__name__ in dir(haven)


def test_every_listed_name_resolves():
    for name in haven.__all__:
        assert getattr(haven, name) is not None, name


def test_listed_model_classes_are_exactly_the_auto_tables():
    assert set(haven._model_classes()) == {c.__name__ for c in _auto_classes()}


def test_from_import_of_model_classes(gpt2_dir):
    from haven import BertConfig, CamembertForMaskedLM, GPT2LMHeadModel, LlamaForCausalLM, XLMRobertaModel

    assert BertConfig().model_type == "bert"
    assert CamembertForMaskedLM.config_class.model_type == "camembert"
    assert XLMRobertaModel.config_class.model_type == "xlm-roberta"
    assert LlamaForCausalLM.__name__ == "LlamaForCausalLM"
    assert type(GPT2LMHeadModel.from_pretrained(gpt2_dir)) is GPT2LMHeadModel


def test_auto_model_for_question_answering_is_exported():
    from haven import AutoModelForQuestionAnswering
    from haven.auto import AutoModelForQuestionAnswering as defined

    assert AutoModelForQuestionAnswering is defined


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="NotAModel"):
        haven.NotAModel  # noqa: B018


# ---------------------------------------------------------------------------------------------
# Tokenizer classes
# ---------------------------------------------------------------------------------------------

TOKENIZER_NAMES = [
    "BertTokenizer",
    "BertTokenizerFast",
    "DistilBertTokenizer",
    "DistilBertTokenizerFast",
    "RobertaTokenizer",
    "RobertaTokenizerFast",
    "CamembertTokenizer",
    "CamembertTokenizerFast",
    "XLMRobertaTokenizer",
    "XLMRobertaTokenizerFast",
    "GPT2Tokenizer",
    "GPT2TokenizerFast",
    "LlamaTokenizer",
    "LlamaTokenizerFast",
]
# class -> (fixture holding its files, the only files copied into a bare directory)
ONLY_FILES = {
    "Bert": ("bert_legacy_tokenizer_dir", ["vocab.txt"]),
    "DistilBert": ("distilbert_legacy_tokenizer_dir", ["vocab.txt"]),
    "Roberta": ("roberta_legacy_tokenizer_dir", ["vocab.json", "merges.txt"]),
    "GPT2": ("gpt2_legacy_tokenizer_dir", ["vocab.json", "merges.txt"]),
    "Camembert": ("camembert_legacy_tokenizer_dir", ["sentencepiece.bpe.model"]),
    "XLMRoberta": ("camembert_legacy_tokenizer_dir", ["sentencepiece.bpe.model"]),
    "Llama": ("llama_legacy_tokenizer_dir", ["tokenizer.model"]),
}
FULL_DIR = {
    "Bert": "bert_tokenizer_dir",
    "DistilBert": "distilbert_tokenizer_dir",
    "Roberta": "roberta_tokenizer_dir",
    "GPT2": "gpt2_tokenizer_dir",
    "Camembert": "camembert_tokenizer_dir",
    "XLMRoberta": "camembert_tokenizer_dir",
    "Llama": "llama_tokenizer_dir",
}


def _family(name: str) -> str:
    return name.removesuffix("Fast").removesuffix("Tokenizer")


def _bare_dir(request, tmp_path: Path, name: str) -> Path:
    fixture, files = ONLY_FILES[_family(name)]
    src = Path(request.getfixturevalue(fixture))
    for f in files:
        shutil.copy(src / f, tmp_path / f)
    return tmp_path


def assert_same_tokenizer(ref, ours) -> None:
    for text in TEXTS:
        for pair in (None, PAIR):
            expected, got = ref(text, pair), ours(text, pair)
            assert got["input_ids"] == expected["input_ids"], (text, pair)
            assert got.keys() == expected.keys()
    ids = ref(TEXTS[0])["input_ids"]
    assert ours.decode(ids) == ref.decode(ids)
    assert ours.decode(ids, skip_special_tokens=True) == ref.decode(ids, skip_special_tokens=True)
    assert ours.all_special_tokens == ref.all_special_tokens
    assert ours.model_input_names == ref.model_input_names
    assert ours.padding_side == ref.padding_side
    assert len(ours) == len(ref)


@pytest.mark.parametrize("name", TOKENIZER_NAMES)
def test_named_tokenizer_reads_only_its_legacy_files(request, tmp_path, name):
    """A directory holding only the class's own vocabulary files (no configs): the class decides
    the special tokens and inputs, as the reference class does."""
    directory = _bare_dir(request, tmp_path, name)
    ref = getattr(transformers, name).from_pretrained(directory)
    ours = getattr(haven, name).from_pretrained(directory)
    assert isinstance(ours, Tokenizer) and type(ours).__name__ == name.removesuffix("Fast")
    assert_same_tokenizer(ref, ours)


@pytest.mark.parametrize("name", TOKENIZER_NAMES)
def test_named_tokenizer_on_saved_directory(request, name):
    directory = request.getfixturevalue(FULL_DIR[_family(name)])
    ref = getattr(transformers, name).from_pretrained(directory)
    ours = getattr(haven, name).from_pretrained(directory)
    assert_same_tokenizer(ref, ours)


@pytest.mark.parametrize("fixture", ["bert_tokenizer_dir", "gpt2_tokenizer_dir", "llama_tokenizer_dir"])
def test_pretrained_tokenizer_fast_reads_tokenizer_json(request, fixture):
    directory = request.getfixturevalue(fixture)
    ref = transformers.PreTrainedTokenizerFast.from_pretrained(directory)
    ours = haven.PreTrainedTokenizerFast.from_pretrained(directory)
    assert_same_tokenizer(ref, ours)


def test_pretrained_tokenizer_fast_needs_tokenizer_json(bert_legacy_tokenizer_dir):
    with pytest.raises(ValueError):
        transformers.PreTrainedTokenizerFast.from_pretrained(bert_legacy_tokenizer_dir)
    with pytest.raises(TokenizerError, match="tokenizer.json"):
        haven.PreTrainedTokenizerFast.from_pretrained(bert_legacy_tokenizer_dir)


def test_fast_names_are_the_same_classes():
    for name in TOKENIZER_NAMES:
        assert getattr(haven, name) is getattr(haven, name.removesuffix("Fast") if "Fast" in name else name)
        assert (getattr(transformers, name) is getattr(transformers, name.removesuffix("Fast"))) == (
            getattr(haven, name) is getattr(haven, name.removesuffix("Fast"))
        )


@pytest.mark.parametrize(
    "name, files",
    [
        ("BertTokenizer", {"vocab_file": "vocab.txt"}),
        ("GPT2Tokenizer", {"vocab_file": "vocab.json", "merges_file": "merges.txt"}),
        ("RobertaTokenizer", {"vocab_file": "vocab.json", "merges_file": "merges.txt"}),
        ("CamembertTokenizer", {"vocab_file": "sentencepiece.bpe.model"}),
        ("LlamaTokenizer", {"vocab_file": "tokenizer.model"}),
    ],
)
def test_constructor_from_files(request, tmp_path, name, files):
    directory = _bare_dir(request, tmp_path, name)
    paths = {arg: str(directory / f) for arg, f in files.items()}
    ref = getattr(transformers, name).from_pretrained(directory)
    ours = getattr(haven, name)(**paths)
    assert_same_tokenizer(ref, ours)


def test_constructor_options_and_refusals(bert_legacy_tokenizer_dir):
    vocab = str(Path(bert_legacy_tokenizer_dir) / "vocab.txt")
    ref = transformers.BertTokenizer(vocab_file=vocab, do_lower_case=False)
    ours = haven.BertTokenizer(vocab_file=vocab, do_lower_case=False)
    assert ours("Hello Café")["input_ids"] == ref("Hello Café")["input_ids"]
    with pytest.raises(TypeError, match="merges_file"):
        haven.BertTokenizer(vocab_file=vocab, merges_file=vocab)
    with pytest.raises(TypeError, match="vocab_file"):
        haven.BertTokenizer()


def test_named_tokenizer_pickles(bert_legacy_tokenizer_dir):
    tok = haven.BertTokenizer.from_pretrained(bert_legacy_tokenizer_dir)
    copy = pickle.loads(pickle.dumps(tok))
    assert type(copy) is haven.BertTokenizer
    assert copy("Hello world")["input_ids"] == tok("Hello world")["input_ids"]


@pytest.mark.parametrize(
    "fixture",
    ["bert_tokenizer_dir", "roberta_tokenizer_dir", "camembert_tokenizer_dir", "llama_legacy_tokenizer_dir"],
)
def test_vocab_is_the_reference_dict(request, fixture):
    directory = request.getfixturevalue(fixture)
    ref = transformers.AutoTokenizer.from_pretrained(directory)
    ours = haven.AutoTokenizer.from_pretrained(directory)
    assert ours.vocab == ref.vocab
    assert ours.get_vocab() == ref.get_vocab()
    ours.vocab["not-a-token"] = 1  # a copy, as the reference's
    assert "not-a-token" not in ours.vocab


@pytest.mark.parametrize("fixture", ["bert_tokenizer_dir", "gpt2_legacy_tokenizer_dir", "llama_tokenizer_dir"])
def test_auto_tokenizer_gives_the_named_class(request, fixture):
    directory = request.getfixturevalue(fixture)
    ours = haven.AutoTokenizer.from_pretrained(directory)
    ref = transformers.AutoTokenizer.from_pretrained(directory)
    assert type(ours).__name__ == type(ref).__name__
    assert isinstance(ours, getattr(haven, type(ref).__name__)) and isinstance(ours, Tokenizer)
