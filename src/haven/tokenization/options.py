"""Keyword arguments of `Tokenizer.from_pretrained`: which are known, and applying the ones that
change the backend (prefix space, offsets trimming, BERT normalisation) to a `tokenizers.Tokenizer`.

An option either changes what the tokenizer does, as it does in the reference library, or is
refused: unknown names raise TypeError, options the tokenizer's pipeline has no place for raise
`TokenizerError`.
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import TokenizerError
from .files import SPECIAL_NAMES

HUB_KWARGS = ("token", "cache_dir", "local_files_only", "endpoint", "force_download")

# Settings read from tokenizer_config.json that a keyword argument may override.
CONFIG_OPTIONS = (
    *SPECIAL_NAMES,
    "additional_special_tokens",
    "extra_special_tokens",
    "model_max_length",
    "padding_side",
    "truncation_side",
    "clean_up_tokenization_spaces",
    "chat_template",
    "model_input_names",
    "add_bos_token",
    "add_eos_token",
    "split_special_tokens",
)
# Options that rebuild part of the backend (see `apply_backend_options`).
BACKEND_OPTIONS = (
    "add_prefix_space",
    "trim_offsets",
    "legacy",
    "do_lower_case",
    "strip_accents",
    "tokenize_chinese_chars",
)


def check_options(kwargs: dict[str, Any]) -> None:
    """Refuse what `from_pretrained` cannot honour: unknown names (TypeError) and a few known ones."""
    if kwargs.get("trust_remote_code"):
        raise TokenizerError(
            "trust_remote_code=True is refused: Haven never runs code from a repository. "
            "Load a tokenizer saved as tokenizer.json (or vocab files) instead"
        )
    # use_fast: True or False, the one tokenizer, as in transformers 5 (which also has no slow one)
    if "use_auth_token" in kwargs:
        raise TypeError("use_auth_token= is the old name; pass token=... instead")
    kwargs.pop("trust_remote_code", None)
    kwargs.pop("use_fast", None)
    known = {*HUB_KWARGS, *CONFIG_OPTIONS, *BACKEND_OPTIONS}
    unknown = sorted(k for k in kwargs if k not in known)
    if unknown:
        raise TypeError(
            f"Tokenizer.from_pretrained() got unexpected keyword arguments: {', '.join(unknown)}. "
            f"It accepts revision, {', '.join(HUB_KWARGS)}, the special tokens ({', '.join(SPECIAL_NAMES)}) "
            f"and {', '.join(k for k in (*CONFIG_OPTIONS, *BACKEND_OPTIONS) if k not in SPECIAL_NAMES)}"
        )


def apply_backend_options(backend: Any, options: dict[str, Any], config: dict[str, Any]) -> Any:
    """The backend with `options` (a subset of BACKEND_OPTIONS) applied, as the reference applies
    them; an option the backend has no component for raises TokenizerError."""
    from tokenizers import Tokenizer as Backend

    options = {k: v for k, v in options.items() if k in BACKEND_OPTIONS}
    if not options:
        return backend
    data = json.loads(backend.to_str())
    parts = {
        name: list(_components(data.get(name)))
        for name in ("normalizer", "pre_tokenizer", "decoder", "post_processor")
    }
    for name, value in options.items():
        if not _APPLY[name](parts, value, config):
            raise TokenizerError(f"{name}={value!r} does not apply to this tokenizer: {_WHY[name]}")
    if "add_prefix_space" in options:
        data["decoder"] = _prefix_strip(data.get("decoder"), bool(options["add_prefix_space"]))
    return Backend.from_str(json.dumps(data))


def _components(node: Any):
    """Every component dict in a normalizer / pre-tokenizer / decoder / post-processor tree."""
    if isinstance(node, dict):
        if "type" in node:
            yield node
        for value in node.values():
            if isinstance(value, (dict, list)):
                yield from _components(value)
    elif isinstance(node, list):
        for item in node:
            yield from _components(item)


def _of(parts: dict[str, list], where: tuple[str, ...], *types: str) -> list[dict]:
    return [c for name in where for c in parts[name] if c["type"] in types]


def _add_prefix_space(parts: dict[str, list], value: Any, config: dict[str, Any]) -> bool:
    value = bool(value)
    byte_level = _of(parts, ("pre_tokenizer", "post_processor"), "ByteLevel", "RobertaProcessing")
    for c in byte_level:
        c["add_prefix_space"] = value
    metaspace = _of(parts, ("pre_tokenizer", "decoder"), "Metaspace")
    for c in metaspace:
        if not value:
            c["prepend_scheme"] = "never"
        elif c.get("prepend_scheme") == "never":
            c["prepend_scheme"] = "first" if config.get("legacy") is False else "always"
    # Splitting on whitespace drops a leading space anyway: the option holds trivially (BERT).
    splits = _of(parts, ("pre_tokenizer",), "BertPreTokenizer", "Whitespace", "WhitespaceSplit")
    return bool(byte_level or metaspace or splits)


def _trim_offsets(parts: dict[str, list], value: Any, config: dict[str, Any]) -> bool:
    found = _of(parts, ("pre_tokenizer", "post_processor"), "ByteLevel", "RobertaProcessing")
    for c in found:
        c["trim_offsets"] = bool(value)
    return bool(found)


def _legacy(parts: dict[str, list], value: Any, config: dict[str, Any]) -> bool:
    found = _of(parts, ("pre_tokenizer", "decoder"), "Metaspace")
    for c in found:
        if c.get("prepend_scheme") != "never":
            c["prepend_scheme"] = "always" if value else "first"
    return bool(found)


def _bert_normalizer(key: str):
    def apply(parts: dict[str, list], value: Any, config: dict[str, Any]) -> bool:
        found = _of(parts, ("normalizer",), "BertNormalizer")
        for c in found:
            c[key] = value
        return bool(found)

    return apply


_APPLY = {
    "add_prefix_space": _add_prefix_space,
    "trim_offsets": _trim_offsets,
    "legacy": _legacy,
    "do_lower_case": _bert_normalizer("lowercase"),
    "strip_accents": _bert_normalizer("strip_accents"),
    "tokenize_chinese_chars": _bert_normalizer("handle_chinese_chars"),
}
_WHY = {
    "add_prefix_space": "its pre-tokenizer is neither byte-level, Metaspace nor a whitespace split",
    "trim_offsets": "it has no byte-level pre-tokenizer or RoBERTa post-processor",
    "legacy": "it has no Metaspace (sentencepiece) pre-tokenizer",
    "do_lower_case": "it has no BERT normalizer (lower-casing is part of the vocabulary's training)",
    "strip_accents": "it has no BERT normalizer",
    "tokenize_chinese_chars": "it has no BERT normalizer",
}


def _prefix_strip(decoder: Any, add_prefix_space: bool) -> Any:
    """A sentencepiece-style decoder (Replace "▁" -> " " ...) strips the prefix space it decodes
    only when one was added: drop the Strip step without it, add one with it."""
    if not isinstance(decoder, dict) or decoder.get("type") != "Sequence":
        return decoder
    steps = decoder.get("decoders") or []
    strip = {"type": "Strip", "content": " ", "start": 1, "stop": 0}
    is_strip = [s.get("type") == "Strip" and s.get("content") == " " and s.get("start") == 1 for s in steps]
    replaces_space = any(s.get("type") == "Replace" and s.get("content") == " " for s in steps)
    if not add_prefix_space:
        steps = [s for s, drop in zip(steps, is_strip) if not drop]
    elif replaces_space and not any(is_strip):
        steps = [*steps, strip]
    return {**decoder, "decoders": steps}
