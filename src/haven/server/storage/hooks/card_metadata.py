"""The model/dataset card's metadata: the YAML block between the leading `---` lines of README.md.

One validator for every way a README.md reaches a hub: the NDJSON commit API, `POST
/api/validate-yaml`, the git pre-receive hook (which runs this file's folder as a script
folder and imports it as `card_metadata`; so: standard library and PyYAML only), and the
indexer, which stores what `parse_front_matter` returns.

Bounded, so that no card can freeze or bloat the hub:
- the YAML block is at most MAX_FRONT_MATTER_BYTES (256 KB);
- it nests at most MAX_DEPTH levels, aliases included, and may not refer to itself;
- with every alias expanded it holds at most MAX_VALUES values and MAX_CHARS characters (a few
  hundred bytes of nested aliases would otherwise expand to hundreds of megabytes), which also
  bounds the time spent building it;
- as JSON (what the hub stores and lists) it is at most MAX_METADATA_JSON_BYTES (64 KB).
The YAML is parsed with libyaml when PyYAML has it (several times faster than pure Python).
"""

from __future__ import annotations

import json
import math
from typing import Any

import yaml

CARD_PATH = "README.md"
MAX_FRONT_MATTER_BYTES = 256 * 1024
MAX_METADATA_JSON_BYTES = 64 * 1024
MAX_DEPTH = 64
MAX_VALUES = 20_000  # each takes at least two bytes of JSON: more could not fit in 64 KB anyway
MAX_CHARS = 4 * MAX_METADATA_JSON_BYTES

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_front_matter(text: str) -> dict | None:
    """The card's metadata as JSON-ready data (string keys; dates, non-finite numbers and sets
    as strings or lists), or None when README.md has no front matter.

    Raises ValueError when the block is present but is not a YAML mapping, or breaks a bound
    (module docstring)."""
    block = _front_matter_block(text.lstrip("\ufeff"))
    if block is None:
        return None
    size = len(block.encode("utf-8", "surrogatepass"))
    if size > MAX_FRONT_MATTER_BYTES:
        raise ValueError(f"the YAML block is {_kb(size)}, over the {_kb(MAX_FRONT_MATTER_BYTES)} limit")
    data = load_yaml(block)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError("the model card's metadata must be a YAML mapping (key: value)")
    data = jsonable(data)
    size = len(json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    if size > MAX_METADATA_JSON_BYTES:
        raise ValueError(
            f"the metadata is {_kb(size)} as JSON, over the {_kb(MAX_METADATA_JSON_BYTES)} limit: "
            "keep long content (evaluation tables, prose) in the card's body"
        )
    return data


def _front_matter_block(text: str) -> str | None:
    """The text between a first line `---` and the next `---` line; None without both. Looks
    no further than the size limit allows, then only for whether a closing line exists."""
    head = text[: MAX_FRONT_MATTER_BYTES + 1024]  # the block, its two `---` lines, some slack
    lines = head.splitlines()
    if not lines or lines[0].strip() != "---":
        return None
    complete = len(lines) if len(head) == len(text) else len(lines) - 1  # the last may be cut
    for i in range(1, complete):
        if lines[i].strip() == "---":
            return "\n".join(lines[1:i])
    if complete < len(lines) and _has_closing_line(text, len(head) - len(lines[-1])):
        raise ValueError(f"the YAML block is over the {_kb(MAX_FRONT_MATTER_BYTES)} limit")
    return None


def _has_closing_line(text: str, pos: int) -> bool:
    """Whether a `---` line starts at or after `pos` (linear: str.find, each line looked at once)."""
    while (i := text.find("---", pos)) >= 0:
        start = text.rfind("\n", 0, i) + 1
        end = text.find("\n", i)
        end = len(text) if end < 0 else end
        if text[start:end].strip() == "---":
            return True
        pos = end + 1
    return False


def load_yaml(text: str) -> Any:
    """One YAML document, refused (ValueError) when nested too deeply, when an alias refers to
    itself, or when it expands to over MAX_VALUES values or MAX_CHARS characters."""
    _count_events(text)
    loader = _Loader(text)
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:  # the pure-Python composer recurses per level
            raise ValueError(f"the YAML is nested deeper than {MAX_DEPTH} levels") from None
        if node is None:
            return None
        _measure(node, 0, {}, set())
        return loader.construct_document(node)
    except yaml.YAMLError as err:
        raise ValueError(f"invalid YAML in the model card's metadata{_where(err)}") from err
    finally:
        loader.dispose()


_NODE_EVENTS = (yaml.ScalarEvent, yaml.SequenceStartEvent, yaml.MappingStartEvent, yaml.AliasEvent)


def _count_events(text: str) -> None:
    """Refuse a document with over MAX_VALUES values before building it (building costs far
    more than parsing); each value or alias is at least one value once expanded."""
    parser = _Loader(text)
    try:
        count = 0
        while parser.check_event():
            count += isinstance(parser.get_event(), _NODE_EVENTS)
            if count > MAX_VALUES:
                raise ValueError(f"the YAML holds over {MAX_VALUES} values")
    except yaml.YAMLError as err:
        raise ValueError(f"invalid YAML in the model card's metadata{_where(err)}") from err
    finally:
        parser.dispose()


def _measure(node: yaml.Node, depth: int, done: dict[int, tuple[int, int, int]], active: set[int]) -> tuple[int, int, int]:
    """(values, characters, height) of `node` with aliases expanded; shared nodes are measured
    once, so this costs as much as the YAML text, not as its expansion."""
    key = id(node)
    if key in done:
        values, chars, height = done[key]
    elif key in active:
        raise ValueError("a YAML alias refers to the mapping or list that contains it")
    else:
        active.add(key)
        values, chars, height = 1, 0, 0
        if isinstance(node, yaml.ScalarNode):
            chars = len(node.value)
        else:
            children = node.value if isinstance(node, yaml.SequenceNode) else [n for kv in node.value for n in kv]
            for child in children:
                if depth + 1 > MAX_DEPTH:
                    raise ValueError(f"the YAML is nested deeper than {MAX_DEPTH} levels")
                child_values, child_chars, child_height = _measure(child, depth + 1, done, active)
                values, chars = values + child_values, chars + child_chars
                height = max(height, child_height + 1)
                if values > MAX_VALUES or chars > MAX_CHARS:
                    raise ValueError(
                        f"the YAML holds over {MAX_VALUES} values or {MAX_CHARS} characters once its "
                        "aliases (*name) are expanded"
                    )
        active.discard(key)
        done[key] = (values, chars, height)
    if depth + height > MAX_DEPTH:
        raise ValueError(f"the YAML is nested deeper than {MAX_DEPTH} levels once its aliases are expanded")
    return values, chars, height


def jsonable(value: Any) -> Any:
    """YAML data as JSON data: keys as strings (`true`, `null`, `2024-01-31`), dates and
    non-finite floats as strings, sets as sorted lists, bytes as text. Expects bounded data
    (`load_yaml`)."""
    if isinstance(value, dict):
        return {_key(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((jsonable(v) for v in value), key=str)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, str):
        return _text(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    return str(value)  # dates, datetimes


def _key(key: Any) -> str:
    return json.dumps(key) if isinstance(key, bool) or key is None else _text(str(key))


def _text(value: str) -> str:
    """`value`, with unpaired surrogates (YAML "\\ud800" escapes) replaced: they cannot be sent as UTF-8."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "replace").decode("utf-8")
    return value


def _kb(size: int) -> str:
    return f"{size / 1024:.0f} KB" if size >= 1024 else f"{size} bytes"


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
