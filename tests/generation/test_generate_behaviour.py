"""generate(): bad input, warnings, GenerationConfig files, stop strings, max_time, streaming."""

from __future__ import annotations

import json
import logging
import threading

import pytest
import torch
import transformers

from haven import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, TextIteratorStreamer, TextStreamer
from haven.errors import GenerationError, InputTooLongError

transformers.logging.set_verbosity_error()


@pytest.fixture(scope="module")
def gpt2(gpt2_dir):
    return AutoModelForCausalLM.from_pretrained(gpt2_dir)


@pytest.fixture(scope="module")
def llama(llama_dir):
    return AutoModelForCausalLM.from_pretrained(llama_dir)


@pytest.fixture(scope="module")
def ids():
    return torch.tensor([[5, 9, 13, 22, 40, 41, 7, 8]])


# -- settings -----------------------------------------------------------------------------------------


def test_generation_settings_say_what_generate_does(gpt2, ids):
    """generation_settings(): the config and total length generate() uses (the output's length,
    the reference's greedy/sampling choice), and the arguments that are no config field."""
    gc, max_length, others = gpt2.generation_settings(8, max_new_tokens=5, eos_token_id=None, attention_mask=1)
    assert (max_length, gc.max_new_tokens, gc.do_sample, others) == (13, 5, False, {"attention_mask": 1})
    assert gpt2.generate(ids, max_new_tokens=5, eos_token_id=None).shape == (1, max_length)
    gc, max_length, _ = gpt2.generation_settings(8, GenerationConfig(max_length=11, do_sample=True), top_k=3)
    assert (max_length, gc.do_sample, gc.top_k) == (11, True, 3)
    with pytest.raises(GenerationError, match="disagree"):
        gpt2.generation_settings(8, max_length=30, max_new_tokens=5)


# -- bad input ----------------------------------------------------------------------------------------


def test_max_new_tokens_zero(gpt2, ids):
    with pytest.raises(GenerationError, match="max_new_tokens must be a positive integer"):
        gpt2.generate(ids, max_new_tokens=0)


def test_conflicting_max_length_and_max_new_tokens(gpt2, ids):
    with pytest.raises(GenerationError, match=r"max_length=30 and max_new_tokens=5 disagree.*pass only one"):
        gpt2.generate(ids, max_length=30, max_new_tokens=5)
    # consistent values are fine
    assert gpt2.generate(ids, max_length=13, max_new_tokens=5, eos_token_id=None).shape == (1, 13)


def test_max_new_tokens_wins_over_config_max_length(gpt2, ids, caplog):
    gc = GenerationConfig(max_length=30, max_new_tokens=4, eos_token_id=None)
    with caplog.at_level(logging.WARNING, logger="haven.generation"):
        out = gpt2.generate(ids, generation_config=gc)
    assert out.shape == (1, 12)
    assert "max_new_tokens takes precedence" in caplog.text


def test_max_length_not_longer_than_prompt(gpt2, ids):
    with pytest.raises(GenerationError, match="prompt has 8 tokens but max_length is 8"):
        gpt2.generate(ids, max_length=8)


def test_num_beams_below_num_return_sequences(gpt2, ids):
    with pytest.raises(GenerationError, match=r"num_return_sequences \(4\) cannot exceed num_beams \(2\)"):
        gpt2.generate(ids, max_new_tokens=3, num_beams=2, num_return_sequences=4)
    with pytest.raises(GenerationError, match="do_sample=True"):
        gpt2.generate(ids, max_new_tokens=3, num_return_sequences=2)


def test_prompt_longer_than_context_window(gpt2):
    n = gpt2.config.max_position_embeddings
    too_long = torch.ones(1, n + 5, dtype=torch.long)
    with pytest.raises(GenerationError, match=rf"prompt has {n + 5} tokens but the model's context window is {n}"):
        gpt2.generate(too_long, max_new_tokens=2)
    with pytest.raises(InputTooLongError):  # also catchable as the runtime's too-long error
        gpt2.generate(too_long, max_new_tokens=2)


def test_other_bad_settings(gpt2, ids):
    with pytest.raises(GenerationError, match="temperature must be a positive number"):
        gpt2.generate(ids, max_new_tokens=2, do_sample=True, temperature=0.0)
    with pytest.raises(GenerationError, match="stop_strings needs the tokenizer"):
        gpt2.generate(ids, max_new_tokens=2, stop_strings=["x"])
    with pytest.raises(GenerationError, match="unknown arguments"):
        gpt2.generate(ids, max_new_tokens=2, not_a_setting=3)
    with pytest.raises(GenerationError, match="early_stopping"):
        gpt2.generate(ids, max_new_tokens=2, num_beams=2, early_stopping="sometimes")
    with pytest.raises(GenerationError, match="bad_words_ids"):
        gpt2.generate(ids, max_new_tokens=2, bad_words_ids=[3, 4])
    with pytest.raises(GenerationError, match="one sequence at a time"):
        gpt2.generate(ids, max_new_tokens=2, num_beams=2, streamer=TextStreamer(None))


# -- warnings -------------------------------------------------------------------------------------------


def test_default_length_is_20_new_tokens_with_hint(llama, llama_dir, ids, caplog):
    ref = transformers.AutoModelForCausalLM.from_pretrained(llama_dir)
    with caplog.at_level(logging.WARNING, logger="haven.generation"):
        out = llama.generate(ids, eos_token_id=None)
    assert "max_new_tokens" in caplog.text
    assert out.shape == ref.generate(ids, eos_token_id=None).shape == (1, ids.shape[1] + 20)


def test_right_padding_warns(llama, caplog):
    ids = torch.tensor([[5, 6, 7, 8], [5, 6, 2, 2]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    with caplog.at_level(logging.WARNING, logger="haven.generation"):
        llama.generate(ids, attention_mask=mask, max_new_tokens=2)
    assert 'padding_side="left"' in caplog.text


def test_missing_pad_uses_eos_said_once(gpt2, ids, caplog, monkeypatch):
    from haven.generation import mixin

    mixin._said.clear()
    monkeypatch.setattr(gpt2.generation_config, "pad_token_id", None)
    with caplog.at_level(logging.WARNING, logger="haven.generation"):
        gpt2.generate(ids, max_new_tokens=2, pad_token_id=None, eos_token_id=3)
        gpt2.generate(ids, max_new_tokens=2, pad_token_id=None, eos_token_id=3)
    assert caplog.text.count("pad_token_id is not set: using eos_token_id (3)") == 1


# -- GenerationConfig ----------------------------------------------------------------------------------


def test_generation_config_round_trip_and_reference_compat(tmp_path, gpt2_dir):
    gc = GenerationConfig(max_new_tokens=12, do_sample=True, top_p=0.8, eos_token_id=[1, 2], custom_key="kept")
    gc.save_pretrained(tmp_path)
    data = json.loads((tmp_path / "generation_config.json").read_text())
    assert data["max_new_tokens"] == 12 and data["custom_key"] == "kept" and "temperature" not in data
    back = GenerationConfig.from_pretrained(tmp_path)
    assert back == gc and back.eos_token_ids == [1, 2]
    theirs = transformers.GenerationConfig.from_pretrained(tmp_path)  # the reference reads our file
    assert theirs.max_new_tokens == 12 and theirs.top_p == 0.8 and theirs.eos_token_id == [1, 2]
    ours = GenerationConfig.from_pretrained(gpt2_dir)  # and we read the reference's
    assert ours.eos_token_id == transformers.GenerationConfig.from_pretrained(gpt2_dir).eos_token_id


def test_model_loads_and_saves_generation_config(gpt2, tmp_path, gpt2_dir):
    ref = json.loads(open(f"{gpt2_dir}/generation_config.json").read())
    assert gpt2.generation_config.eos_token_id == ref["eos_token_id"]
    gpt2.save_pretrained(tmp_path)
    assert GenerationConfig.from_pretrained(tmp_path) == gpt2.generation_config


def test_generation_config_from_model_config_when_file_missing(tmp_path, gpt2_dir):
    import shutil

    for name in ("config.json", "model.safetensors"):
        shutil.copy(f"{gpt2_dir}/{name}", tmp_path / name)
    model = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert model.generation_config.eos_token_id == model.config.eos_token_id
    assert model.generation_config.max_new_tokens is None


def test_bad_generation_config_file(tmp_path):
    (tmp_path / "generation_config.json").write_text("{not json")
    with pytest.raises(GenerationError, match="not valid JSON"):
        GenerationConfig.from_pretrained(tmp_path)


# -- stopping ---------------------------------------------------------------------------------------------


def test_stop_strings_match_reference(gpt2_dir):
    tok = transformers.AutoTokenizer.from_pretrained(gpt2_dir)
    ref = transformers.AutoModelForCausalLM.from_pretrained(gpt2_dir)
    hv = AutoModelForCausalLM.from_pretrained(gpt2_dir)
    ids = tok("The quick brown fox", return_tensors="pt").input_ids
    full = ref.generate(ids, max_new_tokens=20, eos_token_id=None, pad_token_id=0)
    pieces = [tok.decode([t]) for t in full[0, ids.shape[1] :].tolist()]
    # a stop string spanning two clean tokens after the first few: end of one + start of the next
    i = next(i for i in range(3, len(pieces) - 1) if all(p and "\ufffd" not in p for p in pieces[i : i + 2]))
    stop = pieces[i][-1] + pieces[i + 1][0]
    kw = dict(max_new_tokens=20, eos_token_id=None, pad_token_id=0, stop_strings=[stop, "zzzz"])
    expected = ref.generate(ids, tokenizer=tok, **kw)
    got = hv.generate(ids, tokenizer=tok, **kw)
    assert torch.equal(got, expected)
    assert got.shape[1] < full.shape[1]
    assert stop in tok.decode(got[0, ids.shape[1] :])


def test_max_time_stops_early(gpt2, ids):
    out = gpt2.generate(ids, max_new_tokens=50, eos_token_id=None, max_time=0.0)
    assert out.shape == (1, ids.shape[1] + 1)  # the first token, then time is up


# -- streaming ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hv_tok(gpt2_dir):
    return AutoTokenizer.from_pretrained(gpt2_dir)


def test_text_streamer_prints_the_generated_text(gpt2, hv_tok, capsys):
    ids = hv_tok("Hello world", return_tensors="pt")["input_ids"]
    out = gpt2.generate(ids, max_new_tokens=25, eos_token_id=None)
    gpt2.generate(ids, max_new_tokens=25, eos_token_id=None, streamer=TextStreamer(hv_tok, skip_prompt=True))
    printed = capsys.readouterr().out
    assert printed == hv_tok.decode(out[0, ids.shape[1] :]) + "\n"
    gpt2.generate(ids, max_new_tokens=25, eos_token_id=None, streamer=TextStreamer(hv_tok))
    assert capsys.readouterr().out == hv_tok.decode(out[0]) + "\n"


def test_iterator_streamer_from_a_thread(llama, llama_dir):
    tok = AutoTokenizer.from_pretrained(llama_dir)
    ids = tok("Bonjour le monde", return_tensors="pt")["input_ids"]
    expected = llama.generate(ids, max_new_tokens=30, eos_token_id=None)
    streamer = TextIteratorStreamer(tok, skip_prompt=True, timeout=30, skip_special_tokens=True)
    thread = threading.Thread(
        target=llama.generate, args=(ids,), kwargs=dict(max_new_tokens=30, eos_token_id=None, streamer=streamer)
    )
    thread.start()
    pieces = list(streamer)
    thread.join()
    assert "".join(pieces) == tok.decode(expected[0, ids.shape[1] :], skip_special_tokens=True)
    assert len(pieces) > 1


class _ByteTok:
    """A tokenizer whose tokens are single UTF-8 bytes: multi-byte characters span tokens."""

    def decode(self, ids, **kw):
        return bytes([ids] if isinstance(ids, int) else ids).decode("utf-8", errors="replace")


def _pieces(streamer_class, tokenizer, prompt, steps):
    """The non-empty pieces a streamer releases for `prompt` followed by `steps` (ids per step)."""
    got = []

    class Collect(streamer_class):
        def on_finalized_text(self, text, stream_end=False):
            if text:
                got.append(text)

    s = Collect(tokenizer)
    s.put(torch.tensor([prompt]))
    for ids in steps:
        s.put(torch.tensor(ids))
    s.end()
    return got


@pytest.mark.parametrize(
    "text", ["café 日本 naïve ok\nnext é", "x = f(a, b);\n  return [1, 2]\n\n", "ภาษาไทย ok!", "e\u0301t\u00e9 42%"]
)
def test_streamer_pieces_equal_the_reference(text):
    """The same pieces as the reference's streamer; never a half-decoded character."""
    steps = [[b] for b in text.encode()]
    got = _pieces(TextStreamer, _ByteTok(), [], steps)
    assert got == _pieces(transformers.TextStreamer, _ByteTok(), [], steps)
    assert "".join(got) == text
    assert not any("\ufffd" in piece for piece in got)


def test_streamer_pieces_equal_the_reference_on_generated_text(gpt2, hv_tok, gpt2_dir):
    ids = hv_tok("Hello world.\nA new line", return_tensors="pt")["input_ids"]
    out = gpt2.generate(ids, max_new_tokens=40, eos_token_id=None, do_sample=True, top_k=0)
    steps = [[t] for t in out[0, ids.shape[1] :].tolist()]
    ref_tok = transformers.AutoTokenizer.from_pretrained(gpt2_dir)
    got = _pieces(TextStreamer, hv_tok, ids[0].tolist(), steps)
    assert got == _pieces(transformers.TextStreamer, ref_tok, ids[0].tolist(), steps)


def test_generate_from_a_left_padded_tokenizer_batch(llama, llama_dir):
    """The everyday call: model.generate(**tokenizer(prompts, padding=True, return_tensors="pt"))."""
    prompts = ["Bonjour le monde, comment ça va", "Hello"]
    tok = AutoTokenizer.from_pretrained(llama_dir, padding_side="left")
    ref_tok = transformers.AutoTokenizer.from_pretrained(llama_dir, padding_side="left")
    tok.pad_token = tok.eos_token  # the tiny Llama tokenizer has no pad token (as Llama's)
    ref_tok.pad_token = ref_tok.eos_token
    ref = transformers.AutoModelForCausalLM.from_pretrained(llama_dir)
    got = llama.generate(**tok(prompts, padding=True, return_tensors="pt"), max_new_tokens=8)
    expected = ref.generate(**ref_tok(prompts, padding=True, return_tensors="pt"), max_new_tokens=8)
    assert torch.equal(got, expected)
    assert tok.batch_decode(got, skip_special_tokens=True) == ref_tok.batch_decode(expected, skip_special_tokens=True)
