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

from sqlalchemy.orm import Session

from ..db import Repo, utcnow
from ..storage.hooks.card_metadata import parse_front_matter

log = logging.getLogger("haven.server.index")

# architecture class-name suffix -> (pipeline tag, the reference library's Auto class), most
# specific first; None where the Hub names no task or no Auto class for that head
ARCH_HEADS = [
    ("DoubleHeadsModel", None, None),
    ("ForMaskedLM", "fill-mask", "AutoModelForMaskedLM"),
    ("ForPreTraining", "fill-mask", "AutoModelForPreTraining"),
    ("ForCausalLM", "text-generation", "AutoModelForCausalLM"),
    ("LMHeadModel", "text-generation", "AutoModelForCausalLM"),
    ("ForSequenceClassification", "text-classification", "AutoModelForSequenceClassification"),
    ("ForTokenClassification", "token-classification", "AutoModelForTokenClassification"),
    ("ForQuestionAnswering", "question-answering", "AutoModelForQuestionAnswering"),
    ("ForMultipleChoice", "multiple-choice", "AutoModelForMultipleChoice"),
    ("ForNextSentencePrediction", None, "AutoModelForNextSentencePrediction"),
    ("ForConditionalGeneration", "text2text-generation", None),  # Seq2Seq, vision-text ...: ambiguous
    ("ForImageClassification", "image-classification", "AutoModelForImageClassification"),
    ("Model", "feature-extraction", "AutoModel"),
]
CONFIG_KEYS = ("architectures", "model_type", "tokenizer_config")
MAX_CONFIG_BYTES = 1 << 20
MAX_HEADER_BYTES = 100 << 20


def _head(architectures: list | None) -> tuple[str | None, str | None] | None:
    for arch in architectures or []:
        if not isinstance(arch, str):
            continue
        for suffix, task, auto in ARCH_HEADS:
            if arch.endswith(suffix):
                return task, auto
    return None


def pipeline_from_architectures(architectures: list | None) -> str | None:
    head = _head(architectures)
    return head[0] if head else None


def auto_model_from_architectures(architectures: list | None) -> str | None:
    """The Auto class that loads the head named in config.json `architectures`, as the Hub names
    it in `transformersInfo.auto_model` (BertForMaskedLM -> AutoModelForMaskedLM, GPT2LMHeadModel
    -> AutoModelForCausalLM, BertModel -> AutoModel); None when no Auto class fits."""
    head = _head(architectures)
    return head[1] if head else None


def _as_list(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str | int | float):
        return [str(value)]
    if isinstance(value, list):
        return [str(v) for v in value if isinstance(v, str | int | float)]
    return []


# card keys the Hub turns into `key:value` tags of a dataset repository
DATASET_CARD_KEYS = (
    "task_categories",
    "task_ids",
    "language",
    "license",
    "size_categories",
    "multilinguality",
    "language_creators",
    "annotations_creators",
    "source_datasets",
)
BASE_MODEL_RELATIONS = ("adapter", "merge", "quantized", "finetune")


def card_tags(repo_type: str, card: dict) -> list[str]:
    """The tags the Hub derives from a card's metadata alone. Models: card tags, language codes
    (bare: `fr`), `license:`, `dataset:`, `base_model:`; datasets: card tags and `key:value` for
    each of DATASET_CARD_KEYS (`language:fr`, `task_categories:...`)."""
    tags = list(_as_list(card.get("tags")))
    if repo_type == "dataset":
        for key in DATASET_CARD_KEYS:
            tags += [f"{key}:{v}" for v in _as_list(card.get(key))]
        return tags
    tags += _as_list(card.get("language"))
    tags += [f"license:{v}" for v in _as_list(card.get("license"))]
    tags += [f"dataset:{v}" for v in _as_list(card.get("datasets"))]
    tags += [f"base_model:{v}" for v in _as_list(card.get("base_model"))]
    return tags


def base_model_relation(card: dict, files: list[str]) -> str | None:
    """How a model relates to its `base_model`, as the Hub infers it: the card's
    `base_model_relation` when valid, else adapter (adapter_config.json), merge (several base
    models) or finetune."""
    bases = _as_list(card.get("base_model"))
    if not bases:
        return None
    relation = card.get("base_model_relation")
    if relation in BASE_MODEL_RELATIONS:
        return relation
    if "adapter_config.json" in files:
        return "adapter"
    return "merge" if len(bases) > 1 else "finetune"


def build_tags(
    card: dict,
    config: dict | None,
    files: list[str],
    library: str | None,
    pipeline: str | None,
    repo_type: str = "model",
) -> list[str]:
    """Tags as the Hub forms them: library, file formats, model_type, the card's tags (see
    `card_tags`), `base_model:{relation}:{id}`, pipeline tag."""
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
    for tag in card_tags(repo_type, card):
        add(tag)
    relation = base_model_relation(card, files) if repo_type == "model" else None
    for base in _as_list(card.get("base_model")) if relation else []:
        add(f"base_model:{relation}:{base}")
    if pipeline:
        add(pipeline)
    return tags


def filter_terms(repo: Repo) -> set[str]:
    """Every `filter=` value that selects `repo`: its tags, pipeline tag, library, id, the tags
    its card gives (even when indexed before a tag was added), and `language:xx` for models
    (whose language tags are bare codes)."""
    card = repo.card_data or {}
    terms = set(repo.tags or []) | set(card_tags(repo.type, card))
    terms |= {t for t in (repo.pipeline_tag, repo.library_name, repo.repo_id) if t}
    if repo.type == "model":
        terms |= {f"language:{v}" for v in _as_list(card.get("language"))}
    return terms


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
    repo.tags = build_tags(card, config, list(files), library, pipeline, repo.type)
    repo.safetensors = {"parameters": params, "total": sum(params.values())} if params else None


def _read_all(fileobj) -> bytes:
    try:
        return fileobj.read()
    finally:
        fileobj.close()


def _jsonable(value):
    """YAML can hold dates and other non-JSON values; turn them into strings."""
    return json.loads(json.dumps(value, default=str))
