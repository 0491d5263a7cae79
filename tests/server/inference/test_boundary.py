"""The inference service uses the runtime through public names only: no `obj._name` of another
object (pipelines, models, tokenizers) in src/haven/server/inference."""

from __future__ import annotations

import ast
from pathlib import Path

import haven.server.inference as package


def test_no_private_names_cross_into_the_runtime():
    found = []
    for path in sorted(Path(package.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
            ):
                found.append(f"{path.name}:{node.lineno}: .{node.attr}")
    assert found == []
