"""Tokenizer files: configs as old and current reference versions write them, save_pretrained
round trips in both directions, chat templates, added tokens, and the errors Haven raises."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
import transformers

from fixtures.tokenizers import LLAMA_CHAT_TEMPLATE, TOKENIZER_FIXTURES
from haven import AutoTokenizer
from haven.errors import TokenizerError
from haven.hub.mixin import PushToHubMixin
from haven.tokenizer import Tokenizer

TEXTS = ["Hello <mask> world!", "Bonjour [MASK] le monde, ça va ?", "naïve café 東京 😀", "x"]
PAIRS = ["the second text", "le deuxième texte", "y", "zut alors"]


def encodings_equal(ref, ours, texts=TEXTS, pairs=PAIRS) -> None:
    kw = dict(return_offsets_mapping=True, return_special_tokens_mask=True)
    assert dict(ours(texts, **kw)) == dict(ref(texts, **kw))
    assert dict(ours(texts, pairs, **kw)) == dict(ref(texts, pairs, **kw))
    assert ours.all_special_tokens == ref.all_special_tokens
    assert ours.all_special_ids == ref.all_special_ids
    assert len(ours) == len(ref) and ours.get_vocab() == ref.get_vocab()
    assert ours.model_input_names == ref.model_input_names


def _copy(src: str, dst: Path, drop: tuple[str, ...] = ()) -> Path:
    shutil.copytree(src, dst)
    for name in drop:
        (dst / name).unlink()
    return dst


def _write(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


# --------------------------------------------------------------------------- save round trips


@pytest.mark.parametrize(
    "name", TOKENIZER_FIXTURES + ["llama_legacy_tokenizer_dir", "camembert_legacy_tokenizer_dir"]
)
def test_haven_save_loads_in_reference_with_same_ids(request, tmp_path, name):
    src = request.getfixturevalue(name)
    ours = AutoTokenizer.from_pretrained(src)
    written = ours.save_pretrained(tmp_path / "saved")
    names = {Path(p).name for p in written}
    assert {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"} <= names
    reloaded_ref = transformers.AutoTokenizer.from_pretrained(tmp_path / "saved")
    encodings_equal(transformers.AutoTokenizer.from_pretrained(src), reloaded_ref)
    encodings_equal(reloaded_ref, AutoTokenizer.from_pretrained(tmp_path / "saved"))
    assert reloaded_ref.padding_side == ours.padding_side
    assert reloaded_ref.chat_template == ours.chat_template


def test_save_keeps_changed_settings(tmp_path, gpt2_tokenizer_dir):
    ours = AutoTokenizer.from_pretrained(gpt2_tokenizer_dir, use_fast=True)
    ours.pad_token = ours.eos_token
    ours.padding_side = "left"
    ours.model_max_length = 64
    ours.add_tokens(["<tool>"])
    ours.save_pretrained(tmp_path)
    ref = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert (ref.pad_token, ref.padding_side, ref.model_max_length) == ("<|endoftext|>", "left", 64)
    saved = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert "use_fast" not in saved and "name_or_path" not in saved  # loading details do not travel
    assert dict(ref(TEXTS + ["call <tool> now"], padding=True)) == dict(
        AutoTokenizer.from_pretrained(tmp_path)(TEXTS + ["call <tool> now"], padding=True)
    )


# --------------------------------------------------------------------------- configs of every age


def test_bert_old_style_config_and_special_tokens_map(tmp_path, bert_legacy_tokenizer_dir):
    """transformers 3.x/4.x: BertTokenizerFast, model_max_length 512, special_tokens_map.json,
    added_tokens_decoder, and clean_up_tokenization_spaces true."""
    d = _copy(bert_legacy_tokenizer_dir, tmp_path / "bert")
    specials = {
        "unk_token": "[UNK]",
        "sep_token": "[SEP]",
        "pad_token": "[PAD]",
        "cls_token": "[CLS]",
        "mask_token": "[MASK]",
    }
    added = {
        str(i): {
            "content": t,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    }
    _write(
        d / "tokenizer_config.json",
        {
            "do_lower_case": True,
            "model_max_length": 512,
            "strip_accents": None,
            "tokenize_chinese_chars": True,
            "tokenizer_class": "BertTokenizerFast",
            "clean_up_tokenization_spaces": True,
            "added_tokens_decoder": added,
            **specials,
        },
    )
    _write(d / "special_tokens_map.json", specials)
    ref, ours = transformers.AutoTokenizer.from_pretrained(d), AutoTokenizer.from_pretrained(d)
    encodings_equal(ref, ours)
    assert ours.model_max_length == ref.model_max_length == 512
    ids = ref(TEXTS)["input_ids"]
    assert ours.batch_decode(ids) == ref.batch_decode(ids)  # with the clean-up the config asks for


def test_uncased_false_and_no_accent_stripping(tmp_path, bert_legacy_tokenizer_dir):
    d = _copy(bert_legacy_tokenizer_dir, tmp_path / "cased")
    config = json.loads((d / "tokenizer_config.json").read_text())
    config.update(do_lower_case=False, strip_accents=False, tokenize_chinese_chars=False)
    _write(d / "tokenizer_config.json", config)
    encodings_equal(transformers.AutoTokenizer.from_pretrained(d), AutoTokenizer.from_pretrained(d))


def test_roberta_config_with_added_token_dicts(tmp_path, roberta_legacy_tokenizer_dir):
    """transformers 4.x wrote special tokens as AddedToken dicts; <mask> strips the space before it."""
    d = _copy(roberta_legacy_tokenizer_dir, tmp_path / "roberta")

    def tok(content: str, lstrip: bool = False) -> dict:
        return {
            "__type": "AddedToken",
            "content": content,
            "lstrip": lstrip,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
        }

    _write(
        d / "tokenizer_config.json",
        {
            "add_prefix_space": False,
            "errors": "replace",
            "model_max_length": 512,
            "trim_offsets": True,
            "tokenizer_class": "RobertaTokenizer",
            "bos_token": tok("<s>"),
            "eos_token": tok("</s>"),
            "sep_token": tok("</s>"),
            "cls_token": tok("<s>"),
            "unk_token": tok("<unk>"),
            "pad_token": tok("<pad>"),
            "mask_token": tok("<mask>", lstrip=True),
        },
    )
    _write(d / "special_tokens_map.json", {"mask_token": tok("<mask>", lstrip=True), "pad_token": "<pad>"})
    ref, ours = transformers.AutoTokenizer.from_pretrained(d), AutoTokenizer.from_pretrained(d)
    encodings_equal(ref, ours)
    assert ours("a <mask> b").tokens() == ref("a <mask> b").tokens()


def test_camembert_old_config_with_notused_extras(tmp_path, camembert_legacy_tokenizer_dir):
    d = _copy(camembert_legacy_tokenizer_dir, tmp_path / "camembert")
    config = json.loads((d / "tokenizer_config.json").read_text())
    config.pop("extra_special_tokens")
    config["additional_special_tokens"] = ["<s>NOTUSED", "</s>NOTUSED"]
    config["mask_token"] = {
        "__type": "AddedToken",
        "content": "<mask>",
        "lstrip": True,
        "normalized": True,
        "rstrip": False,
        "single_word": False,
    }
    _write(d / "tokenizer_config.json", config)
    ref, ours = transformers.AutoTokenizer.from_pretrained(d), AutoTokenizer.from_pretrained(d)
    encodings_equal(ref, ours)
    assert ours.mask_token_id == len(ours) - 1  # CamemBERT's layout: <mask> is the last id


@pytest.mark.parametrize("tokenizer_class", ["PreTrainedTokenizerFast", "TokenizersBackend"])
def test_generic_tokenizer_classes(tmp_path, llama_tokenizer_dir, tokenizer_class):
    d = _copy(llama_tokenizer_dir, tmp_path / "generic", drop=("tokenizer.model",))
    config = json.loads((d / "tokenizer_config.json").read_text())
    config["tokenizer_class"] = tokenizer_class
    _write(d / "tokenizer_config.json", config)
    ref, ours = transformers.AutoTokenizer.from_pretrained(d), AutoTokenizer.from_pretrained(d)
    encodings_equal(ref, ours)
    assert ours.padding_side == ref.padding_side


def test_chat_template_from_config_or_jinja_file(tmp_path, llama_tokenizer_dir):
    d = _copy(llama_tokenizer_dir, tmp_path / "inline", drop=("chat_template.jinja",))
    config = json.loads((d / "tokenizer_config.json").read_text())
    config["chat_template"] = LLAMA_CHAT_TEMPLATE  # how transformers 4.x stored it
    _write(d / "tokenizer_config.json", config)
    assert AutoTokenizer.from_pretrained(d).chat_template == LLAMA_CHAT_TEMPLATE
    assert AutoTokenizer.from_pretrained(llama_tokenizer_dir).chat_template == LLAMA_CHAT_TEMPLATE
    assert (Path(llama_tokenizer_dir) / "chat_template.jinja").is_file()  # current versions' layout


def test_kwargs_override_config(bert_tokenizer_dir):
    ref = transformers.AutoTokenizer.from_pretrained(
        bert_tokenizer_dir, padding_side="left", model_max_length=16
    )
    ours = AutoTokenizer.from_pretrained(bert_tokenizer_dir, padding_side="left", model_max_length=16)
    assert (
        (ours.padding_side, ours.model_max_length) == (ref.padding_side, ref.model_max_length) == ("left", 16)
    )
    kw = dict(padding="max_length", truncation=True)
    assert dict(ours(TEXTS, **kw)) == dict(ref(TEXTS, **kw))


# --------------------------------------------------------------------------- chat templates

CHAT = [
    {"role": "system", "content": "  You answer in French.  "},
    {"role": "user", "content": "How are you?"},
    {"role": "assistant", "content": "Très bien, merci ! 😀"},
    {"role": "user", "content": "Et 東京 ?", "name": None},
]


@pytest.mark.parametrize("name", ["llama_tokenizer_dir", "llama_legacy_tokenizer_dir"])
def test_chat_template_output_equals_reference(request, name):
    path = request.getfixturevalue(name)
    ref, ours = transformers.AutoTokenizer.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    for gen in (False, True):
        assert ours.apply_chat_template(
            CHAT, tokenize=False, add_generation_prompt=gen
        ) == ref.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=gen)
        assert ours.apply_chat_template(
            CHAT, add_generation_prompt=gen, return_dict=False
        ) == ref.apply_chat_template(CHAT, add_generation_prompt=gen, return_dict=False)
    ref.pad_token, ours.pad_token = ref.eos_token, ours.eos_token
    batch = [CHAT, CHAT[1:2]]
    r = ref.apply_chat_template(batch, add_generation_prompt=True, padding=True, return_tensors="pt")
    o = ours.apply_chat_template(batch, add_generation_prompt=True, padding=True, return_tensors="pt")
    assert set(o) == set(r) and all(torch.equal(o[k], r[k]) for k in r)
    assert ours.apply_chat_template(batch, tokenize=False) == ref.apply_chat_template(batch, tokenize=False)


def test_chat_template_variables_and_errors(bert_tokenizer_dir, llama_tokenizer_dir):
    ours = AutoTokenizer.from_pretrained(llama_tokenizer_dir)
    ref = transformers.AutoTokenizer.from_pretrained(llama_tokenizer_dir)
    with pytest.raises(TokenizerError, match="Unknown role: robot"):
        ours.apply_chat_template([{"role": "robot", "content": "beep"}])
    template = "{% for m in messages %}{{ m | tojson }}{{ cls_token or eos_token }}{% endfor %}{{ extra }}"
    assert ours.apply_chat_template(CHAT, chat_template=template, tokenize=False, extra="!") == (
        ref.apply_chat_template(CHAT, chat_template=template, tokenize=False, extra="!")
    )
    sneaky = "{{ messages.__class__.__mro__ }}"
    with pytest.raises(TokenizerError):
        ours.apply_chat_template(
            CHAT, chat_template=sneaky + "{{ ''.__class__.__subclasses__() }}", tokenize=False
        )
    with pytest.raises(TokenizerError, match="no chat_template"):
        AutoTokenizer.from_pretrained(bert_tokenizer_dir).apply_chat_template(CHAT)


# --------------------------------------------------------------------------- added tokens


@pytest.mark.parametrize("name", ["bert_tokenizer_dir", "roberta_legacy_tokenizer_dir", "gpt2_tokenizer_dir"])
def test_add_tokens_and_special_tokens_like_reference(request, name):
    path = request.getfixturevalue(name)
    ref, ours = transformers.AutoTokenizer.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    assert ours.add_tokens(["<new_word>", "zzzq"]) == ref.add_tokens(["<new_word>", "zzzq"]) == 2
    assert ours.add_tokens(["zzzq"]) == ref.add_tokens(["zzzq"]) == 0
    n_ref = ref.add_special_tokens({"pad_token": "<PADX>", "additional_special_tokens": ["<extra_1>"]})
    assert (
        ours.add_special_tokens({"pad_token": "<PADX>", "additional_special_tokens": ["<extra_1>"]}) == n_ref
    )
    texts = ["I say <new_word> and zzzq <extra_1>", "short"]
    assert dict(ours(texts, padding=True)) == dict(ref(texts, padding=True))
    ids = ref(texts, padding=True)["input_ids"]
    assert ours.batch_decode(ids, skip_special_tokens=True) == ref.batch_decode(ids, skip_special_tokens=True)
    assert len(ours) == len(ref) and ours.pad_token_id == ref.pad_token_id


def test_unknown_pad_token_is_not_added(gpt2_tokenizer_dir):
    ours = AutoTokenizer.from_pretrained(gpt2_tokenizer_dir)
    ref = transformers.AutoTokenizer.from_pretrained(gpt2_tokenizer_dir)
    ours.pad_token, ref.pad_token = "<zzz>", "<zzz>"
    assert (len(ours), ours.pad_token_id) == (len(ref), ref.pad_token_id)
    assert dict(ours(["a", "b c"], padding=True)) == dict(ref(["a", "b c"], padding=True))
    ours.pad_token_id = ref.pad_token_id = 4
    assert ours.pad_token == ref.pad_token


def test_old_directory_without_tokenizer_class(
    tmp_path, bert_legacy_tokenizer_dir, distilbert_legacy_tokenizer_dir
):
    """transformers 2.x/3.x: tokenizer_config.json without tokenizer_class; config.json's model_type decides."""
    for src, model_type in (
        (bert_legacy_tokenizer_dir, "bert"),
        (distilbert_legacy_tokenizer_dir, "distilbert"),
    ):
        d = _copy(src, tmp_path / model_type)
        _write(d / "tokenizer_config.json", {"do_lower_case": True, "model_max_length": 512})
        _write(d / "config.json", {"model_type": model_type})
        ref, ours = transformers.AutoTokenizer.from_pretrained(d), AutoTokenizer.from_pretrained(d)
        encodings_equal(ref, ours)


def test_pad_token_set_to_eos(gpt2_tokenizer_dir):
    ours = AutoTokenizer.from_pretrained(gpt2_tokenizer_dir)
    ref = transformers.AutoTokenizer.from_pretrained(gpt2_tokenizer_dir)
    ours.pad_token, ref.pad_token = ours.eos_token, ref.eos_token
    assert ours.pad_token_id == ref.pad_token_id == ours.eos_token_id
    assert dict(ours(TEXTS, padding=True, padding_side="left")) == dict(
        ref(TEXTS, padding=True, padding_side="left")
    )


def test_tokenizer_is_pushable(bert_tokenizer_dir):
    assert isinstance(AutoTokenizer.from_pretrained(bert_tokenizer_dir), PushToHubMixin)


# --------------------------------------------------------------------------- errors and warnings


def test_no_tokenizer_files(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(
        TokenizerError, match=r"tokenizer\.json.*vocab\.txt.*merges\.txt.*sentencepiece\.bpe\.model"
    ):
        AutoTokenizer.from_pretrained(tmp_path)


def test_malformed_tokenizer_json(tmp_path, bert_tokenizer_dir):
    d = _copy(bert_tokenizer_dir, tmp_path / "broken")
    (d / "tokenizer.json").write_text('{"version": "1.0", "model": {"type": "Nonsense"}')
    with pytest.raises(TokenizerError, match="tokenizer.json"):
        AutoTokenizer.from_pretrained(d)
    (d / "tokenizer.json").write_text("not json at all")
    with pytest.raises(TokenizerError, match="tokenizer.json"):
        Tokenizer.from_pretrained(d)


def test_malformed_config_and_sentencepiece(tmp_path, bert_tokenizer_dir, camembert_legacy_tokenizer_dir):
    d = _copy(bert_tokenizer_dir, tmp_path / "badconfig")
    (d / "tokenizer_config.json").write_text("{ nope")
    with pytest.raises(TokenizerError, match="tokenizer_config.json"):
        AutoTokenizer.from_pretrained(d)
    d = _copy(camembert_legacy_tokenizer_dir, tmp_path / "badspm")
    (d / "sentencepiece.bpe.model").write_bytes(b"\x00garbage\xff" * 10)
    with pytest.raises(TokenizerError, match="sentencepiece"):
        AutoTokenizer.from_pretrained(d)


def test_padding_without_pad_token(gpt2_tokenizer_dir):
    tok = AutoTokenizer.from_pretrained(gpt2_tokenizer_dir)
    assert tok.pad_token is None
    with pytest.raises(TokenizerError, match=r"tokenizer\.pad_token = tokenizer\.eos_token"):
        tok(TEXTS, padding=True)
    with pytest.raises(TokenizerError, match="different lengths.*padding=True"):
        tok(TEXTS, return_tensors="pt")


def test_bad_arguments(bert_tokenizer_dir):
    tok = AutoTokenizer.from_pretrained(bert_tokenizer_dir)
    with pytest.raises(TokenizerError, match="padding="):
        tok("x", padding="sideways")
    with pytest.raises(TokenizerError, match="truncation="):
        tok("x", truncation="middle")
    with pytest.raises(TokenizerError, match="return_tensors"):
        tok("x", return_tensors="tf")
    with pytest.raises(TokenizerError, match="text_pair"):
        tok(["a", "b"], ["c"])


def test_long_input_warns_once_and_does_not_raise(bert_tokenizer_dir, caplog):
    tok = AutoTokenizer.from_pretrained(bert_tokenizer_dir, model_max_length=8)
    long_text = " ".join(["bonjour le monde"] * 10)
    with caplog.at_level(logging.WARNING, logger="haven.tokenizer"):
        ids = tok(long_text)["input_ids"]
        tok(long_text)
    assert len(ids) > 8
    warnings = [r for r in caplog.records if "longer than the specified maximum" in r.getMessage()]
    assert len(warnings) == 1 and f"({len(ids)} > 8)" in warnings[0].getMessage()
    assert len(tok(long_text, truncation=True)["input_ids"]) == 8


def test_tokenizer_json_with_old_merges_format(tmp_path, roberta_tokenizer_dir):
    """tokenizers < 0.20 wrote BPE merges as "a b" strings; both forms load the same."""
    d = _copy(roberta_tokenizer_dir, tmp_path / "old-merges")
    data = json.loads((d / "tokenizer.json").read_text(encoding="utf-8"))
    merges = data["model"]["merges"]
    assert merges and not isinstance(merges[0], str)  # the fixture has the new form: make the old one
    data["model"]["merges"] = [" ".join(m) for m in merges]
    (d / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    encodings_equal(
        transformers.AutoTokenizer.from_pretrained(roberta_tokenizer_dir), AutoTokenizer.from_pretrained(d)
    )


def test_missing_sentencepiece_extra_is_explained(tmp_path, camembert_legacy_tokenizer_dir, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_sentencepiece(name, *args, **kwargs):
        if name.startswith("sentencepiece"):
            raise ImportError("No module named 'sentencepiece'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_sentencepiece)
    with pytest.raises(TokenizerError, match=r"pip install 'haven\[sentencepiece\]'"):
        AutoTokenizer.from_pretrained(camembert_legacy_tokenizer_dir)


def test_continue_final_message_like_reference(llama_tokenizer_dir):
    ours = AutoTokenizer.from_pretrained(llama_tokenizer_dir)
    ref = transformers.AutoTokenizer.from_pretrained(llama_tokenizer_dir)
    for final in ("Je commence", "Je commence ", "  Voilà:  "):
        chat = [*CHAT[:2], {"role": "assistant", "content": final}]
        want = ref.apply_chat_template(chat, tokenize=False, continue_final_message=True)
        assert ours.apply_chat_template(chat, tokenize=False, continue_final_message=True) == want
        assert ours.apply_chat_template(chat, continue_final_message=True, return_dict=False) == (
            ref.apply_chat_template(chat, continue_final_message=True, return_dict=False)
        )
    with pytest.raises(TokenizerError, match="cannot both"):
        ours.apply_chat_template(CHAT, continue_final_message=True, add_generation_prompt=True)


def test_legacy_vocab_with_added_tokens_decoder(tmp_path, bert_legacy_tokenizer_dir, bert_tokenizer_dir):
    """Tokens added after training live only in added_tokens_decoder when there is no tokenizer.json."""
    d = _copy(bert_legacy_tokenizer_dir, tmp_path / "added")
    config = json.loads((d / "tokenizer_config.json").read_text())
    n = len(transformers.AutoTokenizer.from_pretrained(bert_tokenizer_dir))
    flags = {"lstrip": False, "rstrip": False, "single_word": False}
    config["added_tokens_decoder"] = {
        str(n): {"content": "<ent>", "normalized": True, "special": False, **flags},
        str(n + 1): {"content": "[NEW]", "normalized": False, "special": True, **flags},
    }
    config["additional_special_tokens"] = ["[NEW]"]
    _write(d / "tokenizer_config.json", config)
    ref, ours = transformers.AutoTokenizer.from_pretrained(d), AutoTokenizer.from_pretrained(d)
    texts = ["an <ent> here", "[NEW] token and <ENT> upper", "nothing"]
    encodings_equal(ref, ours, texts=texts, pairs=texts[::-1])
    assert ours.convert_tokens_to_ids(["<ent>", "[NEW]"]) == [n, n + 1]
    ids = ref(texts)["input_ids"]
    assert ours.batch_decode(ids, skip_special_tokens=True) == ref.batch_decode(ids, skip_special_tokens=True)
