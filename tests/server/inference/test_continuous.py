"""Continuous batching (no server): a greedy request decoded inside a running batch gives the same
tokens as the same request generated alone by `model.generate` (tiny GPT-2 and Llama checkpoints
built by the reference library), with requests joining at different steps and leaving early."""

from __future__ import annotations

import threading

import pytest
import torch

from haven import pipeline
from haven.server.inference.continuous import Generator, new_sequence
from haven.server.inference.registry import Served


class Collector:
    def __init__(self):
        self.tokens: list[int] = []
        self.done = threading.Event()
        self.error = None

    def __call__(self, item):
        if item is None or isinstance(item, BaseException):
            self.error = item
            self.done.set()
        else:
            self.tokens.append(item[0])


def alone(pipe, prompt: list[int], new: int) -> list[int]:
    out = pipe.model.generate(torch.tensor([prompt]), max_new_tokens=new, do_sample=False)
    return out[0, len(prompt):].tolist()


@pytest.mark.parametrize("prepack", [False, True])  # True: as the server serves it
@pytest.mark.parametrize("fixture", ["gpt2_dir", "llama_dir"])
def test_greedy_in_batch_equals_alone(fixture, prepack, request):
    pipe = pipeline("text-generation", model=request.getfixturevalue(fixture))
    pipe.model.optimize_for_inference(prepack=prepack)
    served = Served("t/x", "0" * 40, "text-generation", pipe, 0)
    vocab = pipe.model.config.vocab_size
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(3, vocab, (n,), generator=g).tolist() for n in (3, 11, 6, 17, 2, 9)]
    lengths = [12, 5, 20, 8, 15, 3]  # some leave early, freeing rows others reuse
    gen = Generator(served, rows=4)  # fewer rows than requests: later ones wait for a free row
    try:
        collectors = []
        for i, (p, n) in enumerate(zip(prompts, lengths)):
            c = Collector()
            collectors.append(c)
            gen.submit(new_sequence(served, p, {"max_new_tokens": n, "do_sample": False}, c))
            if i == 2:  # the others join a batch that is already decoding
                collectors[0].done.wait(0.2)
        for c in collectors:
            assert c.done.wait(60), "generation did not finish"
            assert c.error is None
    finally:
        gen.close()
    assert gen.peak_rows == 4  # the batch really ran full
    for p, n, c in zip(prompts, lengths, collectors):
        expected = alone(pipe, p, n)
        assert c.tokens == expected, (p, n)


def test_compaction_and_growth_keep_tokens(gpt2_dir, monkeypatch):
    """A long-running row keeps its tokens while short rows come and go and the buffer is shifted."""
    from haven.server.inference import continuous

    monkeypatch.setattr(continuous, "COMPACT_AT", 2)
    pipe = pipeline("text-generation", model=gpt2_dir)
    served = Served("t/x", "0" * 40, "text-generation", pipe, 0)
    gen = Generator(served, rows=3)
    try:
        long_prompt = list(range(5, 40))
        runs = [(long_prompt, 20), ([7, 8], 4), ([9, 10, 11], 6), ([12], 3), ([20, 21, 22, 23], 10)]
        cs = []
        for p, n in runs:
            c = Collector()
            cs.append(c)
            gen.submit(new_sequence(served, p, {"max_new_tokens": n, "do_sample": False}, c))
        for c in cs:
            assert c.done.wait(60) and c.error is None
    finally:
        gen.close()
    assert gen.peak_rows >= 2
    for (p, n), c in zip(runs, cs):
        assert c.tokens == alone(pipe, p, n)


def test_an_idle_generator_waits_for_requests_being_prepared(gpt2_dir, monkeypatch):
    """While a request is being prepared (inside `arrival()`), an idle generator holds the first
    submitted one back (up to GATHER) so both are prefilled together; a lone request is not held."""
    from haven.server.inference import continuous

    monkeypatch.setattr(continuous, "GATHER", 5.0)  # long, so that only the arrival can end the wait
    pipe = pipeline("text-generation", model=gpt2_dir)
    served = Served("t/x", "0" * 40, "text-generation", pipe, 0)
    admitted: list[int] = []
    gen = Generator(served, rows=4)
    admit = gen._admit

    def counted(newcomers):
        if newcomers:
            admitted.append(len(newcomers))
        return admit(newcomers)

    monkeypatch.setattr(gen, "_admit", counted)
    try:
        first, second = Collector(), Collector()
        with gen.arrival():  # the second request, still being checked and tokenized
            gen.submit(new_sequence(served, [5, 6, 7], {"max_new_tokens": 3, "do_sample": False}, first))
            assert not first.done.wait(0.5) and first.tokens == [], "the first request did not wait"
            gen.submit(new_sequence(served, [8, 9], {"max_new_tokens": 3, "do_sample": False}, second))
        for c in (first, second):
            assert c.done.wait(60) and c.error is None
        assert admitted == [2]  # one prefill for both
        lone = Collector()
        gen.submit(new_sequence(served, [10, 11], {"max_new_tokens": 2, "do_sample": False}, lone))
        assert lone.done.wait(3.0), "a lone request waited for nobody"  # far under GATHER
        assert admitted == [2, 1]
    finally:
        gen.close()
    assert first.tokens == alone(pipe, [5, 6, 7], 3) and second.tokens == alone(pipe, [8, 9], 3)
