"""Model cards: README.md with YAML front matter (`---` ... `---`) followed by Markdown.

    card = ModelCard.load("me/tiny-bert")
    card.data.license, card.data.tags, card.text
    card.data.license = "mit"; card.validate(); card.push_to_hub("me/tiny-bert")
    ModelCard.from_template(CardData(language="en", license="mit"), description="...")
"""

from __future__ import annotations

import os
import re
from typing import Any

import yaml

from .types import ModelCardError

TEMPLATE_SECTIONS = (
    ("description", "Model description"),
    ("intended_uses", "Intended uses & limitations"),
    ("how_to_use", "How to use"),
    ("bias", "Limitations and bias"),
    ("training_data", "Training data"),
    ("training_procedure", "Training procedure"),
    ("evaluation_results", "Evaluation results"),
)
MISSING = "More information needed"

# A practical subset of the license ids the Hub accepts; "other" covers the rest (with license_name).
LICENSES = {
    "apache-2.0", "mit", "openrail", "openrail++", "bigscience-openrail-m", "creativeml-openrail-m",
    "bigscience-bloom-rail-1.0", "bigcode-openrail-m", "afl-3.0", "artistic-2.0", "bsl-1.0", "bsd", "bsd-2-clause",
    "bsd-3-clause", "bsd-3-clause-clear", "c-uda", "cc", "cc0-1.0", "cc-by-2.0", "cc-by-2.5", "cc-by-3.0",
    "cc-by-4.0", "cc-by-sa-3.0", "cc-by-sa-4.0", "cc-by-nc-2.0", "cc-by-nc-3.0", "cc-by-nc-4.0", "cc-by-nd-4.0",
    "cc-by-nc-nd-3.0", "cc-by-nc-nd-4.0", "cc-by-nc-sa-2.0", "cc-by-nc-sa-3.0", "cc-by-nc-sa-4.0", "cdla-sharing-1.0",
    "cdla-permissive-1.0", "cdla-permissive-2.0", "wtfpl", "ecl-2.0", "epl-1.0", "epl-2.0", "etalab-2.0",
    "eupl-1.1", "eupl-1.2", "agpl-3.0", "gfdl", "gpl", "gpl-2.0", "gpl-3.0", "lgpl", "lgpl-2.1", "lgpl-3.0",
    "isc", "lppl-1.3c", "ms-pl", "mpl-2.0", "odc-by", "odbl", "osl-3.0", "postgresql", "ofl-1.1",
    "ncsa", "unlicense", "zlib", "pddl", "lgpl-lr", "deepfloyd-if-license", "llama2", "llama3", "llama3.1",
    "llama3.2", "llama3.3", "gemma", "unknown", "other",
}
PIPELINE_TAGS = {
    "fill-mask", "text-classification", "token-classification", "text-generation", "question-answering",
    "summarization", "translation", "text2text-generation", "feature-extraction", "sentence-similarity",
    "zero-shot-classification", "table-question-answering", "conversational", "image-classification",
    "object-detection", "image-segmentation", "text-to-image", "image-to-text", "automatic-speech-recognition",
    "audio-classification", "text-to-speech", "visual-question-answering", "image-text-to-text", "other",
}
_LANG_RE = re.compile(r"^([a-z]{2,3}(-[A-Za-z0-9]{2,8})*|multilingual|code)$")
_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?\n)?---\s*(\n|\Z)", re.S)


class CardData:
    """The YAML metadata of a card. Known fields are attributes; other keys are kept as they are."""

    FIELDS = ("language", "license", "library_name", "tags", "datasets", "metrics", "base_model", "pipeline_tag",
              "model_index")

    def __init__(self, **kwargs: Any):
        if "model-index" in kwargs:
            kwargs["model_index"] = kwargs.pop("model-index")
        for name in self.FIELDS:
            setattr(self, name, kwargs.pop(name, None))
        self.extra: dict[str, Any] = kwargs

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.FIELDS:
            value = getattr(self, name)
            if value is not None and value != []:
                out["model-index" if name == "model_index" else name] = value
        out.update({k: v for k, v in self.extra.items() if v is not None})
        return out

    def to_yaml(self) -> str:
        data = self.to_dict()
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True) if data else ""

    def get(self, key: str, default: Any = None) -> Any:
        return self.to_dict().get(key, default)

    def __getattr__(self, name: str) -> Any:  # unknown keys: card.data.co2_eq_emissions
        extra = self.__dict__.get("extra", {})
        if name in extra:
            return extra[name]
        raise AttributeError(name)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CardData) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"CardData({self.to_dict()!r})"


class ModelCard:
    """A README.md: `.data` (CardData), `.text` (the Markdown body), `.content` (the whole file)."""

    def __init__(self, content: str = "", *, ignore_metadata_errors: bool = False):
        match = _FRONT_MATTER.match(content)
        if match:
            try:
                meta = yaml.safe_load(match.group(1) or "") or {}
            except yaml.YAMLError as err:
                if not ignore_metadata_errors:
                    raise ModelCardError(f"the card's YAML front matter does not parse: {err}. Fix the YAML between "
                                         "the two '---' lines") from None
                meta = {}
            if not isinstance(meta, dict):
                raise ModelCardError("the card's front matter must be a YAML mapping (key: value lines)")
            self.text = content[match.end():]
        else:
            meta, self.text = {}, content
        self.data = CardData(**meta)

    @property
    def content(self) -> str:
        meta = self.data.to_yaml()
        return f"---\n{meta}---\n{self.text}" if meta else self.text

    def __str__(self) -> str:
        return self.content

    # -- io ----------------------------------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        id_or_path: str | os.PathLike,
        *,
        revision: str | None = None,
        token: str | None = None,
        repo_type: str | None = None,
    ) -> ModelCard:
        """From a README.md path, a folder holding one, or a hub repository id."""
        path = os.fspath(id_or_path)
        if os.path.isdir(path):
            path = os.path.join(path, "README.md")
        if not os.path.isfile(path):
            from .download import hf_hub_download
            from .http import get_session

            path = hf_hub_download(get_session(token), os.fspath(id_or_path), "README.md", revision=revision,
                                   repo_type=repo_type)
        with open(path, encoding="utf-8") as f:
            return cls(f.read())

    def save(self, path: str | os.PathLike) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.content)

    def push_to_hub(
        self,
        repo_id: str,
        *,
        token: str | None = None,
        commit_message: str = "Update README.md",
        revision: str | None = None,
        repo_type: str | None = None,
    ) -> Any:
        """Validate, then commit as README.md."""
        from .http import HubSession
        from .upload import upload_file

        self.validate()
        with HubSession(token=token) as session:
            return upload_file(session, path_or_fileobj=self.content.encode("utf-8"), path_in_repo="README.md",
                               repo_id=repo_id, commit_message=commit_message, revision=revision,
                               repo_type=repo_type)

    # -- building ------------------------------------------------------------------------------------
    @classmethod
    def from_template(cls, card_data: CardData | dict[str, Any] | None = None, *, model_id: str | None = None,
                      **sections: str) -> ModelCard:
        """A card with the usual sections; pass their text by key (missing ones say so).

        Keys: description, intended_uses, how_to_use, bias, training_data, training_procedure,
        evaluation_results.
        """
        known = {key for key, _ in TEMPLATE_SECTIONS}
        unknown = set(sections) - known
        if unknown:
            raise ModelCardError(f"unknown template section(s) {sorted(unknown)}; use {sorted(known)}")
        data = card_data if isinstance(card_data, CardData) else CardData(**(card_data or {}))
        parts = [f"# {model_id or 'Model card'}\n"]
        for key, title in TEMPLATE_SECTIONS:
            parts.append(f"## {title}\n\n{(sections.get(key) or MISSING).strip()}\n")
        card = cls("\n".join(parts))
        card.data = data
        return card

    @classmethod
    def for_object(cls, obj: Any, repo_id: str) -> ModelCard:
        """The card `push_to_hub` writes when a repository has none."""
        config = getattr(obj, "config", obj)
        kind = type(obj).__name__
        task = _pipeline_tag(kind)
        data = CardData(library_name="transformers", tags=["haven"], pipeline_tag=task)
        model_type = getattr(config, "model_type", None)
        if model_type:
            data.tags.append(model_type)
        usage = (
            "```python\nfrom haven import AutoModel, AutoTokenizer\n\n"
            f'model = AutoModel.from_pretrained("{repo_id}")\n```'
        )
        return cls.from_template(
            data, model_id=repo_id,
            description=f"A `{kind}`{f' ({model_type})' if model_type else ''} checkpoint published with Haven.",
            how_to_use=usage,
        )

    # -- validation ------------------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise ModelCardError listing every metadata problem (with what to write instead)."""
        problems = validate_card_data(self.data.to_dict())
        if problems:
            raise ModelCardError("invalid model card metadata:\n- " + "\n- ".join(problems))


def _pipeline_tag(class_name: str) -> str | None:
    for suffix, tag in (("ForMaskedLM", "fill-mask"), ("ForSequenceClassification", "text-classification"),
                        ("ForTokenClassification", "token-classification"), ("ForCausalLM", "text-generation"),
                        ("LMHeadModel", "text-generation"), ("ForQuestionAnswering", "question-answering")):
        if class_name.endswith(suffix):
            return tag
    if class_name.endswith("Model"):
        return "feature-extraction"
    return None


def _str_list(value: Any) -> list[str] | None:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


def validate_card_data(meta: dict[str, Any]) -> list[str]:
    """Problems with a card's metadata, one readable line each (empty: valid)."""
    problems = []
    if "license" in meta:
        lic = meta["license"]
        if not isinstance(lic, str) or lic.lower() not in LICENSES:
            problems.append(f"license {lic!r} is not a known license id: use one like 'apache-2.0', 'mit', "
                            "'cc-by-4.0', or 'other' together with license_name and license_link")
        elif lic == "other" and not meta.get("license_name"):
            problems.append("license is 'other': also set license_name (and license_link) to say which license")
    if "language" in meta:
        langs = _str_list(meta["language"])
        bad = [x for x in langs or [] if not _LANG_RE.match(x)]
        if langs is None or bad:
            problems.append(f"language must be an ISO 639 code or a list of them (e.g. 'en' or ['en', 'fr']); "
                            f"got {bad or meta['language']!r}")
    for key in ("tags", "datasets", "metrics"):
        if key in meta and _str_list(meta[key]) is None:
            problems.append(f"{key} must be a list of strings, got {meta[key]!r}")
    if "base_model" in meta:
        bases = _str_list(meta["base_model"])
        if bases is None or any(not re.match(r"^[\w.-]+(/[\w.-]+)?$", b) for b in bases):
            problems.append(f"base_model must be a repository id like 'owner/name' (or a list), got {meta['base_model']!r}")
    if "pipeline_tag" in meta and meta["pipeline_tag"] not in PIPELINE_TAGS:
        problems.append(f"pipeline_tag {meta['pipeline_tag']!r} is not a known task; use one of "
                        f"{', '.join(sorted(PIPELINE_TAGS))}")
    if "library_name" in meta and not isinstance(meta["library_name"], str):
        problems.append("library_name must be a string such as 'transformers'")
    if "model-index" in meta:
        problems.extend(_validate_model_index(meta["model-index"]))
    return problems


def _validate_model_index(index: Any) -> list[str]:
    if not isinstance(index, list):
        return ["model-index must be a list of {name, results} entries"]
    problems = []
    for i, entry in enumerate(index):
        where = f"model-index[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            problems.append(f"{where} needs a 'name' (the model's name)")
            continue
        results = entry.get("results")
        if not isinstance(results, list):
            problems.append(f"{where}.results must be a list of {{task, dataset, metrics}}")
            continue
        for j, result in enumerate(results):
            at = f"{where}.results[{j}]"
            if not isinstance(result, dict):
                problems.append(f"{at} must be a mapping with task, dataset and metrics")
                continue
            if not isinstance(result.get("task"), dict) or not result["task"].get("type"):
                problems.append(f"{at}.task needs a 'type' (e.g. text-classification)")
            ds = result.get("dataset")
            if not isinstance(ds, dict) or not ds.get("type") or not ds.get("name"):
                problems.append(f"{at}.dataset needs 'type' (the dataset id) and 'name'")
            metrics = result.get("metrics")
            if not isinstance(metrics, list) or not metrics:
                problems.append(f"{at}.metrics must be a non-empty list of {{type, value}}")
                continue
            for k, metric in enumerate(metrics):
                if not isinstance(metric, dict) or not metric.get("type") or "value" not in metric:
                    problems.append(f"{at}.metrics[{k}] needs 'type' (e.g. accuracy) and 'value'")
    return problems
