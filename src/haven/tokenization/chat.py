"""Chat templates: Jinja2 templates rendered in a sandbox, as the reference library does."""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from typing import Any

from ..errors import TokenizerError


@lru_cache(maxsize=16)
def _compile(template: str):
    import jinja2
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(
        x: Any,
        ensure_ascii: bool = False,
        indent: int | None = None,
        separators=None,
        sort_keys: bool = False,
    ):
        # Jinja's own tojson escapes HTML characters; templates expect plain JSON.
        return json.dumps(
            x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
        )

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(template)


def render_chat(
    template: str,
    conversations: list[list[dict[str, Any]]],
    *,
    add_generation_prompt: bool = False,
    continue_final_message: bool = False,
    tools: list | None = None,
    documents: list | None = None,
    **variables: Any,
) -> list[str]:
    """Render each conversation with `template`; `variables` are bos_token, eos_token, ..."""
    import jinja2

    try:
        compiled = _compile(template)
    except jinja2.TemplateSyntaxError as e:
        raise TokenizerError(f"the chat template is not valid Jinja: {e}") from e
    out = []
    for messages in conversations:
        messages = [{k: v for k, v in m.items() if v is not None} for m in messages]
        try:
            text = compiled.render(
                messages=messages,
                tools=tools,
                documents=documents,
                add_generation_prompt=add_generation_prompt,
                **variables,
            )
        except jinja2.TemplateError as e:
            raise TokenizerError(f"the chat template refused the conversation: {e}") from e
        if continue_final_message:
            final = messages[-1]["content"]
            if isinstance(final, str) and final.strip() in text:
                text = text[: text.rindex(final.strip()) + len(final.strip())]
        out.append(text)
    return out
