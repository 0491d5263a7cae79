"""Haven's Tokenizer against the reference library's, on the same files (every fixture, every
legacy-file variant): ids, masks, token types, offsets, word ids, padding, truncation, decoding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers

from fixtures.tokenizers import LEGACY_TOKENIZER_FIXTURES, TOKENIZER_FIXTURES
from haven import AutoTokenizer
from haven.errors import TokenizerError
from haven.tokenizer import BatchEncoding, Tokenizer

ALL = TOKENIZER_FIXTURES + LEGACY_TOKENIZER_FIXTURES

TEXTS = [
    "Hello world!",
    "Bonjour le monde, comment ça va ? Très bien, merci.",
    "A naïve café owner wrote her résumé: ÉLÈVE, Noël, Ça.",
    "東京 北京 日本語 and emoji 😀 🤗 🚀 ❤️",
    "  leading spaces,   runs\tof\ttabs and\nnewlines  ",
    "Numbers 42, 3.14 and 2026; punctuation!?… «guillemets»",
    "x",
    "Masks: a <mask> b [MASK] c <mask>",
]
PAIRS = TEXTS[::-1]
OUT = dict(return_offsets_mapping=True, return_special_tokens_mask=True, return_length=True)


@pytest.fixture(scope="module")
def pair(request):
    """(reference tokenizer, Haven tokenizer) for one fixture directory, cached per module."""
    cache = request.config.__dict__.setdefault("_haven_tok_cache", {})

    def load(name: str):
        if name not in cache:
            path = request.getfixturevalue(name)
            cache[name] = (
                transformers.AutoTokenizer.from_pretrained(path),
                AutoTokenizer.from_pretrained(path),
            )
        return cache[name]

    return load


def assert_same(ref_out, our_out, *, batched: bool) -> None:
    ref, ours = dict(ref_out), dict(our_out)
    assert list(ours) == list(ref) or set(ours) == set(ref), (list(ours), list(ref))
    for key in ref:
        r, o = ref[key], ours[key]
        if isinstance(r, torch.Tensor):
            assert isinstance(o, torch.Tensor) and o.dtype == r.dtype and torch.equal(o, r), key
        elif isinstance(r, np.ndarray):
            assert isinstance(o, np.ndarray) and o.dtype == r.dtype and np.array_equal(o, r), key
        else:
            assert o == r, key
    n = len(ref["input_ids"]) if batched else 1
    for i in range(n):
        assert our_out.tokens(i) == ref_out.tokens(i)
        assert our_out.word_ids(i) == ref_out.word_ids(i)
        assert our_out.sequence_ids(i) == ref_out.sequence_ids(i)


@pytest.mark.parametrize("name", ALL)
def test_single_texts_match_reference(pair, name):
    ref, ours = pair(name)
    for text in TEXTS:
        assert_same(ref(text, **OUT), ours(text, **OUT), batched=False)
        assert ours.tokenize(text) == ref.tokenize(text)
        assert ours.encode(text) == ref.encode(text)
        assert ours.encode(text, add_special_tokens=False) == ref.encode(text, add_special_tokens=False)


@pytest.mark.parametrize("name", ALL)
def test_empty_and_blank_inputs_match_reference(pair, name):
    ref, ours = pair(name)
    for text in ("", " ", "   \t\n", "\u200b", "a\x00b"):
        assert_same(ref(text, **OUT), ours(text, **OUT), batched=False)
    assert_same(ref("a b", ""), ours("a b", ""), batched=False)  # an empty pair is no pair for one text...
    assert ours.encode("a b", "") == ref.encode("a b", "")
    assert_same(ref("", "d"), ours("", "d"), batched=False)
    assert_same(ref(["a b", "c"], ["", "d"]), ours(["a b", "c"], ["", "d"]), batched=True)  # ...but kept in a batch
    assert_same(ref(["", ""]), ours(["", ""]), batched=True)
    # an empty batch: the reference crashes (IndexError); Haven gives empty columns, and nothing to decode
    assert dict(ours([])) == {k: [] for k in ours.model_input_names}
    assert ours.batch_decode([]) == []


@pytest.mark.parametrize("name", ALL)
def test_pairs_and_batches_match_reference(pair, name):
    ref, ours = pair(name)
    assert_same(ref(TEXTS[1], TEXTS[2], **OUT), ours(TEXTS[1], TEXTS[2], **OUT), batched=False)
    assert_same(ref(TEXTS, **OUT), ours(TEXTS, **OUT), batched=True)
    assert_same(ref(TEXTS, PAIRS, **OUT), ours(TEXTS, PAIRS, **OUT), batched=True)
    assert_same(ref(TEXTS, add_special_tokens=False), ours(TEXTS, add_special_tokens=False), batched=True)
    tuples = list(zip(TEXTS, PAIRS))
    assert_same(ref(tuples, **OUT), ours(tuples, **OUT), batched=True)
    flags = dict(return_token_type_ids=True, return_attention_mask=False)
    assert_same(ref(TEXTS, PAIRS, **flags), ours(TEXTS, PAIRS, **flags), batched=True)


@pytest.mark.parametrize("name", ALL)
def test_truncation_matches_reference(pair, name):
    ref, ours = pair(name)
    for strategy in (True, "longest_first"):
        kw = dict(truncation=strategy, max_length=9, **OUT)
        assert_same(ref(TEXTS, PAIRS, **kw), ours(TEXTS, PAIRS, **kw), batched=True)
    long_texts, short = [t + " " + t for t in TEXTS[:4]], ["hi", "x", "oui", "ok"]
    kw = dict(truncation="only_first", max_length=14, **OUT)
    assert_same(ref(long_texts, short, **kw), ours(long_texts, short, **kw), batched=True)
    kw = dict(truncation="only_second", max_length=14, **OUT)
    assert_same(ref(short, long_texts, **kw), ours(short, long_texts, **kw), batched=True)
    # where the reference cannot truncate (the chosen text is too short), Haven says so too
    with pytest.raises(Exception, match="too short"):
        ref(short, long_texts, truncation="only_first", max_length=8)
    with pytest.raises(TokenizerError, match="too short"):
        ours(short, long_texts, truncation="only_first", max_length=8)
    # max_length alone truncates (reference behaviour), and truncation keeps the other side too
    assert_same(ref(TEXTS, max_length=5), ours(TEXTS, max_length=5), batched=True)
    ref.truncation_side = ours.truncation_side = "left"
    try:
        assert_same(
            ref(TEXTS, truncation=True, max_length=6),
            ours(TEXTS, truncation=True, max_length=6),
            batched=True,
        )
    finally:
        ref.truncation_side = ours.truncation_side = "right"


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("side", ["left", "right"])
def test_padding_matches_reference(pair, name, side):
    ref, ours = pair(name)
    if ref.pad_token is None:  # GPT-2 has none: the usual fix, on both
        ref, ours = _with_eos_pad(ref), _with_eos_pad(ours)
    cases = [
        dict(padding=True),
        dict(padding="longest", return_tensors="pt"),
        dict(padding="max_length", max_length=40, **OUT),
        dict(padding="max_length", truncation=True, max_length=10, return_tensors="np"),
        dict(padding=True, pad_to_multiple_of=8, return_tensors="pt"),
    ]
    for kw in cases:
        assert_same(ref(TEXTS, padding_side=side, **kw), ours(TEXTS, padding_side=side, **kw), batched=True)
        assert_same(
            ref(TEXTS, PAIRS, padding_side=side, **kw),
            ours(TEXTS, PAIRS, padding_side=side, **kw),
            batched=True,
        )
    # the attribute works like the call argument (restored even on failure: the pair is shared by later tests)
    ref.padding_side, ours.padding_side, before = side, side, (ref.padding_side, ours.padding_side)
    try:
        assert_same(ref(TEXTS, padding=True), ours(TEXTS, padding=True), batched=True)
    finally:
        ref.padding_side, ours.padding_side = before


def _with_eos_pad(tok):
    import copy

    tok = copy.deepcopy(tok)
    tok.pad_token = tok.eos_token
    return tok


@pytest.mark.parametrize("name", ALL)
def test_single_text_tensors_have_batch_dim(pair, name):
    ref, ours = pair(name)
    for rt in ("pt", "np"):
        assert_same(ref(TEXTS[1], return_tensors=rt), ours(TEXTS[1], return_tensors=rt), batched=True)


@pytest.mark.parametrize("name", ALL)
def test_decode_matches_reference(pair, name):
    ref, ours = pair(name)
    batch = ref(TEXTS, PAIRS)["input_ids"]
    for skip in (False, True):
        for clean in (None, True, False):
            kw = dict(skip_special_tokens=skip, clean_up_tokenization_spaces=clean)
            assert ours.batch_decode(batch, **kw) == ref.batch_decode(batch, **kw)
            assert ours.decode(batch[1], **kw) == ref.decode(batch[1], **kw)
    tensor = torch.tensor(batch[2])
    assert ours.decode(tensor) == ref.decode(tensor)
    assert ours.decode(int(batch[2][1])) == ref.decode(int(batch[2][1]))
    assert ours.convert_ids_to_tokens(batch[0]) == ref.convert_ids_to_tokens(batch[0])
    assert ours.convert_ids_to_tokens(batch[0], skip_special_tokens=True) == ref.convert_ids_to_tokens(
        batch[0], skip_special_tokens=True
    )
    tokens = ref.convert_ids_to_tokens(batch[1]) + ["definitely-not-a-token"]
    assert ours.convert_tokens_to_ids(tokens) == ref.convert_tokens_to_ids(tokens)


@pytest.mark.parametrize("name", ALL)
def test_vocabulary_and_special_tokens_match_reference(pair, name):
    ref, ours = pair(name)
    assert ours.is_fast is True
    assert len(ours) == len(ref)
    assert ours.vocab_size == ref.vocab_size
    assert ours.get_vocab() == ref.get_vocab()
    assert ours.get_added_vocab() == ref.get_added_vocab()
    assert ours.all_special_tokens == ref.all_special_tokens
    assert ours.all_special_ids == ref.all_special_ids
    for attr in ("bos", "eos", "unk", "sep", "pad", "cls", "mask"):
        assert getattr(ours, f"{attr}_token") == getattr(ref, f"{attr}_token"), attr
        assert getattr(ours, f"{attr}_token_id") == getattr(ref, f"{attr}_token_id"), attr
    assert ours.model_max_length == ref.model_max_length
    assert ours.padding_side == ref.padding_side
    assert ours.truncation_side == ref.truncation_side
    assert ours.model_input_names == ref.model_input_names
    assert ours.chat_template == ref.chat_template


def test_batch_encoding_is_a_dict_with_attributes(bert_tokenizer_dir):
    tok = Tokenizer.from_pretrained(bert_tokenizer_dir)
    enc = tok(["hello world", "bonjour"], padding=True, return_tensors="pt")
    assert isinstance(enc, BatchEncoding) and isinstance(enc, dict)
    assert enc.input_ids is enc["input_ids"] and enc.attention_mask.shape == enc.input_ids.shape
    assert enc.to("cpu") is enc and enc.input_ids.device.type == "cpu"
    with pytest.raises(AttributeError, match="no key"):
        _ = enc.not_a_key
    out = tok.encode("hello world", return_tensors="pt")
    assert out.shape[0] == 1 and out.dtype == torch.long


@pytest.mark.parametrize("name", ALL)
def test_overflowing_tokens_with_stride_match_reference(pair, name):
    """Question-answering style: long contexts cut into overlapping windows."""
    ref, ours = pair(name)
    if ref.pad_token is None:
        ref, ours = _with_eos_pad(ref), _with_eos_pad(ours)
    questions, contexts = ["Où ?", "What is it?"], [" ".join(TEXTS), TEXTS[1] * 3]
    kw = dict(
        truncation="only_second",
        max_length=24,
        stride=6,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding="max_length",
    )
    assert_same(ref(questions, contexts, **kw), ours(questions, contexts, **kw), batched=True)
    assert_same(ref(questions[0], contexts[0], **kw), ours(questions[0], contexts[0], **kw), batched=True)
    kw = dict(
        truncation=True,
        max_length=10,
        stride=3,
        return_overflowing_tokens=True,
        return_tensors="pt",
        padding=True,
    )
    assert_same(ref(TEXTS, **kw), ours(TEXTS, **kw), batched=True)


@pytest.mark.parametrize("name", ALL)
def test_split_into_words_match_reference(pair, name):
    ref, ours = pair(name)
    words = [t.split() for t in TEXTS]
    kw = dict(is_split_into_words=True, return_offsets_mapping=True)
    assert_same(ref(words[1], **kw), ours(words[1], **kw), batched=False)
    assert_same(ref(words, **kw), ours(words, **kw), batched=True)
    assert_same(ref(words, words[::-1], **kw), ours(words, words[::-1], **kw), batched=True)


def test_pickle_and_threads(bert_tokenizer_dir):
    import pickle
    from concurrent.futures import ThreadPoolExecutor

    tok = AutoTokenizer.from_pretrained(bert_tokenizer_dir)
    clone = pickle.loads(pickle.dumps(tok))
    assert dict(clone(TEXTS, padding=True)) == dict(tok(TEXTS, padding=True))
    calls = [
        dict(padding=True),
        dict(truncation=True, max_length=5),
        dict(),
        dict(padding="max_length", max_length=30),
    ]
    want = [dict(tok(TEXTS, **kw)) for kw in calls]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda i: dict(tok(TEXTS, **calls[i % 4])), range(40)))
    assert all(g == want[i % 4] for i, g in enumerate(got))


@pytest.mark.parametrize("name", TOKENIZER_FIXTURES)
@pytest.mark.parametrize("side", ["left", "right"])
def test_pad_matches_reference(pair, name, side):
    """`pad` on encodings made earlier, as data collators use it."""
    ref, ours = pair(name)
    if ref.pad_token is None:
        ref, ours = _with_eos_pad(ref), _with_eos_pad(ours)
    rows = [dict(ref(t, return_special_tokens_mask=True)) for t in TEXTS]
    for kw in (
        dict(),
        dict(padding="max_length", max_length=40),
        dict(pad_to_multiple_of=8, return_tensors="pt"),
    ):
        r = ref.pad([dict(x) for x in rows], padding_side=side, **kw)
        o = ours.pad([dict(x) for x in rows], padding_side=side, **kw)
        assert set(o) == set(r)
        for key in r:
            assert torch.equal(o[key], r[key]) if isinstance(r[key], torch.Tensor) else o[key] == r[key], key
    columns = {"input_ids": [x["input_ids"] for x in rows]}
    assert dict(ours.pad(columns, padding_side=side)) == dict(ref.pad(columns, padding_side=side))
    single = {"input_ids": rows[0]["input_ids"]}
    kw = dict(padding="max_length", max_length=30, padding_side=side)
    assert dict(ours.pad(single, **kw)) == dict(ref.pad(single, **kw))


@pytest.mark.parametrize("name", ALL)
def test_convert_tokens_to_string_matches_reference(pair, name):
    ref, ours = pair(name)
    for text in TEXTS:
        tokens = ref.tokenize(text)
        assert ours.convert_tokens_to_string(tokens) == ref.convert_tokens_to_string(tokens)


@pytest.mark.parametrize("name", TOKENIZER_FIXTURES)
def test_alignment_helpers_match_reference(pair, name):
    ref, ours = pair(name)
    r, o = ref(TEXTS[:4], PAIRS[:4]), ours(TEXTS[:4], PAIRS[:4])
    for b in range(4):
        for c in range(len(TEXTS[b])):
            assert o.char_to_token(b, c) == r.char_to_token(b, c)
        for c in range(len(PAIRS[b])):
            assert o.char_to_token(b, c, sequence_index=1) == r.char_to_token(b, c, sequence_index=1)
        for t in range(len(r["input_ids"][b])):
            try:
                r_chars = r.token_to_chars(b, t)
            except TypeError:  # the reference fails on tokens without characters (a bare <s>); we say None
                r_chars = r.encodings[b].token_to_chars(t)
            o_chars = o.token_to_chars(b, t)
            assert (None if r_chars is None else tuple(r_chars)) == o_chars
            assert o.token_to_word(b, t) == r.token_to_word(b, t)
        for w in range(len(TEXTS[b].split())):
            rs, os_ = r.word_to_tokens(b, w), o.word_to_tokens(b, w)
            assert (None if rs is None else tuple(rs)) == os_
            try:
                rc = r.word_to_chars(b, w)
            except TypeError:  # same reference failure for a word with no characters
                rc = r.encodings[b].word_to_chars(w, 0)
            oc = o.word_to_chars(b, w)
            assert (None if rc is None else tuple(rc)) == oc
    single_r, single_o = ref(TEXTS[1]), ours(TEXTS[1])
    assert single_o.char_to_token(5) == single_r.char_to_token(5)
