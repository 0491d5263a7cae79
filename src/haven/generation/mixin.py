"""GenerationMixin: `model.generate(...)` for causal language models.

Decoder heads list it first among their bases (`class XForCausalLM(GenerationMixin, XPreTrainedModel)`).
`generate` resolves the settings (call kwargs > `generation_config=` > the model's
`generation_config.json` > defaults), checks them, prepares masks, cache and buffers, and hands
over to a loop in `decoding.py`.

Length rules (`max_new_tokens` counts new tokens, `max_length` counts prompt + new):
- neither set anywhere: 20 new tokens (capped by the context window), with a hint;
- `max_new_tokens` wins over a `max_length` from a config object or the model's
  `generation_config.json` (a warning when the caller's `generation_config` set both);
- both passed to the same call and disagreeing: `GenerationError` (say only one).
"""

from __future__ import annotations

import functools
import logging
import os
import time
from typing import Any

import torch

from ..errors import GenerationError, InputTooLongError
from ..layers import cache_argument
from .config import DEFAULTS, GENERATION_CONFIG_NAME, GenerationConfig
from .decoding import Step, beam_search, sample_loop
from .logits_process import build_processors
from .outputs import GenerateBeamDecoderOnlyOutput, GenerateDecoderOnlyOutput
from .stopping import (
    EosTokenCriteria,
    MaxLengthCriteria,
    MaxTimeCriteria,
    StoppingCriteriaList,
    StopStringCriteria,
)

logger = logging.getLogger("haven.generation")

DEFAULT_NEW_TOKENS = DEFAULTS["max_length"]
_COMPILED_FORWARDS: dict[type, Any] = {}  # a model class -> its forward through torch.compile
_said: set[str] = set()


class PromptTooLongError(GenerationError, InputTooLongError):
    """The prompt does not fit the model's context window."""


def _say_once(message: str) -> None:
    if message not in _said:
        _said.add(message)
        logger.warning(message)


class GenerationMixin:
    """Adds `generate()` to a causal LM whose forward follows the decoder contract:
    `model(input_ids, attention_mask=(B, past+T), position_ids=(B, T), past_key_values=KVCache,
    use_cache=True, logits_to_keep=1).logits -> (B, 1, V)`."""

    # -- a compiled decode step ----------------------------------------------------------------------

    def compile_decoding(self, enabled: bool = True) -> Any:
        """Run `generate()`'s one-token steps through `torch.compile` (inductor, with its C++
        wrapper); the prompt still runs as it is. Returns the model.

        The same forward, compiled: the small ops of a step (norms, activations, residuals, the
        cache writes, attention's reshapes) are fused into a few generated C++ kernels and the
        Python of the modules leaves the step; the matrix products (dense, or Haven's int8/int4
        kernels) run as before. Measured on the 124M GPT-2 shape in int8, 2 threads: about 10.6
        ms per token against 13-14.5 eager (README, Performance); with float32 weights it helps
        less or not at all (Llama 1.08x, GPT-2 0.92x, measured on 2026-12-07 with the weights as
        loaded, where eager multiplies one row by a matrix-vector product and the compiled graph
        by a general one). The results equal eager ones
        up to float32 rounding (fused ops sum in another order), so a greedy choice between two
        nearly tied tokens can differ.

        Cost: the first step of each new shape (batch size, padded or not) compiles, about 10-50 s
        on 2 cores (inductor keeps the result on disk, and a later process reuses it), with the
        system's C++ compiler, which must be present. `enabled=False` goes back to eager steps.

        The model keeps only the choice (`decoding_compiled`), so a copy or a pickle of it
        carries the choice and compiles its own step; the compiled forward is shared by every
        model of a class (torch keeps up to `torch._dynamo.config.cache_size_limit` variants of
        it per process, one per model and shape; past that, steps run eager)."""
        self.decoding_compiled = bool(enabled)
        return self

    def _decode_forward(self) -> Any:
        """The compiled forward for one-token steps (`compile_decoding()`), or None."""
        if not getattr(self, "decoding_compiled", False):
            return None
        compiled = _COMPILED_FORWARDS.get(type(self))
        if compiled is None:
            compiled = torch.compile(type(self).forward, dynamic=True, options={"cpp_wrapper": True})
            _COMPILED_FORWARDS[type(self)] = compiled
        return functools.partial(compiled, self)

    # -- loading --------------------------------------------------------------------------------------

    def _load_generation_config(self, path_or_id: str | os.PathLike, hub: dict[str, Any]) -> None:
        """Read generation_config.json next to the weights, else derive one from config.json."""
        from ..hub import resolve_file

        path = resolve_file(path_or_id, GENERATION_CONFIG_NAME, optional=True, **hub)
        if path:
            self.generation_config = GenerationConfig.from_json_file(path)
        else:
            self.generation_config = GenerationConfig.from_model_config(self.config)

    # -- settings -------------------------------------------------------------------------------------

    def generation_settings(
        self, prompt_length: int, generation_config: GenerationConfig | None = None, **kwargs: Any
    ) -> tuple[GenerationConfig, int, dict[str, Any]]:
        """What `generate()` makes of its arguments for a prompt of `prompt_length` tokens: (the
        resolved GenerationConfig, the total length (prompt + new) to decode up to, the arguments
        that are no GenerationConfig field, such as model inputs). Raises as generate() does for
        lengths it refuses. Callers that decode by themselves (the inference server's continuous
        batch) use it to decode as generate() would."""
        gc, others, given = self._resolve_config(generation_config, kwargs)
        return gc, self._resolve_lengths(gc, given, prompt_length), others

    def _resolve_config(
        self, generation_config: GenerationConfig | None, kwargs: dict[str, Any]
    ) -> tuple[GenerationConfig, dict[str, Any], dict[str, bool]]:
        gc = generation_config.copy() if generation_config is not None else GenerationConfig()
        model_gc = getattr(self, "generation_config", None) or GenerationConfig.from_model_config(self.config)
        given = {
            "call_max_length": kwargs.get("max_length") is not None,
            "call_max_new": kwargs.get("max_new_tokens") is not None,
            "object_both": generation_config is not None
            and generation_config.max_length is not None
            and generation_config.max_new_tokens is not None,
        }
        given["any_max_length"] = (
            given["call_max_length"] or gc.max_length is not None or model_gc.max_length is not None
        )
        unused = gc.update(**kwargs)
        gc.fill_unset(model_gc)
        gc.fill_unset(DEFAULTS)
        gc.validate()
        return gc, unused, given

    def _resolve_lengths(self, gc: GenerationConfig, given: dict[str, bool], prompt_length: int) -> int:
        """The total length (prompt + new) to generate up to."""
        context = getattr(self.config, "max_position_embeddings", None)
        if context is not None and prompt_length > context and self._has_learned_positions():
            raise PromptTooLongError(
                f"the prompt has {prompt_length} tokens but the model's context window is {context} "
                "(max_position_embeddings); shorten the prompt (e.g. tokenizer(..., truncation=True, "
                f"max_length={context}))"
            )
        if gc.max_new_tokens is not None:
            if given["call_max_length"] and given["call_max_new"]:
                if gc.max_length != prompt_length + gc.max_new_tokens:
                    raise GenerationError(
                        f"max_length={gc.max_length} and max_new_tokens={gc.max_new_tokens} disagree for a "
                        f"{prompt_length}-token prompt ({prompt_length} + {gc.max_new_tokens} != {gc.max_length}); "
                        "pass only one of them (max_new_tokens is the usual choice)"
                    )
            elif given["object_both"]:
                logger.warning(
                    "Both max_new_tokens (=%s) and max_length (=%s) are set; max_new_tokens takes precedence.",
                    gc.max_new_tokens,
                    gc.max_length,
                )
            max_length = prompt_length + gc.max_new_tokens
        elif not given["any_max_length"]:
            logger.warning(
                "No max_new_tokens or max_length given: generating at most %d new tokens. "
                "Pass max_new_tokens=... to control the length.",
                DEFAULT_NEW_TOKENS,
            )
            max_length = prompt_length + DEFAULT_NEW_TOKENS
            if context is not None:
                max_length = min(max_length, context)
        else:
            max_length = gc.max_length
        if max_length <= prompt_length:
            raise GenerationError(
                f"the prompt has {prompt_length} tokens but max_length is {max_length}, which leaves no room "
                "for new tokens; pass max_new_tokens=N to count new tokens only"
            )
        if context is not None and max_length > context:
            _say_once(
                f"generation may run past the model's context window ({context} tokens, "
                "max_position_embeddings); the model may fail or degrade there"
            )
        return max_length

    def _has_learned_positions(self) -> bool:
        """True when positions come from an embedding table (GPT-2's `wpe`): a hard context limit.
        Rotary models can run past max_position_embeddings (with degraded quality, or by design
        with dynamic scaling), so for them that is a warning, not an error."""
        found = self.__dict__.get("_learned_positions")
        if found is None:
            names = ("wpe", "position_embeddings", "embed_positions")
            found = any(isinstance(m, torch.nn.Embedding) and n.rsplit(".", 1)[-1] in names
                        for n, m in self.named_modules())
            self.__dict__["_learned_positions"] = found
        return found

    # -- generate -------------------------------------------------------------------------------------

    @torch.inference_mode()
    def generate(
        self,
        inputs: torch.Tensor | None = None,
        generation_config: GenerationConfig | None = None,
        logits_processor: list | None = None,
        stopping_criteria: list | None = None,
        streamer: Any = None,
        tokenizer: Any = None,
        **kwargs: Any,
    ) -> torch.Tensor | GenerateDecoderOnlyOutput | GenerateBeamDecoderOnlyOutput:
        """Continue `input_ids` (B, S); returns (B * num_return_sequences, S + new) ids, or an
        output object with `return_dict_in_generate=True`.

        Keyword arguments are GenerationConfig fields (`max_new_tokens=50, do_sample=True,
        top_p=0.9`...) or model inputs (`attention_mask`, `cache` (or its older name
        `past_key_values`) to continue a previous call's cache: pass the previous sequences plus
        the new tokens as input_ids).
        """
        input_ids = kwargs.pop("input_ids", None) if inputs is None else inputs
        if input_ids is None:
            raise GenerationError("generate() needs input_ids: model.generate(**tokenizer(prompt, return_tensors='pt'))")
        if input_ids.dim() == 1:
            input_ids = input_ids[None]
        batch, prompt_length = input_ids.shape
        gc, max_length, model_kwargs = self.generation_settings(prompt_length, generation_config, **kwargs)
        attention_mask = model_kwargs.pop("attention_mask", None)
        cache = cache_argument(model_kwargs.pop("cache", None), model_kwargs, only_cache=False)
        model_kwargs.pop("token_type_ids", None)  # decoder-only models have no segments
        if model_kwargs:
            raise GenerationError(
                f"generate() got unknown arguments {sorted(model_kwargs)}: they are neither GenerationConfig "
                "fields nor model inputs (input_ids, attention_mask, cache)"
            )
        device = self.device
        input_ids = input_ids.to(device)
        start = time.time()

        eos_ids = gc.eos_token_ids
        pad = gc.pad_token_id
        if pad is None and eos_ids:
            _say_once(f"pad_token_id is not set: using eos_token_id ({eos_ids[0]}) to pad finished sequences.")
            pad = eos_ids[0]
        attention_mask = self._prepare_mask(input_ids, attention_mask, pad, eos_ids)
        if gc.num_beams > 1 and streamer is not None:
            raise GenerationError("streaming works with one sequence at a time; use num_beams=1 with a streamer")
        if streamer is not None:
            streamer.put(input_ids.cpu())

        padding_lengths = None
        if attention_mask is not None and gc.repetition_penalty != 1.0:
            padding_lengths = (attention_mask != 0).int().argmax(dim=1)
        processors = build_processors(
            gc, prompt_length=prompt_length, padding_lengths=padding_lengths, extra=list(logits_processor or [])
        )
        stopping = StoppingCriteriaList(stopping_criteria or [])
        if gc.max_time is not None:
            stopping.append(MaxTimeCriteria(gc.max_time, start))
        if gc.stop_strings:
            if tokenizer is None:
                raise GenerationError(
                    "stop_strings needs the tokenizer to read text: call generate(..., stop_strings=[...], tokenizer=tok)"
                )
            stopping.append(StopStringCriteria(tokenizer, gc.stop_strings))

        # one row per beam / per returned sample
        copies = gc.num_beams if gc.num_beams > 1 else (gc.num_return_sequences if gc.do_sample else 1)
        if copies > 1:
            input_ids = input_ids.repeat_interleave(copies, dim=0)
            if attention_mask is not None:
                attention_mask = attention_mask.repeat_interleave(copies, dim=0)
        rows = input_ids.shape[0]

        if not gc.use_cache:
            cache = None
        elif cache is None:
            from ..layers import KVCache

            cache = KVCache(max_length=max_length)
        elif cache.get_seq_length() >= prompt_length:  # nothing new to feed: recompute the last token
            cache.crop(prompt_length - 1)

        seqs = input_ids.new_full((rows, max_length), pad if pad is not None else 0)
        seqs[:, :prompt_length] = input_ids
        mask = None
        if attention_mask is not None:
            mask = attention_mask.new_ones((rows, max_length))
            mask[:, :prompt_length] = attention_mask
        step = Step(
            model=self,
            decode=self._decode_forward() if cache is not None else None,
            cache=cache,
            mask=mask,
            max_length=max_length,
            record_scores=bool(gc.return_dict_in_generate and gc.output_scores),
            record_logits=bool(gc.return_dict_in_generate and gc.output_logits),
        )

        if gc.num_beams > 1:
            stopping.append(MaxLengthCriteria(max_length))
            if eos_ids:
                stopping.append(EosTokenCriteria(eos_ids))
            fill = (pad or eos_ids[0]) if eos_ids else -1  # the reference's choice
            sequences, seq_scores, beam_indices = beam_search(
                step,
                seqs,
                prompt_length,
                num_beams=gc.num_beams,
                do_sample=bool(gc.do_sample),
                processors=processors,
                stopping=stopping,
                eos_ids=eos_ids,
                fill_value=fill,
                length_penalty=float(gc.length_penalty),
                early_stopping=gc.early_stopping,
                num_return_sequences=gc.num_return_sequences,
            )
            if not gc.return_dict_in_generate:
                return sequences
            return GenerateBeamDecoderOnlyOutput(
                sequences=sequences,
                sequences_scores=seq_scores if gc.output_scores else None,
                scores=tuple(step.scores) if step.record_scores else None,
                logits=tuple(step.logits) if step.record_logits else None,
                beam_indices=beam_indices,
                cache=cache,
            )

        eos = torch.tensor(eos_ids, device=device) if eos_ids else None
        sequences = sample_loop(
            step,
            seqs,
            prompt_length,
            do_sample=bool(gc.do_sample),
            processors=processors,
            stopping=stopping,
            eos=eos,
            pad_token_id=pad,
            streamer=streamer,
        )
        if streamer is not None:
            streamer.end()
        if not gc.return_dict_in_generate:
            return sequences
        return GenerateDecoderOnlyOutput(
            sequences=sequences,
            scores=tuple(step.scores) if step.record_scores else None,
            logits=tuple(step.logits) if step.record_logits else None,
            cache=cache,
        )

    @staticmethod
    def _prepare_mask(
        input_ids: torch.Tensor, attention_mask: torch.Tensor | None, pad: int | None, eos_ids: list[int]
    ) -> torch.Tensor | None:
        """The 1/0 mask to use, or None when nothing is padded (the fast path)."""
        if attention_mask is None:
            if pad is not None and pad not in eos_ids and bool((input_ids == pad).any()):
                attention_mask = (input_ids != pad).long()
            elif pad is not None and input_ids.shape[0] > 1 and bool((input_ids[:, -1] == pad).any()):
                _warn_right_padding()
            if attention_mask is None:
                return None
        attention_mask = attention_mask.to(input_ids.device)
        if attention_mask.shape != input_ids.shape:
            raise GenerationError(
                f"attention_mask has shape {tuple(attention_mask.shape)} but input_ids has {tuple(input_ids.shape)}; "
                "pass the mask the tokenizer returned with the ids"
            )
        if bool(attention_mask.all()):
            return None
        if bool((attention_mask[:, -1] == 0).any()):
            _warn_right_padding()
        return attention_mask


def _warn_right_padding() -> None:
    logger.warning(
        "A decoder-only model is generating from a right-padded batch; results will be wrong for the padded "
        "rows. Pad on the left: initialise the tokenizer with padding_side=\"left\"."
    )

