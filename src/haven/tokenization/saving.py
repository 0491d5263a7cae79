"""`save_pretrained` for tokenizers: the files the reference library writes and loads back."""

from __future__ import annotations

import json
import os
from typing import Any

from .files import SPECIAL_NAMES

# Config keys written from the tokenizer's state; every other key of tokenizer_config.json is kept.
_OWN_KEYS = {
    *SPECIAL_NAMES,
    "added_tokens_decoder",
    "additional_special_tokens",
    "extra_special_tokens",
    "model_max_length",
    "padding_side",
    "truncation_side",
    "chat_template",
    "tokenizer_class",
    "model_input_names",
    "clean_up_tokenization_spaces",
}
# Loading details that must not travel with the files.
_TRANSIENT_KEYS = {
    "name_or_path",
    "is_local",
    "local_files_only",
    "token",
    "revision",
    "cache_dir",
    "tokenizer_file",
    "special_tokens_map_file",
    "vocab_file",
    "merges_file",
    "use_fast",
    "trust_remote_code",
    "force_download",
    "subfolder",
}


def _dump(data: dict[str, Any], path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True, ensure_ascii=False)
        f.write("\n")


def save_tokenizer(tok: Any, save_directory: str | os.PathLike) -> tuple[str, ...]:
    """Write tokenizer.json, tokenizer_config.json, special_tokens_map.json and, when there is a
    chat template, chat_template.jinja (where current reference versions keep it)."""
    os.makedirs(save_directory, exist_ok=True)

    def path(name: str) -> str:
        return os.path.join(save_directory, name)

    tok.backend_tokenizer.save(path("tokenizer.json"))
    config = {
        k: v
        for k, v in tok.config.items()
        if k not in _OWN_KEYS and k not in _TRANSIENT_KEYS and not k.startswith("_")
    }
    config.update({name: getattr(tok, name) for name in SPECIAL_NAMES})
    if tok.additional_special_tokens:
        config["extra_special_tokens"] = list(tok.additional_special_tokens)
    config["added_tokens_decoder"] = {
        str(i): {
            "content": t.content,
            "lstrip": t.lstrip,
            "normalized": t.normalized,
            "rstrip": t.rstrip,
            "single_word": t.single_word,
            "special": t.special,
        }
        for i, t in sorted(tok.backend_tokenizer.get_added_tokens_decoder().items())
    }
    config.update(
        model_max_length=tok.model_max_length,
        padding_side=tok.padding_side,
        truncation_side=tok.truncation_side,
        clean_up_tokenization_spaces=tok.clean_up_tokenization_spaces,
        model_input_names=list(tok.model_input_names),
        tokenizer_class=tok.tokenizer_class,
    )
    _dump(config, path("tokenizer_config.json"))
    _dump(tok.special_tokens_map, path("special_tokens_map.json"))
    written = [path("tokenizer.json"), path("tokenizer_config.json"), path("special_tokens_map.json")]
    if isinstance(tok.chat_template, str) and tok.chat_template:
        with open(path("chat_template.jinja"), "w", encoding="utf-8") as f:
            f.write(tok.chat_template)
        written.append(path("chat_template.jinja"))
    return tuple(written)
