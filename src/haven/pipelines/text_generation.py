"""text-generation: continue a prompt, or answer a chat.

gen = pipeline("text-generation", model=path)
gen("Once upon a time", max_new_tokens=20)            # [{"generated_text": "Once upon a time..."}]
gen(["a", "b"], do_sample=False)                      # one list of results per prompt
gen("Hi", return_full_text=False, num_return_sequences=2, do_sample=True)
gen([{"role": "user", "content": "Hi"}])              # [{"generated_text": [..., {"role": "assistant", ...}]}]

Defaults as the reference's pipeline: up to 256 new tokens, sampling at temperature 0.7, unless
the call or the model's generation_config.json says otherwise. Batches are padded on the left.

For callers that decode themselves (the hub's inference API batches sequences continuously):
`call_parameters(kwargs)` splits a call's keyword arguments as `__call__` does, `preprocess` makes
the prompt's features, `generate_arguments(forward_params)` adds the pipeline's defaults as
`generate()` would receive them, `decoding_settings(arguments, prompt_length)` resolves them into
the GenerationConfig and total length `generate()` would use, and `postprocess` turns the new
tokens into the answer.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import PipelineError
from ..generation.config import GenerationConfig
from .base import Pipeline

# Applied when neither the call nor the model's generation config sets them (sampling ones only when sampling).
PIPELINE_DEFAULTS: dict[str, Any] = {"max_new_tokens": 256, "do_sample": True, "temperature": 0.7}
_SAMPLING = {"temperature", "top_k", "top_p", "min_p", "typical_p"}


def _is_chat(value: Any) -> bool:
    return (
        isinstance(value, (list, tuple))
        and len(value) > 0
        and all(isinstance(m, dict) and "role" in m and "content" in m for m in value)
    )


class TextGenerationPipeline(Pipeline):
    task = "text-generation"
    padding_side = "left"

    # -- parameters -----------------------------------------------------------------------------------

    def _sanitize_parameters(
        self,
        return_full_text: bool | None = None,
        return_tensors: bool | None = None,
        return_text: bool | None = None,
        prefix: str | None = None,
        stop_sequence: str | list[str] | None = None,
        skip_special_tokens: bool | None = None,
        clean_up_tokenization_spaces: bool | None = None,
        continue_final_message: bool | None = None,
        add_special_tokens: bool | None = None,
        truncation: bool | None = None,
        max_length: int | None = None,
        **generate_kwargs: Any,
    ) -> tuple[dict, dict, dict]:
        pre: dict[str, Any] = {}
        for key, value in (
            ("prefix", prefix),
            ("add_special_tokens", add_special_tokens),
            ("truncation", truncation),
            ("continue_final_message", continue_final_message),
        ):
            if value is not None:
                pre[key] = value
        if max_length is not None:  # as the reference: a tokenizer limit and generate()'s total length
            pre["max_length"] = max_length
            generate_kwargs["max_length"] = max_length
        if stop_sequence is not None:
            generate_kwargs["stop_strings"] = (
                [stop_sequence] if isinstance(stop_sequence, str) else stop_sequence
            )
            generate_kwargs["tokenizer"] = self.tokenizer
        if prefix:
            ids = self.tokenizer(prefix, add_special_tokens=False)["input_ids"]
            generate_kwargs["_prefix_length"] = len(ids)

        post: dict[str, Any] = {}
        if return_full_text is not None and return_text is not None:
            raise PipelineError("return_text and return_full_text cannot be used together")
        if return_tensors and (return_full_text is not None or return_text is not None):
            raise PipelineError(
                "return_tensors=True returns token ids only; drop return_text / return_full_text"
            )
        if return_tensors:
            post["return_type"] = "tensors"
        elif return_full_text is not None:
            post["return_type"] = "full" if return_full_text else "new"
        if skip_special_tokens is not None:
            post["skip_special_tokens"] = skip_special_tokens
        if clean_up_tokenization_spaces is not None:
            post["clean_up_tokenization_spaces"] = clean_up_tokenization_spaces
        if continue_final_message is not None:
            post["continue_final_message"] = continue_final_message
        return pre, generate_kwargs, post

    def generate_arguments(self, call: dict[str, Any]) -> dict[str, Any]:
        """generate()'s keyword arguments for a call: the call's forward parameters (the second of
        `call_parameters`) plus the pipeline defaults neither they nor the model's config set."""
        call = dict(call)
        prefix_length = call.pop("_prefix_length", 0)
        model_set = {}
        if getattr(self.model, "generation_config", None) is not None:
            model_set = self.model.generation_config.to_diff_dict()
        user_gc = call.get("generation_config")
        if user_gc is not None:
            model_set.update(user_gc.to_diff_dict())
        set_params = {**model_set, **call}
        added = {
            k: v
            for k, v in PIPELINE_DEFAULTS.items()
            if k not in set_params and not (k == "max_new_tokens" and "max_length" in set_params)
        }
        if not {**set_params, **added}.get("do_sample"):
            added = {k: v for k, v in added.items() if k not in _SAMPLING}
        if prefix_length:  # a total length has to count the prefix too
            for total, new in (("max_length", "max_new_tokens"), ("min_length", "min_new_tokens")):
                if total in set_params and new not in set_params and set_params[total] is not None:
                    call[total] = set_params[total] + prefix_length
        if user_gc is not None:
            user_gc = user_gc.copy()
            user_gc.update(**added)
            return {**call, "generation_config": user_gc}
        return {**call, **added}

    def decoding_settings(self, arguments: dict[str, Any], prompt_length: int) -> tuple[GenerationConfig, int]:
        """(the resolved GenerationConfig, the total length to decode up to) that generate() would use
        with these `generate_arguments` for a prompt of `prompt_length` tokens. PipelineError for an
        argument generate() does not take; GenerationError for lengths it refuses."""
        kwargs = {k: v for k, v in arguments.items() if k != "tokenizer"}
        config, max_length, unused = self.model.generation_settings(prompt_length, **kwargs)
        if unused:
            raise PipelineError(f"generation does not take {', '.join(sorted(unused))}")
        return config, max_length

    # -- steps ------------------------------------------------------------------------------------------

    def _is_batch(self, inputs: Any) -> bool:
        if _is_chat(inputs):
            return False
        return isinstance(inputs, (list, tuple))

    def preprocess(
        self,
        prompt: Any,
        prefix: str = "",
        add_special_tokens: bool | None = None,
        truncation: bool | None = None,
        max_length: int | None = None,
        continue_final_message: bool | None = None,
    ) -> dict[str, Any]:
        encode: dict[str, Any] = {}
        if truncation is not None:
            encode["truncation"] = truncation
        if max_length is not None:
            encode["max_length"] = max_length
        if _is_chat(prompt):
            messages = list(prompt)
            if continue_final_message is None:
                continue_final_message = messages[-1]["role"] == "assistant"
            enc = self.tokenizer.apply_chat_template(
                messages,
                add_generation_prompt=not continue_final_message,
                continue_final_message=continue_final_message,
                return_dict=True,
                **encode,
            )
        elif isinstance(prompt, str):
            if add_special_tokens is not None:
                encode["add_special_tokens"] = add_special_tokens
            enc = self.tokenizer(prefix + prompt, **encode)
        else:
            raise PipelineError(
                "text-generation takes a string, a chat (a list of {'role', 'content'} messages) or a list of "
                f"those; got {type(prompt).__name__}"
            )
        ids = enc["input_ids"]
        if ids and isinstance(ids[0], list):  # a batched encoding of one item
            ids = ids[0]
        if not ids:
            raise PipelineError("the prompt encodes to no tokens; give some text to continue")
        return {"input_ids": list(ids), "attention_mask": [1] * len(ids), "prompt": prompt}

    def _forward(self, model_inputs: dict[str, torch.Tensor], **generate_kwargs: Any) -> list[Any]:
        kwargs = self.generate_arguments(generate_kwargs)
        ids = model_inputs["input_ids"]
        mask = model_inputs.get("attention_mask")
        out = self.model.generate(ids, attention_mask=mask, **kwargs)
        sequences = out.sequences if not isinstance(out, torch.Tensor) else out
        rows = ids.shape[0]
        per_prompt = sequences.shape[0] // rows
        prompt_len = ids.shape[1]
        result = []
        for r in range(rows):
            block = sequences[r * per_prompt : (r + 1) * per_prompt]
            result.append([seq[prompt_len:].tolist() for seq in block])  # new tokens of each sequence
        return result

    def postprocess(
        self,
        features: dict[str, Any],
        new_tokens: list[list[int]],
        return_type: str = "full",
        skip_special_tokens: bool = True,
        clean_up_tokenization_spaces: bool | None = None,
        continue_final_message: bool | None = None,
    ) -> list[dict[str, Any]]:
        prompt = features["prompt"]
        records = []
        for tokens in new_tokens:
            if return_type == "tensors":
                records.append({"generated_token_ids": list(features["input_ids"]) + tokens})
                continue
            text = self.tokenizer.decode(
                tokens,
                skip_special_tokens=skip_special_tokens,
                clean_up_tokenization_spaces=clean_up_tokenization_spaces,
            )
            if return_type == "full":
                if isinstance(prompt, str):
                    text = prompt + text
                else:
                    messages = [dict(m) for m in prompt]
                    cont = (
                        messages[-1]["role"] == "assistant"
                        if continue_final_message is None
                        else continue_final_message
                    )
                    if cont:
                        messages[-1]["content"] = messages[-1]["content"] + text
                    else:
                        messages.append({"role": "assistant", "content": text})
                    text = messages
            records.append({"generated_text": text})
        return records
