"""The pipelines' public steps, for callers that batch requests themselves (the hub's inference
API): call_parameters -> preprocess_batch -> run_features -> wrap_output gives the reference
pipeline's answer, and text generation's generate_arguments / decoding_settings resolve as
generate() does."""

from __future__ import annotations

import pytest

from fixtures.compare import assert_same_output as assert_same
from haven import pipeline
from haven.errors import GenerationError
from haven.pipelines import PipelineError

TEXTS = ["good", "The weather was cold, so they stayed inside and read books.", "bad stuff"]


@pytest.mark.parametrize("kwargs", [{}, {"top_k": None}, {"function_to_apply": "sigmoid"}])
def test_steps_give_the_reference_answer(bert_sequence_classification_dir, kwargs):
    import transformers

    transformers.logging.set_verbosity_error()
    ref = transformers.pipeline("text-classification", model=bert_sequence_classification_dir)
    pipe = pipeline("text-classification", model=bert_sequence_classification_dir)
    params = pipe.call_parameters(dict(kwargs))
    timing: dict = {}
    features = pipe.preprocess_batch(TEXTS, **params[0])
    results = pipe.run_features(features, batch_size=len(features), params=params, timing=timing)
    assert_same(pipe.wrap_output(TEXTS, results, True, kwargs), ref(TEXTS, **kwargs))
    one = pipe.run_features(features[:1], params=params)
    assert_same(pipe.wrap_output(TEXTS[0], one, False, kwargs), ref(TEXTS[0], **kwargs))
    assert set(timing) == {"pad", "forward", "postprocess"} and all(v >= 0 for v in timing.values())


def test_decoding_settings_resolve_as_generate_does(gpt2_dir):
    import transformers

    pipe = pipeline("text-generation", model=gpt2_dir)
    _, fwd, _ = pipe.call_parameters({"max_new_tokens": 5, "do_sample": False, "stop_sequence": "."})
    arguments = pipe.generate_arguments(fwd)
    config, total = pipe.decoding_settings(arguments, 7)
    assert total == 12 and config.do_sample is False and config.stop_strings == ["."]
    # the model's own total length (max_length) when the call names none: what the reference decodes up to
    ref = transformers.AutoModelForCausalLM.from_pretrained(gpt2_dir)
    pipe.model.generation_config.max_length = ref.generation_config.max_length = 9
    config, total = pipe.decoding_settings({"do_sample": False}, 4)
    ids = ref.generate(transformers.AutoTokenizer.from_pretrained(gpt2_dir)("a b c d", return_tensors="pt")["input_ids"][:, :4],
                       do_sample=False, min_length=9, pad_token_id=0)
    assert total == ids.shape[1] == 9
    with pytest.raises(PipelineError, match="does not take"):
        pipe.decoding_settings({"no_such_setting": 1}, 4)
    with pytest.raises(GenerationError):
        pipe.decoding_settings({"max_length": 3}, 4)
