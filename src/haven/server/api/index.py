"""The repository index: what listing and search read, refreshed after every commit or push.

From the head of `main`: the commit sha and date, the model card's YAML front matter
(`cardData`: tags, library_name, pipeline_tag, license, language, datasets, base_model),
`config.json` (model_type, architectures -> pipeline_tag when the card names none), and the
safetensors headers (parameter counts per dtype).

Every read is bounded (the card by its validator, config.json to 1 MB, a safetensors header to
10 MB and validated by `haven.safetensors_header`), and what a header says is cached by content
id, so a commit reads only the headers of objects the hub has not indexed before. What cannot be
read is recorded in `repo.index_errors`; a refresh never fails the request that landed a commit.
"""

from __future__ import annotations

import importlib
import io
import json
import logging

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from ...errors import CheckpointError
from ...safetensors_header import parameter_counts, read_header
from ..db import Repo, RepoFacet, SafetensorsFacts, utcnow
from ..storage.hooks.card_metadata import CARD_PATH, MAX_METADATA_JSON_BYTES, parse_front_matter

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
MAX_HEADER_BYTES = 10 << 20  # a safetensors header over this is indexed as unreadable
MAX_NAME = 64  # the pipeline_tag and library_name columns
MAX_ERRORS = 50  # files named in repo.index_errors
MAX_CARD_TEXT = 8000  # characters of a card's plain text kept for search
MAX_FACET_VALUE = 200  # the repo_facets.value column: a longer value is no filter chip nor term
TERM = "term"  # the repo_facets rows of `filter_terms` (the repo's id aside: it changes on a rename)


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


def refresh(session: Session, store, repo: Repo) -> None:
    """Re-read the head of `main` into `repo`'s index columns. Never raises: runs after a ref
    moved, so a file it cannot read (a corrupt header, a YAML bomb, a huge config) is indexed as
    unreadable (`repo.index_errors`) and the rest of the index is still written."""
    try:
        sha = store.resolve(repo.type, repo.repo_id, "main")
    except Exception:
        return
    if sha == repo.sha:
        return
    try:
        _index_head(session, store, repo, sha)
    except Exception as err:  # a bug, not bad content: the commit has landed, keep the request alive
        log.exception("index of %s at %s failed", repo.repo_id, sha)
        repo.index_errors = {"": f"the index could not be refreshed ({type(err).__name__}); see the server log"}
    repo.sha = sha


def refresh_apart(sessionmaker, store, repo_type: str, repo_id: str) -> None:
    """`refresh` in a session of its own, for a request whose ref has already moved: whatever
    fails here (the database included) is logged and rolled back, never raised, and leaves the
    request's own session untouched. The stored `repo.sha` then still names the old head, which
    marks the repository for re-indexing: the next repo info read or commit refreshes it."""
    ns, _, name = repo_id.partition("/")
    try:
        with sessionmaker() as session:
            repo = session.scalar(
                select(Repo).where(Repo.type == repo_type, Repo.namespace == ns, Repo.name == name)
            )
            if repo is not None:
                refresh(session, store, repo)
                session.commit()
    except Exception:
        log.exception("index of %s not refreshed; it is re-indexed on its next read or commit", repo_id)


def _index_head(session: Session, store, repo: Repo, sha: str) -> None:
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
    errors: dict[str, str] = {}

    card, text = _card(store, repo, sha, files, errors)
    config = _config(store, repo, sha, files, errors) if repo.type == "model" else None
    pipeline = _short(card, "pipeline_tag", errors)
    if pipeline is None and config:
        pipeline = pipeline_from_architectures(config.get("architectures"))
    library = _short(card, "library_name", errors)
    if library is None and config is not None:
        library = "transformers"
    params = safetensors_parameters(session, store, repo, sha, files, errors)

    repo.card_data = card or None
    repo.card_text = text
    repo.config = config if config is not None else ({} if repo.type == "model" else None)
    repo.pipeline_tag = pipeline
    repo.library_name = library
    repo.tags = build_tags(card, config, list(files), library, pipeline, repo.type)
    repo.safetensors = {"parameters": params, "total": sum(params.values())} if params else None
    if len(errors) > MAX_ERRORS:
        kept = dict(list(errors.items())[:MAX_ERRORS])
        kept["..."] = f"{len(errors) - MAX_ERRORS} more files not indexed"
        errors = kept
    repo.index_errors = errors or None
    write_facets(session, repo)


def _card(store, repo: Repo, sha: str, files: dict, errors: dict[str, str]) -> tuple[dict, str | None]:
    """The card's metadata, bounded by the validator (`card_metadata`; {} when unreadable), and
    its body as lowercase plain text of at most MAX_CARD_TEXT characters (None without a card)."""
    if CARD_PATH not in files:
        return {}, None
    from ..web.markdown import plain_text

    try:
        text = store.read_blob(repo.type, repo.repo_id, sha, CARD_PATH).decode("utf-8", "replace")
    except Exception as err:
        errors[CARD_PATH] = f"not indexed: {err}"
        log.info("model card of %s not read: %s", repo.repo_id, err)
        return {}, None
    plain = plain_text(text, MAX_CARD_TEXT).lower()
    try:
        return parse_front_matter(text) or {}, plain
    except Exception as err:
        errors[CARD_PATH] = f"metadata not indexed: {err}"
        log.info("model card of %s not indexed: %s", repo.repo_id, err)
        return {}, plain


def facet_values(repo: Repo) -> dict[str, set[str]]:
    """The filter values that select `repo`, per list facet (each one, used as its URL parameter
    of /models or /datasets, selects the repo through `api.search`); values over MAX_FACET_VALUE
    characters are left out."""
    card = repo.card_data or {}
    languages = set(_as_list(card.get("language")))
    licenses = set(_as_list(card.get("license")))
    values: dict[str, set[str]] = {"language": languages, "license": licenses}
    named: set[str] = {f"license:{v}" for v in licenses} | {f"language:{v}" for v in languages}
    if repo.type == "model":
        datasets = set(_as_list(card.get("datasets")))
        values["pipeline_tag"] = {repo.pipeline_tag} if repo.pipeline_tag else set()
        values["library"] = {repo.library_name} if repo.library_name else set()
        values["dataset"] = datasets
        named |= languages | {f"dataset:{v}" for v in datasets} | values["pipeline_tag"] | values["library"]
    values["filter"] = {t for t in repo.tags or [] if t not in named and not t.startswith("base_model:")}
    return {facet: {v for v in vs if len(v) <= MAX_FACET_VALUE} for facet, vs in values.items()}


def facet_rows(repo: Repo) -> list[dict]:
    """`repo`'s rows of `repo_facets`: its `facet_values`, and its `filter_terms` as TERM rows
    (those the listing's `filter=`, `license=` ... select with in SQL), the repo's id left out."""
    values = facet_values(repo)
    values[TERM] = {t for t in filter_terms(repo) if t != repo.repo_id and len(t) <= MAX_FACET_VALUE}
    return [{"repo_id": repo.id, "type": repo.type, "facet": f, "value": v}
            for f, vs in values.items() for v in sorted(vs)]


def write_facets(session: Session, repo: Repo) -> None:
    """Replace `repo`'s rows of `repo_facets` with `facet_rows(repo)` (the repo must have an id)."""
    if repo.id is None:
        session.flush()
    session.execute(delete(RepoFacet).where(RepoFacet.repo_id == repo.id))
    rows = facet_rows(repo)
    if rows:  # an empty list would insert one row of defaults
        session.execute(RepoFacet.__table__.insert(), rows)


def reindex_marked(session: Session, store) -> int:
    """Index every repository marked for it (`sha == ''`: a migration that adds an index column
    marks them all); returns how many were re-indexed. Run when the server starts."""
    done = 0
    for repo in session.scalars(select(Repo).where(Repo.sha == "")).all():
        refresh(session, store, repo)
        done += repo.sha != ""
        if done % 100 == 0:
            session.commit()
    session.commit()
    return done


def _config(store, repo: Repo, sha: str, files: dict, errors: dict[str, str]) -> dict | None:
    """config.json's CONFIG_KEYS; None without a config.json, {} when it cannot be read."""
    entry = files.get("config.json")
    if entry is None:
        return None
    if entry.size > MAX_CONFIG_BYTES:
        errors["config.json"] = f"not indexed: {entry.size} bytes, over the {MAX_CONFIG_BYTES}-byte limit"
        return {}
    try:
        _, content = store.open_file(repo.type, repo.repo_id, sha, "config.json")
        raw = content if isinstance(content, bytes) else _read_all(content, MAX_CONFIG_BYTES)
        loaded = json.loads(raw)
        config = {k: loaded[k] for k in CONFIG_KEYS if k in loaded} if isinstance(loaded, dict) else {}
        size = len(json.dumps(config, allow_nan=False))
    except Exception as err:  # JSON errors, NaN, nesting beyond the recursion limit, a missing object
        errors["config.json"] = f"not indexed: {str(err)[:200]}"
        log.info("config.json of %s not indexed: %s", repo.repo_id, err)
        return {}
    if size > MAX_METADATA_JSON_BYTES:
        errors["config.json"] = f"not indexed: its indexed keys take {size} bytes, over {MAX_METADATA_JSON_BYTES}"
        return {}
    return config


def _short(card: dict, key: str, errors: dict[str, str]) -> str | None:
    """A card value stored in a short column (pipeline_tag, library_name); None if it does not fit."""
    value = card.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_NAME:
        errors.setdefault(CARD_PATH, f"{key} ignored: it must be a string of at most {MAX_NAME} characters")
        return None
    return value


def safetensors_parameters(
    session: Session, store, repo: Repo, sha: str, files: dict, errors: dict[str, str]
) -> dict[str, int]:
    """Elements per dtype over the head's `*.safetensors` files; {} when any is unreadable (a
    partial count would mislead). Each header is read once per content id, then cached in
    `safetensors_facts`: later commits read only headers they have not seen."""
    keys: dict[str, list[str]] = {}
    for path, entry in files.items():
        if path.endswith(".safetensors"):
            keys.setdefault(entry.lfs.oid if entry.lfs else entry.oid, []).append(path)
    known: dict[str, SafetensorsFacts] = {}
    ids = sorted(keys)
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        rows = session.scalars(select(SafetensorsFacts).where(SafetensorsFacts.oid.in_(chunk)))
        known.update((row.oid, row) for row in rows)
    params: dict[str, int] = {}
    complete = True
    for key, paths in keys.items():
        facts = known.get(key) or _read_facts(session, store, repo, sha, key, paths[0])
        if facts.parameters is None:
            complete = False
            for path in paths:
                errors[path] = f"header not indexed: {facts.error}"
            continue
        for dtype, n in facts.parameters.items():  # each path counts, as each is a file of the repo
            params[dtype] = params.get(dtype, 0) + n * len(paths)
    return params if complete else {}


def _read_facts(session: Session, store, repo: Repo, sha: str, key: str, path: str) -> SafetensorsFacts:
    """Read one header (at most MAX_HEADER_BYTES) and remember what it says; a missing LFS object
    or an I/O error is reported but not remembered (it may be there next time)."""
    try:
        entry, content = store.open_file(repo.type, repo.repo_id, sha, path)
        f = io.BytesIO(content) if isinstance(content, bytes) else content
        try:
            header, _ = read_header(f, entry.size, path, max_header=MAX_HEADER_BYTES)
        finally:
            f.close()
    except CheckpointError as err:
        facts = SafetensorsFacts(oid=key, parameters=None, error=str(err)[:500])
    except Exception as err:
        log.info("safetensors header of %s/%s not read: %s", repo.repo_id, path, err)
        return SafetensorsFacts(oid=key, parameters=None, error=f"could not be read ({type(err).__name__})")
    else:
        facts = SafetensorsFacts(oid=key, parameters=parameter_counts(header), error=None)
    values = {"oid": facts.oid, "parameters": facts.parameters, "error": facts.error}
    dialect = session.get_bind().dialect.name
    if dialect in ("sqlite", "postgresql"):  # a concurrent refresh may have stored it first
        insert = importlib.import_module(f"sqlalchemy.dialects.{dialect}").insert
        session.execute(insert(SafetensorsFacts).values(**values).on_conflict_do_nothing())
    else:
        session.merge(SafetensorsFacts(**values))
    return facts


def _read_all(fileobj, limit: int) -> bytes:
    try:
        return fileobj.read(limit + 1)
    finally:
        fileobj.close()
