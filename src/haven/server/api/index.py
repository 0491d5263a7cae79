"""The repository index: what listing and search read, refreshed after every commit or push.

From the head of `main`: the commit sha and date, the model card's YAML front matter
(`cardData`: tags, library_name, pipeline_tag, license, language, datasets, base_model),
`config.json` (model_type, architectures -> pipeline_tag when the card names none), and the
safetensors headers (parameter counts per dtype).
"""

from __future__ import annotations

import json
import logging
import struct

import yaml
from sqlalchemy.orm import Session

from ..db import Repo, utcnow

log = logging.getLogger("haven.server.index")

# architecture suffix -> pipeline tag, most specific first
ARCH_TASKS = [
    ("ForMaskedLM", "fill-mask"),
    ("ForPreTraining", "fill-mask"),
    ("ForCausalLM", "text-generation"),
    ("LMHeadModel", "text-generation"),
    ("ForSequenceClassification", "text-classification"),
    ("ForTokenClassification", "token-classification"),
    ("ForQuestionAnswering", "question-answering"),
    ("ForMultipleChoice", "multiple-choice"),
    ("ForConditionalGeneration", "text2text-generation"),
    ("ForImageClassification", "image-classification"),
    ("Model", "feature-extraction"),
]
CONFIG_KEYS = ("architectures", "model_type", "tokenizer_config")
MAX_CONFIG_BYTES = 1 << 20
MAX_HEADER_BYTES = 100 << 20


def parse_front_matter(text: str) -> dict | None:
    """The YAML mapping between leading `---` lines of a model card, or None.

    Raises ValueError when the block is present but is not a YAML mapping."""
    lines = text.lstrip("\ufeff").splitlines()
    if not lines or lines[0].strip() != "---":
        return None
    for i in range(1, len(lines)):
        if lines[i].strip() == "---":
            try:
                data = yaml.safe_load("\n".join(lines[1:i]))
            except yaml.YAMLError as err:
                raise ValueError(f"invalid YAML in the model card's metadata: {err}") from err
            if data is None:
                return {}
            if not isinstance(data, dict):
                raise ValueError("the model card's metadata must be a YAML mapping (key: value)")
            return data
    return None


def pipeline_from_architectures(architectures: list | None) -> str | None:
    for arch in architectures or []:
        if not isinstance(arch, str):
            continue
        for suffix, task in ARCH_TASKS:
            if arch.endswith(suffix):
                return task
    return None


def _as_list(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str | int | float):
        return [str(value)]
    if isinstance(value, list):
        return [str(v) for v in value if isinstance(v, str | int | float)]
    return []


def build_tags(
    card: dict, config: dict | None, files: list[str], library: str | None, pipeline: str | None
) -> list[str]:
    """Tags as the Hub forms them: library, file formats, model_type, card tags, language,
    `license:`, `dataset:`, `base_model:`, pipeline tag."""
    tags: list[str] = []

    def add(tag: str) -> None:
        if tag and tag not in tags:
            tags.append(tag)

    if library:
        add(library)
    if any(f.endswith(".safetensors") for f in files):
        add("safetensors")
    if any(f.endswith((".bin", ".pt")) for f in files):
        add("pytorch")
    if config and isinstance(config.get("model_type"), str):
        add(config["model_type"])
    for t in _as_list(card.get("tags")):
        add(t)
    for lang in _as_list(card.get("language")):
        add(lang)
    for lic in _as_list(card.get("license")):
        add(f"license:{lic}")
    for ds in _as_list(card.get("datasets")):
        add(f"dataset:{ds}")
    for base in _as_list(card.get("base_model")):
        add(f"base_model:{base}")
    if pipeline:
        add(pipeline)
    return tags


def safetensors_params(header: dict) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name, meta in header.items():
        if name == "__metadata__" or not isinstance(meta, dict):
            continue
        n = 1
        for d in meta.get("shape", []):
            n *= int(d)
        counts[meta.get("dtype", "?")] = counts.get(meta.get("dtype", "?"), 0) + n
    return counts


def _read_safetensors_header(fileobj) -> dict | None:
    if isinstance(fileobj, bytes | bytearray):
        data = bytes(fileobj)
        (n,) = struct.unpack("<Q", data[:8])
        return json.loads(data[8 : 8 + n]) if n <= MAX_HEADER_BYTES else None
    try:
        (n,) = struct.unpack("<Q", fileobj.read(8))
        return json.loads(fileobj.read(n)) if n <= MAX_HEADER_BYTES else None
    finally:
        close = getattr(fileobj, "close", None)
        if close:
            close()


def refresh(session: Session, store, repo: Repo) -> None:
    """Re-read the head of `main` into `repo`'s index columns. Never raises for bad content."""
    try:
        sha = store.resolve(repo.type, repo.repo_id, "main")
    except Exception:
        return
    if sha == repo.sha:
        return
    repo.sha = sha
    try:
        log_entries = store.log(repo.type, repo.repo_id, sha, limit=1)
        repo.last_modified = log_entries[0].date.replace(tzinfo=None) if log_entries else utcnow()
    except Exception:
        repo.last_modified = utcnow()
    try:
        entries = store.list_tree(repo.type, repo.repo_id, sha, "", recursive=True)
    except Exception:
        entries = []
    files = {e.path: e for e in entries if e.type == "file"}

    card: dict = {}
    if "README.md" in files:
        try:
            text = store.read_blob(repo.type, repo.repo_id, sha, "README.md").decode("utf-8", "replace")
            card = parse_front_matter(text) or {}
        except Exception as err:
            log.info("model card of %s not indexed: %s", repo.repo_id, err)
    config = None
    if repo.type == "model" and "config.json" in files and files["config.json"].size <= MAX_CONFIG_BYTES:
        try:
            _, content = store.open_file(repo.type, repo.repo_id, sha, "config.json")
            raw = content if isinstance(content, bytes) else _read_all(content)
            loaded = json.loads(raw)
            config = {k: loaded[k] for k in CONFIG_KEYS if k in loaded} if isinstance(loaded, dict) else {}
        except Exception as err:
            log.info("config.json of %s not indexed: %s", repo.repo_id, err)
            config = {}
    pipeline = card.get("pipeline_tag") if isinstance(card.get("pipeline_tag"), str) else None
    if pipeline is None and config:
        pipeline = pipeline_from_architectures(config.get("architectures"))
    library = card.get("library_name") if isinstance(card.get("library_name"), str) else None
    if library is None and config is not None:
        library = "transformers"

    params: dict[str, int] = {}
    for path in files:
        if path.endswith(".safetensors"):
            try:
                _, content = store.open_file(repo.type, repo.repo_id, sha, path)
                header = _read_safetensors_header(content)
                for dtype, n in safetensors_params(header or {}).items():
                    params[dtype] = params.get(dtype, 0) + n
            except Exception as err:
                log.info("safetensors header of %s/%s not read: %s", repo.repo_id, path, err)

    repo.card_data = _jsonable(card) if card else None
    repo.config = config if config is not None else ({} if repo.type == "model" else None)
    repo.pipeline_tag = pipeline
    repo.library_name = library
    repo.tags = build_tags(card, config, list(files), library, pipeline)
    repo.safetensors = {"parameters": params, "total": sum(params.values())} if params else None


def _read_all(fileobj) -> bytes:
    try:
        return fileobj.read()
    finally:
        fileobj.close()


def _jsonable(value):
    """YAML can hold dates and other non-JSON values; turn them into strings."""
    return json.loads(json.dumps(value, default=str))
