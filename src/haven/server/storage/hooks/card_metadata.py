"""The model/dataset card's metadata: the YAML block between the leading `---` lines of README.md.

One validator for every way a README.md reaches a hub: the NDJSON commit API, `POST
/api/validate-yaml` and the git pre-receive hook (which runs this file's folder as a script
folder and imports it as `card_metadata`; so: standard library and PyYAML only).
"""

from __future__ import annotations

import yaml

CARD_PATH = "README.md"


def parse_front_matter(text: str) -> dict | None:
    """The YAML mapping between leading `---` lines of a card, or None when there is none.

    Raises ValueError when the block is present but is not a YAML mapping."""
    lines = text.lstrip("\ufeff").splitlines()
    if not lines or lines[0].strip() != "---":
        return None
    for i in range(1, len(lines)):
        if lines[i].strip() == "---":
            try:
                data = yaml.safe_load("\n".join(lines[1:i]))
            except yaml.YAMLError as err:
                raise ValueError(f"invalid YAML in the model card's metadata{_where(err)}") from err
            if data is None:
                return {}
            if not isinstance(data, dict):
                raise ValueError("the model card's metadata must be a YAML mapping (key: value)")
            return data
    return None


def _where(err: yaml.YAMLError) -> str:
    """` at line L, column C: problem` on one line (L counts README.md's lines)."""
    mark = getattr(err, "problem_mark", None)
    problem = " ".join(str(getattr(err, "problem", None) or err).split())
    if mark is None:
        return f": {problem}"
    return f" at line {mark.line + 2}, column {mark.column + 1}: {problem}"


def card_error(content: bytes) -> str | None:
    """Why README.md `content` cannot be a repository's card, or None when it can.

    The message names the file and says how to fix it; the commit API and the push hook show it
    as it is."""
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        return f"{CARD_PATH} is not UTF-8 text: save the model card as UTF-8."
    try:
        parse_front_matter(text)
    except ValueError as err:
        return (
            f"{CARD_PATH} has invalid metadata ({err}). Fix the YAML block between the leading "
            "'---' lines, or remove it."
        )
    return None
