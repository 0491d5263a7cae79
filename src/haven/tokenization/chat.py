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
        if continue_final_message:
            messages = _tag_final_message(messages)
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
            text = _cut_at_tag(text)
        out.append(text)
    return out


# Marks where the final message ends, so the rendered text can stop there (the model continues it).
_TAG = "HAVEN_CONTINUE_FINAL_MESSAGE "


def _tag_final_message(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if not messages or "content" not in messages[-1]:
        raise TokenizerError("continue_final_message is set but the final message has no content to continue")
    final = dict(messages[-1])
    content = final["content"]
    if isinstance(content, str):
        final["content"] = content + _TAG
    else:  # a list of blocks: continue the last text block
        blocks = [dict(b) for b in content]
        for block in reversed(blocks):
            if "text" in block:
                block["text"] += _TAG
                break
        else:
            raise TokenizerError("continue_final_message is set but the final message has no text block")
        final["content"] = blocks
    return [*messages[:-1], final]


def _cut_at_tag(text: str) -> str:
    if _TAG.strip() not in text:
        raise TokenizerError(
            "continue_final_message is set but the chat template drops the end of the final message; "
            "the template and continue_final_message do not fit together"
        )
    at = text.rindex(_TAG.strip())
    if text[at : at + len(_TAG)] == _TAG:
        return text[:at]
    return text[:at].rstrip()  # the template trimmed the message's trailing space
