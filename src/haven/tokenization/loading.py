"""Finding and reading a tokenizer's files: which backend to build, which special tokens and
settings apply. `Tokenizer.from_pretrained` turns the result into a `Tokenizer`."""

from __future__ import annotations

import os
from collections.abc import Callable
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
from .options import HUB_KWARGS, apply_backend_options, check_options

# model_type of config.json -> tokenizer class, for old directories whose tokenizer_config.json names none
_CLASS_OF_MODEL_TYPE = {
    "bert": "BertTokenizer",
    "distilbert": "BertTokenizer",  # as the reference maps it
    "roberta": "RobertaTokenizer",
    "camembert": "CamembertTokenizer",
    "xlm-roberta": "XLMRobertaTokenizer",
    "gpt2": "GPT2Tokenizer",
    "llama": "LlamaTokenizer",
    "mistral": "LlamaTokenizer",
}

# Families whose BOS/EOS placement follows add_bos_token / add_eos_token.
BOS_EOS_FAMILIES = ("llama", "gpt2", "generic")


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


def load_files(
    path_or_id: str | os.PathLike,
    revision: str | None,
    kwargs: dict[str, Any],
    *,
    tokenizer_class: str | None = None,
    json_only: bool = False,
) -> LoadedFiles:
    """Read tokenizer.json or the legacy files plus the configs of a directory or hub id;
    `kwargs` override the config. `tokenizer_class` (a named entry point such as
    `BertTokenizer`) wins over the one the files name; `json_only` reads tokenizer.json only.
    The options are checked by `read_files`, before any file is resolved."""
    hub_kwargs = {k: kwargs.pop(k) for k in HUB_KWARGS if k in kwargs}

    def resolve(name: str) -> str | None:
        return resolve_file(path_or_id, name, revision=revision, optional=True, **hub_kwargs)

    return read_files(
        resolve, kwargs, os.fspath(path_or_id), tokenizer_class=tokenizer_class, json_only=json_only
    )


def read_files(
    resolve: Callable[[str], str | None],
    kwargs: dict[str, Any],
    where: str,
    *,
    tokenizer_class: str | None = None,
    json_only: bool = False,
) -> LoadedFiles:
    """`load_files` over any `resolve(file name) -> local path or None` (a directory, a hub
    repository, or the files given to a named tokenizer's constructor)."""
    from tokenizers import Tokenizer as Backend

    check_options(kwargs)
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
    if tokenizer_class:
        config["tokenizer_class"] = tokenizer_class
    tokenizer_class = config.get("tokenizer_class")
    if not tokenizer_class:
        model_type = read_json(resolve("config.json")).get("model_type")
        tokenizer_class = _CLASS_OF_MODEL_TYPE.get(model_type)
    profile = profile_for(tokenizer_class)
    if profile.family not in BOS_EOS_FAMILIES and ("add_bos_token" in kwargs or "add_eos_token" in kwargs):
        raise TokenizerError(
            f"add_bos_token / add_eos_token apply to GPT-2, Llama and generic tokenizers, not to {tokenizer_class}, "
            "whose template places its special tokens; drop them"
        )

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
    elif json_only:
        raise TokenizerError(
            f"no tokenizer.json in {where!r}: PreTrainedTokenizerFast reads only that file. "
            "Use AutoTokenizer (or the model's tokenizer class) to build one from vocab files"
        )
    else:
        files = local_files(resolve, LEGACY_FILES)
        backend, legacy_extra = build_legacy(files, config, profile, special.get("unk_token"))
        if backend is None:
            raise TokenizerError(
                f"no tokenizer files in {where!r}: looked for tokenizer.json, "
                + ", ".join(LEGACY_FILES[:-1])
                + f" and {LEGACY_FILES[-1]}"
            )
        extra = extra or legacy_extra
        add_config_tokens(backend, config)
    backend = apply_backend_options(backend, kwargs, config)
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
