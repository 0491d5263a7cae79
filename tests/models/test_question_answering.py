"""Extractive question-answering heads against the reference library's, on tiny checkpoints it saved."""

from __future__ import annotations

import pytest
import torch
import transformers

from haven.auto import AutoModelForQuestionAnswering, model_table
from haven.errors import ConfigError

VOCAB = 99
_SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
CONFIGS = {
    "bert": (transformers.BertConfig, _SMALL),
    "distilbert": (transformers.DistilBertConfig, dict(dim=32, n_layers=2, n_heads=4, hidden_dim=64)),
    "roberta": (transformers.RobertaConfig, {**_SMALL, "max_position_embeddings": 40}),
    "camembert": (transformers.CamembertConfig, {**_SMALL, "max_position_embeddings": 40}),
    "xlm-roberta": (transformers.XLMRobertaConfig, {**_SMALL, "max_position_embeddings": 40}),
}
REFERENCE = {
    "bert": transformers.BertForQuestionAnswering,
    "distilbert": transformers.DistilBertForQuestionAnswering,
    "roberta": transformers.RobertaForQuestionAnswering,
    "camembert": transformers.CamembertForQuestionAnswering,
    "xlm-roberta": transformers.XLMRobertaForQuestionAnswering,
}


@pytest.fixture(scope="module", params=list(CONFIGS))
def qa_dir(request, tmp_path_factory):
    arch = request.param
    config_cls, sizes = CONFIGS[arch]
    torch.manual_seed(len(arch))
    model = REFERENCE[arch](config_cls(vocab_size=VOCAB, pad_token_id=1, **sizes))
    with torch.no_grad():  # wider than the default init, so a wrong tensor shows in the logits
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    path = tmp_path_factory.mktemp(f"{arch}-qa")
    model.save_pretrained(path)
    return arch, str(path)


def _batch():
    ids = torch.randint(3, VOCAB, (3, 11), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    ids[2, 7:], mask[2, 7:] = 1, 0  # padding
    return {"input_ids": ids, "attention_mask": mask}


def test_logits_and_loss_match_the_reference(qa_dir):
    arch, path = qa_dir
    ours = AutoModelForQuestionAnswering.from_pretrained(path)
    ref = transformers.AutoModelForQuestionAnswering.from_pretrained(path).eval()
    assert type(ours).__name__ == type(ref).__name__
    assert set(ours.state_dict()) >= {"qa_outputs.weight", "qa_outputs.bias"}
    assert set(ours.state_dict()) == set(ref.state_dict()) - {"roberta.embeddings.position_ids"}
    batch = _batch()
    # the last row's answer lies outside the input (truncated away): clamped and ignored, as the reference
    positions = dict(start_positions=torch.tensor([2, 0, 40]), end_positions=torch.tensor([[4], [0], [45]]))
    with torch.inference_mode():
        out = ours(**batch, **positions, output_hidden_states=True)
        expected = ref(**batch, **positions, output_hidden_states=True)
    for field in ("start_logits", "end_logits", "loss"):
        torch.testing.assert_close(getattr(out, field), getattr(expected, field), atol=1e-4, rtol=0, msg=field)
    assert out.start_logits.shape == (3, 11)
    assert len(out.hidden_states) == len(expected.hidden_states)
    with torch.inference_mode():
        start, end = ours(**batch, return_dict=False)
    torch.testing.assert_close(start, expected.start_logits, atol=1e-4, rtol=0)


def test_haven_saved_qa_model_loads_in_the_reference(qa_dir, tmp_path):
    _, path = qa_dir
    ours = AutoModelForQuestionAnswering.from_pretrained(path)
    ours.save_pretrained(tmp_path)
    ref = transformers.AutoModelForQuestionAnswering.from_pretrained(tmp_path).eval()
    batch = _batch()
    with torch.inference_mode():
        torch.testing.assert_close(ours(**batch).end_logits, ref(**batch).end_logits, atol=1e-4, rtol=0)


def test_training_step_gradients_flow(qa_dir):
    _, path = qa_dir
    ours = AutoModelForQuestionAnswering.from_pretrained(path).train()
    loss = ours(**_batch(), start_positions=torch.tensor([1, 2, 3]), end_positions=torch.tensor([2, 3, 4])).loss
    loss.backward()
    assert ours.qa_outputs.weight.grad is not None and ours.qa_outputs.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("arch", list(CONFIGS))
def test_qa_head_needs_two_labels(arch):
    cls = model_table(arch)["question-answering"]
    with pytest.raises(ConfigError, match="num_labels=2"):
        cls(cls.config_class(vocab_size=VOCAB, num_labels=3, **{k: v for k, v in CONFIGS[arch][1].items()}))


def test_auto_class_refuses_decoders(gpt2_dir):
    from haven.errors import UnknownArchitectureError

    with pytest.raises(UnknownArchitectureError, match="question-answering"):
        AutoModelForQuestionAnswering.from_pretrained(gpt2_dir)
