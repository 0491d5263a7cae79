"""Finding and reading a tokenizer's files: which backend to build, which special tokens and
settings apply. `Tokenizer.from_pretrained` turns the result into a `Tokenizer`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ..errors import TokenizerError
from ..hub import resolve_file
from .files import (
    LEGACY_FILES,
    SPECIAL_NAMES,
    Profile,
    build_legacy,
    local_files,
    profile_for,
    read_json,
    token_content,
    token_options,
)

HUB_KWARGS = ("token", "cache_dir", "local_files_only", "endpoint", "force_download")
# model_type of config.json -> tokenizer class, for old directories whose tokenizer_config.json names none
_CLASS_OF_MODEL_TYPE = {
    "bert": "BertTokenizer",
    "distilbert": "BertTokenizer",  # as the reference maps it
    "roberta": "RobertaTokenizer",
    "camembert": "CamembertTokenizer",
    "gpt2": "GPT2Tokenizer",
    "llama": "LlamaTokenizer",
    "mistral": "LlamaTokenizer",
}


@dataclass
class LoadedFiles:
    """Everything read from a tokenizer directory."""

    backend: Any  # tokenizers.Tokenizer
    config: dict[str, Any]
    special: dict[str, str | None]
    extra: list[str]
    tokenizer_class: str | None
    profile: Profile
    from_tokenizer_json: bool


def load_files(path_or_id: str | os.PathLike, revision: str | None, kwargs: dict[str, Any]) -> LoadedFiles:
    """Read tokenizer.json or the legacy files plus the configs; `kwargs` override the config."""
    from tokenizers import Tokenizer as Backend

    hub_kwargs = {k: kwargs.pop(k) for k in HUB_KWARGS if k in kwargs}

    def resolve(name: str) -> str | None:
        return resolve_file(path_or_id, name, revision=revision, optional=True, **hub_kwargs)

    config = read_json(resolve("tokenizer_config.json"))
    special_map = read_json(resolve("special_tokens_map.json"))
    template_path = resolve("chat_template.jinja")
    if template_path is not None and not config.get("chat_template"):
        with open(template_path, encoding="utf-8") as f:
            config["chat_template"] = f.read()
    if isinstance(config.get("chat_template"), list):  # [{"name": "default", "template": ...}, ...]
        named = {t["name"]: t["template"] for t in config["chat_template"]}
        config["chat_template"] = named.get("default", next(iter(named.values()), None))
    config.update({k: v for k, v in kwargs.items() if k not in SPECIAL_NAMES})
    tokenizer_class = config.get("tokenizer_class")
    if not tokenizer_class:
        model_type = read_json(resolve("config.json")).get("model_type")
        tokenizer_class = _CLASS_OF_MODEL_TYPE.get(model_type)
    profile = profile_for(tokenizer_class)

    special: dict[str, str | None] = dict(profile.specials)
    for source in (special_map, config, kwargs):
        for name in SPECIAL_NAMES:
            if name in source:
                special[name] = token_content(source[name])
    extra: list[str] = []
    for source in (special_map, config):
        for key in ("additional_special_tokens", "extra_special_tokens"):
            value = source.get(key)
            if isinstance(value, dict):  # v5 named extras: {"image_token": "<image>"}
                value = list(value.values())
            if value:
                extra = [token_content(v) for v in value]

    tokenizer_json = resolve("tokenizer.json")
    if tokenizer_json is not None:
        try:
            backend = Backend.from_file(tokenizer_json)
        except Exception as e:
            raise TokenizerError(
                f"cannot parse {tokenizer_json}: {e}; the file is damaged or not a `tokenizers` tokenizer.json "
                "(re-save it, or delete it to fall back to vocab.txt / vocab.json + merges.txt / *.model)"
            ) from e
    else:
        files = local_files(resolve, LEGACY_FILES)
        backend, legacy_extra = build_legacy(files, config, profile, special.get("unk_token"))
        if backend is None:
            raise TokenizerError(
                f"no tokenizer files in {os.fspath(path_or_id)!r}: looked for tokenizer.json, "
                + ", ".join(LEGACY_FILES[:-1])
                + f" and {LEGACY_FILES[-1]}"
            )
        extra = extra or legacy_extra
        add_config_tokens(backend, config)
    return LoadedFiles(backend, config, special, extra, tokenizer_class, profile, tokenizer_json is not None)


def add_config_tokens(backend: Any, config: dict[str, Any]) -> None:
    """Legacy files: add the tokens `added_tokens_decoder` lists that the vocabulary lacks."""
    from tokenizers import AddedToken

    entries = config.get("added_tokens_decoder") or {}
    for index, value in sorted(entries.items(), key=lambda kv: int(kv[0])):
        content = token_content(value)
        if backend.token_to_id(content) is not None:
            continue
        opts = token_options(value)
        special = opts.pop("special", False)
        token = AddedToken(content, **opts, special=special)
        (backend.add_special_tokens if special else backend.add_tokens)([token])
        if backend.token_to_id(content) != int(index):
            raise TokenizerError(
                f"added token {content!r} should have id {index} but the vocabulary gives it "
                f"{backend.token_to_id(content)}; the tokenizer files do not belong together"
            )
