"""Tokenizer over the `tokenizers` library (the only engine: no slow Python tokenizers).

`AutoTokenizer.from_pretrained(dir_or_id)` reads `tokenizer.json` when there is one, else builds
the same fast tokenizer from the legacy files (`vocab.txt`, `vocab.json` + `merges.txt`, a
sentencepiece `.model`), and reads `tokenizer_config.json` / `special_tokens_map.json` as written
by old and current reference versions. Calls, keys and outputs follow the reference library.
"""

from __future__ import annotations

import copy
import logging
import os
import threading
from collections.abc import Sequence
from typing import Any

from .errors import TokenizerError
from .hub.mixin import PushToHubMixin
from .tokenization.chat import render_chat
from .tokenization.encoding import (
    BatchEncoding,
    as_list,
    clean_up_tokenization,
    is_pair_list,
    pad_batch,
    to_tensors,
)
from .tokenization.files import SPECIAL_NAMES, VERY_LARGE_INTEGER, profile_for, token_content, token_options
from .tokenization.loading import BOS_EOS_FAMILIES, LoadedFiles, load_files
from .tokenization.saving import save_tokenizer
from .tokenization.special import SpecialTokensMixin

__all__ = ["BatchEncoding", "Tokenizer"]

logger = logging.getLogger(__name__)

_TRUNCATION = {
    True: "longest_first",
    "longest_first": "longest_first",
    "only_first": "only_first",
    "only_second": "only_second",
}
_PADDING = {True: "longest", "longest": "longest", "max_length": "max_length"}


class Tokenizer(SpecialTokensMixin, PushToHubMixin):
    """A fast tokenizer with the reference library's call shape.

    Build one with `AutoTokenizer.from_pretrained` (or `Tokenizer.from_pretrained`); the
    `tokenizers.Tokenizer` doing the work is `backend_tokenizer`.
    """

    is_fast = True

    def __init__(
        self,
        backend: Any,
        *,
        config: dict[str, Any] | None = None,
        special_tokens: dict[str, str | None] | None = None,
        extra_special_tokens: list[str] | None = None,
        tokenizer_class: str | None = None,
        name_or_path: str = "",
    ):
        from tokenizers import AddedToken

        self._tokenizer = backend
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        self.config = dict(config or {})
        profile = profile_for(tokenizer_class)
        self.tokenizer_class = tokenizer_class or "PreTrainedTokenizerFast"
        self.name_or_path = name_or_path
        self.model_input_names = list(self.config.get("model_input_names") or profile.model_input_names)
        self.model_max_length = int(self.config.get("model_max_length") or VERY_LARGE_INTEGER)
        self.padding_side = self.config.get("padding_side") or profile.padding_side
        self.truncation_side = self.config.get("truncation_side") or "right"
        self.clean_up_tokenization_spaces = bool(self.config.get("clean_up_tokenization_spaces", False))
        self.chat_template = self.config.get("chat_template")
        self._special: dict[str, str | None] = dict.fromkeys(SPECIAL_NAMES)
        self._special.update(special_tokens or {})
        self._extra: list[str] = list(dict.fromkeys(extra_special_tokens or []))
        self._warned_long = False
        self._lock = threading.Lock()

        # Every special token is an added token of the backend, so it is never split.
        present = {t.content for t in self._tokenizer.get_added_tokens_decoder().values()}
        options = {
            token_content(v): token_options(v)
            for v in (self.config.get("added_tokens_decoder") or {}).values()
        }
        for name in SPECIAL_NAMES:
            options.setdefault(self._special[name], token_options(self.config.get(name)))
        if profile.mask_options and not options.get(self._special["mask_token"]):
            options[self._special["mask_token"]] = dict(profile.mask_options)
        wanted = [t for t in [*self._special.values(), *self._extra] if t is not None and t not in present]
        if wanted:
            tokens = []
            for t in dict.fromkeys(wanted):
                opts = {"normalized": False, **options.get(t, {}), "special": True}
                tokens.append(AddedToken(t, **opts))
            self._tokenizer.add_special_tokens(tokens)

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_pretrained(
        cls, path_or_id: str | os.PathLike, *, revision: str | None = None, **kwargs: Any
    ) -> Tokenizer:
        """Load from a model directory or hub id. Keyword arguments override tokenizer_config.json
        (`padding_side="left"`, `model_max_length=512`, `pad_token="<pad>"`, `add_prefix_space=True`,
        `do_lower_case=False` ...); unknown ones raise TypeError."""
        loaded = load_files(path_or_id, revision, kwargs, **cls._entry_point())
        tok = cls.__new__(cls)
        tok._init_loaded(loaded, os.fspath(path_or_id))
        return tok

    @classmethod
    def _entry_point(cls) -> dict[str, Any]:
        """What a named entry point (`BertTokenizer` ...) asks of the loader; nothing here."""
        return {}

    def _init_loaded(self, loaded: LoadedFiles, name_or_path: str) -> None:
        Tokenizer.__init__(
            self,
            loaded.backend,
            config=loaded.config,
            special_tokens=loaded.special,
            extra_special_tokens=loaded.extra,
            tokenizer_class=loaded.tokenizer_class,
            name_or_path=name_or_path,
        )
        config, family = loaded.config, loaded.profile.family
        if family in BOS_EOS_FAMILIES and ("add_bos_token" in config or "add_eos_token" in config):
            self._bos_eos_post_processor(bool(config.get("add_bos_token")), bool(config.get("add_eos_token")))
        elif not loaded.from_tokenizer_json and family in ("camembert", "xlmroberta"):
            self._camembert_post_processor()
        elif loaded.backend.post_processor is None:
            self._bos_eos_post_processor(False, False)
        self._tokenizer.encode_special_tokens = bool(config.get("split_special_tokens", False))

    def _bos_eos_post_processor(self, add_bos: bool, add_eos: bool) -> None:
        """`[bos] A [eos]` / `[bos] A [eos] [bos] B [eos]`, second text with type id 1."""
        from tokenizers import processors

        bos, eos = self.bos_token if add_bos else None, self.eos_token if add_eos else None
        single = " ".join([f"{bos}:0"] * bool(bos) + ["$A:0"] + [f"{eos}:0"] * bool(eos))
        pair = " ".join([single] + [f"{bos}:1"] * bool(bos) + ["$B:1"] + [f"{eos}:1"] * bool(eos))
        specials = [(t, self.convert_tokens_to_ids(t)) for t in dict.fromkeys(x for x in (bos, eos) if x)]
        self._tokenizer.post_processor = processors.TemplateProcessing(
            single=single, pair=pair, special_tokens=specials
        )

    def _camembert_post_processor(self) -> None:
        from tokenizers import processors

        bos, eos = self.bos_token, self.eos_token
        self._tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A {eos}",
            pair=f"{bos} $A {eos} {eos} $B {eos}",
            special_tokens=[(bos, self.bos_token_id), (eos, self.eos_token_id)],
        )

    # ------------------------------------------------------------------ vocabulary

    @property
    def backend_tokenizer(self) -> Any:
        """The `tokenizers.Tokenizer` doing the work."""
        return self._tokenizer

    def __len__(self) -> int:
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    @property
    def vocab_size(self) -> int:
        """Size of the base vocabulary, without added tokens (the reference's meaning)."""
        return self._tokenizer.get_vocab_size(with_added_tokens=False)

    def get_vocab(self) -> dict[str, int]:
        """token -> id for the whole vocabulary, added tokens included."""
        return self._tokenizer.get_vocab(with_added_tokens=True)

    @property
    def vocab(self) -> dict[str, int]:
        """The same dict as `get_vocab()` (a fresh copy each time, as in the reference)."""
        return self.get_vocab()

    def get_added_vocab(self) -> dict[str, int]:
        return {t.content: i for i, t in sorted(self._tokenizer.get_added_tokens_decoder().items())}

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> int | list[int]:
        if isinstance(tokens, str):
            index = self._tokenizer.token_to_id(tokens)
            return index if index is not None else self.unk_token_id
        return [self.convert_tokens_to_ids(t) for t in tokens]

    def convert_ids_to_tokens(
        self, ids: int | Sequence[int], skip_special_tokens: bool = False
    ) -> str | list[str]:
        if isinstance(ids, int):
            return self._tokenizer.id_to_token(ids)
        special = set(self.all_special_ids) if skip_special_tokens else set()
        return [self._tokenizer.id_to_token(int(i)) for i in as_list(ids) if int(i) not in special]

    def __repr__(self) -> str:
        return (
            f"Tokenizer(name_or_path={self.name_or_path!r}, class={self.tokenizer_class}, "
            f"vocab_size={len(self)}, padding_side={self.padding_side!r}, special={self.special_tokens_map})"
        )

    # ------------------------------------------------------------------ encoding

    def __call__(
        self,
        text: str | Sequence[str] | None = None,
        text_pair: str | Sequence[str] | None = None,
        *,
        add_special_tokens: bool = True,
        padding: bool | str = False,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        stride: int = 0,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_tensors: str | None = None,
        return_token_type_ids: bool | None = None,
        return_attention_mask: bool | None = None,
        return_special_tokens_mask: bool = False,
        return_offsets_mapping: bool = False,
        return_length: bool = False,
        return_overflowing_tokens: bool = False,
        is_split_into_words: bool = False,
        **unused: Any,
    ) -> BatchEncoding:
        """Tokenize one text, a pair, or a batch of texts/pairs (see the module docstring).

        With `is_split_into_words=True` a text is a list of words. With
        `return_overflowing_tokens=True` (and truncation) the cut-off parts come back as extra rows,
        `stride` tokens overlapping, and `overflow_to_sample_mapping` says which input each row is from.
        """
        if text is None:
            raise TokenizerError("nothing to tokenize: pass text (a string or a list of strings)")
        one = str if not is_split_into_words else (list, tuple)
        batched = not isinstance(text, one) or (
            is_split_into_words and bool(text) and isinstance(text[0], (list, tuple))
        )
        texts = [text] if not batched else list(text)
        if not batched and isinstance(text_pair, (str, list, tuple)) and not text_pair:
            text_pair = None  # as the reference: an empty pair for one text means no pair (a batch keeps it)
        if text_pair is None and texts and all(isinstance(t, tuple) and len(t) == 2 for t in texts):
            texts, text_pair = [t[0] for t in texts], [t[1] for t in texts]  # a batch of (text, pair)
        elif text_pair is None and not is_split_into_words and texts and all(is_pair_list(t) for t in texts):
            texts, text_pair = [t[0] for t in texts], [t[1] for t in texts]
        if text_pair is None:
            inputs: list[Any] = texts
        else:
            pairs = [text_pair] if not batched else list(text_pair)
            if len(pairs) != len(texts):
                raise TokenizerError(
                    f"got {len(texts)} texts but {len(pairs)} text_pair entries; they must match"
                )
            inputs = list(zip(texts, pairs))
        for item in texts:
            if not isinstance(item, one):
                what = (
                    "a list of words (or a batch of them)"
                    if is_split_into_words
                    else "a string or a list of strings"
                )
                raise TokenizerError(f"text must be {what}, got {type(item).__name__}")

        pad_strategy, trunc_strategy, max_length = self._strategies(padding, truncation, max_length)
        side = padding_side or self.padding_side
        if side not in ("left", "right"):
            raise TokenizerError(f"padding_side must be 'left' or 'right', got {side!r}")
        backend = self._tokenizer
        with self._lock:  # padding/truncation are settings of the shared backend: one call at a time
            try:
                if trunc_strategy is not None:
                    backend.enable_truncation(
                        max_length, stride=stride, strategy=trunc_strategy, direction=self.truncation_side
                    )
                if pad_strategy is not None:
                    backend.enable_padding(
                        direction=side,
                        pad_id=self.pad_token_id,
                        pad_type_id=self.pad_token_type_id,
                        pad_token=self.pad_token,
                        length=max_length if pad_strategy == "max_length" else None,
                        pad_to_multiple_of=pad_to_multiple_of,
                    )
                encodings = backend.encode_batch(
                    inputs, add_special_tokens=add_special_tokens, is_pretokenized=is_split_into_words
                )
            except Exception as e:
                raise TokenizerError(f"tokenization failed: {e}") from e
            finally:
                backend.no_truncation()
                backend.no_padding()

        sample_of_row = list(range(len(encodings)))
        if return_overflowing_tokens:
            rows = [[e, *e.overflowing] for e in encodings]
            sample_of_row = [i for i, group in enumerate(rows) for _ in group]
            encodings = [e for group in rows for e in group]
        if trunc_strategy is None and not self._warned_long:
            longest = max((len(e.ids) for e in encodings), default=0)
            if longest > self.model_max_length:
                self._warned_long = True
                logger.warning(
                    "Token indices sequence length is longer than the specified maximum sequence length for this "
                    "model (%d > %d). Running this sequence through the model will result in indexing errors; "
                    "pass truncation=True to cut it.",
                    longest,
                    self.model_max_length,
                )

        names = self.model_input_names
        want_types = "token_type_ids" in names if return_token_type_ids is None else return_token_type_ids
        want_mask = "attention_mask" in names if return_attention_mask is None else return_attention_mask
        data: dict[str, list] = {"input_ids": [e.ids for e in encodings]}
        if want_types:
            data["token_type_ids"] = [e.type_ids for e in encodings]
        if want_mask:
            data["attention_mask"] = [e.attention_mask for e in encodings]
        if return_special_tokens_mask:
            data["special_tokens_mask"] = [e.special_tokens_mask for e in encodings]
        if return_offsets_mapping:
            data["offset_mapping"] = [list(e.offsets) for e in encodings]
        if return_length:
            data["length"] = [len(e.ids) for e in encodings]
        if return_overflowing_tokens:
            data["overflow_to_sample_mapping"] = sample_of_row
        if return_tensors is not None:
            data = to_tensors(data, return_tensors)
        elif not batched and not return_overflowing_tokens:  # the reference keeps 1-D values (length) as is
            data = {k: v[0] if v and isinstance(v[0], list) else v for k, v in data.items()}
        return BatchEncoding(data, encodings)

    def _strategies(
        self, padding: Any, truncation: Any, max_length: int | None
    ) -> tuple[str | None, str | None, int | None]:
        """Resolve padding/truncation/max_length the way the reference does."""
        if padding in (False, None, "do_not_pad"):
            pad = None
        elif padding in _PADDING:
            pad = _PADDING[padding]
        else:
            raise TokenizerError(f"padding={padding!r} is not one of False, True, 'longest', 'max_length'")
        if truncation is None and max_length is not None and pad is None:
            truncation = "longest_first"  # the reference truncates when only max_length is given
        if truncation in (False, None, "do_not_truncate"):
            trunc = None
        elif truncation in _TRUNCATION:
            trunc = _TRUNCATION[truncation]
        else:
            raise TokenizerError(
                f"truncation={truncation!r} is not one of False, True, 'longest_first', 'only_first', 'only_second'"
            )
        limit = self.model_max_length if self.model_max_length < VERY_LARGE_INTEGER else None
        if max_length is None:
            if pad == "max_length":
                if limit is None:
                    logger.warning(
                        "padding='max_length' without max_length and no model_max_length: not padding"
                    )
                    pad = None
                max_length = limit
            if trunc is not None:
                if limit is None:
                    trunc = None
                max_length = limit
        if pad is not None and self.pad_token is None:
            raise TokenizerError(
                "padding needs a pad token and this tokenizer has none; set one first, e.g. "
                "`tokenizer.pad_token = tokenizer.eos_token`, or call with padding=False"
            )
        return pad, trunc, max_length

    def pad(
        self,
        encoded_inputs: Any,
        padding: bool | str = True,
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_attention_mask: bool | None = None,
        return_tensors: str | None = None,
    ) -> BatchEncoding:
        """Pad encodings made earlier (a dict of lists, or a list of dicts, as collators hold them)."""
        if isinstance(encoded_inputs, (list, tuple)):
            rows = [dict(r) for r in encoded_inputs]
            batched = True
        else:
            first = as_list(encoded_inputs["input_ids"])
            batched = bool(first) and isinstance(first[0], list)
            keys = list(encoded_inputs)
            columns = [as_list(encoded_inputs[k]) for k in keys]
            rows = (
                [dict(zip(keys, vals)) for vals in zip(*columns)] if batched else [dict(zip(keys, columns))]
            )
        strategy, _, max_length = self._strategies(padding, False, max_length)
        want_mask = (
            "attention_mask" in self.model_input_names
            if return_attention_mask is None
            else return_attention_mask
        )
        data = pad_batch(
            rows,
            length=(max_length if strategy == "max_length" else None) if strategy else 0,
            pad_to_multiple_of=pad_to_multiple_of if strategy else None,
            side=padding_side or self.padding_side,
            pad_id=self.pad_token_id if strategy else 0,
            pad_type_id=self.pad_token_type_id,
            attention_mask=want_mask,
        )
        if return_tensors is not None:
            return BatchEncoding(to_tensors(data, return_tensors))
        return BatchEncoding(data if batched else {k: v[0] for k, v in data.items()})

    def encode(
        self,
        text: str,
        text_pair: str | None = None,
        *,
        add_special_tokens: bool = True,
        return_tensors: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """Token ids of one text (or pair)."""
        enc = self(
            text, text_pair, add_special_tokens=add_special_tokens, return_tensors=return_tensors, **kwargs
        )
        return enc["input_ids"]

    def tokenize(
        self, text: str, pair: str | None = None, add_special_tokens: bool = False, **kwargs: Any
    ) -> list[str]:
        """Token strings of `text` (no special tokens unless asked)."""
        return self(text, pair, add_special_tokens=add_special_tokens, **kwargs).tokens()

    # ------------------------------------------------------------------ decoding

    def decode(
        self,
        token_ids: Any,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
        **unused: Any,
    ) -> str:
        """Text of one sequence of ids (list, tensor or array)."""
        ids = as_list(token_ids)
        if isinstance(ids, int):
            ids = [ids]
        if ids and isinstance(ids[0], list):
            raise TokenizerError("decode takes one sequence; use batch_decode for a batch")
        text = self._tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)
        clean = (
            self.clean_up_tokenization_spaces
            if clean_up_tokenization_spaces is None
            else clean_up_tokenization_spaces
        )
        # Like the reference: the clean-up is meant for WordPiece and would corrupt BPE text, so BPE skips it.
        if clean and type(self._tokenizer.model).__name__ != "BPE":
            text = clean_up_tokenization(text)
        return text

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        """Join token strings back into text with the tokenizer's decoder."""
        decoder = self._tokenizer.decoder
        return decoder.decode(tokens) if decoder is not None else " ".join(tokens)

    def batch_decode(
        self,
        sequences: Any,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
        **kwargs: Any,
    ) -> list[str]:
        return [self.decode(s, skip_special_tokens, clean_up_tokenization_spaces) for s in as_list(sequences)]

    # ------------------------------------------------------------------ chat

    def apply_chat_template(
        self,
        conversation: list[dict[str, Any]] | list[list[dict[str, Any]]],
        tools: list | None = None,
        documents: list | None = None,
        chat_template: str | None = None,
        add_generation_prompt: bool = False,
        continue_final_message: bool = False,
        tokenize: bool = True,
        padding: bool | str = False,
        truncation: bool = False,
        max_length: int | None = None,
        return_tensors: str | None = None,
        return_dict: bool = True,
        tokenizer_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Render the Jinja `chat_template` (sandboxed) and, with `tokenize=True`, tokenize the
        result without adding special tokens (the template writes them). As the reference: with
        `return_dict=True` (default) a BatchEncoding, else the input ids; a string if not tokenizing."""
        template = chat_template or self.chat_template
        if isinstance(template, dict):
            template = template.get("default")
        if not template:
            raise TokenizerError(
                "this tokenizer has no chat_template; pass chat_template=... or set tokenizer.chat_template"
            )
        if not conversation:
            raise TokenizerError("cannot apply a chat template to an empty conversation")
        batched = isinstance(conversation[0], (list, tuple))
        conversations = list(conversation) if batched else [conversation]
        if continue_final_message and add_generation_prompt:
            raise TokenizerError("continue_final_message and add_generation_prompt cannot both be set")
        variables = {**self.special_tokens_map, **kwargs}
        rendered = render_chat(
            template,
            conversations,
            add_generation_prompt=add_generation_prompt,
            continue_final_message=continue_final_message,
            tools=tools,
            documents=documents,
            **variables,
        )
        rendered_out: Any = rendered if batched else rendered[0]
        if not tokenize:
            return rendered_out
        out = self(
            rendered_out,
            padding=padding,
            truncation=truncation,
            max_length=max_length,
            add_special_tokens=False,
            return_tensors=return_tensors,
            **(tokenizer_kwargs or {}),
        )
        return out if return_dict else out["input_ids"]

    # ------------------------------------------------------------------ saving

    def save_pretrained(self, save_directory: str | os.PathLike, **unused: Any) -> tuple[str, ...]:
        """Write tokenizer.json, tokenizer_config.json, special_tokens_map.json (and
        chat_template.jinja) in the layout the reference library loads; returns the paths."""
        return save_tokenizer(self, save_directory)

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__dict__["_lock"] = threading.Lock()

    def __deepcopy__(self, memo: dict) -> Tokenizer:
        new = object.__new__(type(self))
        new.__setstate__(copy.deepcopy(self.__getstate__(), memo))
        return new
