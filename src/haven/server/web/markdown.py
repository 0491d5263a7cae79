"""Model cards to safe HTML, and source code to highlighted HTML.

A card is untrusted: markdown-it renders it (CommonMark with tables, strikethrough, fenced code
highlighted by Pygments, heading anchors), then nh3 keeps only harmless tags and attributes: no
scripts, no event attributes, no `javascript:` or `data:` URLs (only http, https and mailto;
relative links point into the repository). Pygments emits CSS classes only; `pygments_css()`
is the stylesheet, served as a static asset.
"""

from __future__ import annotations

import functools
import re
from urllib.parse import quote

import nh3
from markdown_it import MarkdownIt
from mdit_py_plugins.anchors import anchors_plugin
from mdit_py_plugins.front_matter import front_matter_plugin
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name, guess_lexer_for_filename
from pygments.lexers.special import TextLexer
from pygments.util import ClassNotFound

CODE_CLASS = "hl"  # the CSS class around highlighted code (and the Pygments stylesheet's scope)
MAX_CARD_CHARS = 500_000
SCHEMES = {"http", "https", "mailto"}
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
_HTML_TAG = re.compile(r"<[^>]*>")
_TAGS = nh3.ALLOWED_TAGS - {"area", "map"}
_ATTRIBUTES = {
    **{k: set(v) for k, v in nh3.ALLOWED_ATTRIBUTES.items()},
    "a": {"href", "hreflang", "title", "class"},
    "img": {"src", "alt", "title", "width", "height"},
    "span": {"class"},
    "code": {"class"},
    "pre": {"class"},
    "div": {"class"},
    "th": {"align", "colspan", "rowspan"},
    "td": {"align", "colspan", "rowspan"},
    **{f"h{i}": {"id"} for i in range(1, 7)},
}


def _slug(text: str) -> str:
    slug = re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")
    return slug or "section"


def _fence(code: str, lang: str, _attrs) -> str:
    """Highlight a fenced block's code by its language name ("" keeps markdown-it's escaping)."""
    try:
        lexer = get_lexer_by_name(lang.strip()) if lang.strip() else None
    except ClassNotFound:
        lexer = None
    if lexer is None:
        return ""
    return highlight(code, lexer, HtmlFormatter(nowrap=True))


@functools.cache
def _parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": True, "highlight": _fence})
    md.enable(["table", "strikethrough"])
    md.use(front_matter_plugin)
    md.use(anchors_plugin, min_level=1, max_level=4, slug_func=_slug, permalink=True, permalinkSymbol="#")
    return md


@functools.cache
def _text_parser() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"]).use(front_matter_plugin)


def plain_text(text: str, limit: int) -> str:
    """README.md `text` as plain text of at most `limit` characters, for search: the words of
    headings, paragraphs, tables, link texts, image alt texts and code; Markdown syntax, the YAML
    front matter and HTML tags dropped; whitespace runs as one space."""
    parts: list[str] = []
    size = 0
    for token in _text_parser().parse(text[: limit * 20]):
        if token.type == "inline":
            pieces = ["".join(c.content if c.type in ("text", "code_inline", "image") else
                              " " if c.type in ("softbreak", "hardbreak") else "" for c in token.children or ())]
        elif token.type in ("fence", "code_block"):
            pieces = [token.content]
        elif token.type == "html_block":
            pieces = [_HTML_TAG.sub(" ", token.content)]
        else:
            continue
        for piece in pieces:
            parts.append(piece)
            size += len(piece) + 1
        if size > limit * 2:  # enough: the rest would be cut
            break
    return " ".join(" ".join(parts).split())[:limit]


def _link_filter(base: str):
    """nh3 attribute filter: drop unsafe URL schemes; relative links open the file in the repo
    (`{base}/blob/...`), relative images load from `{base}/resolve/...`."""

    def filter_(tag: str, attr: str, value: str) -> str | None:
        if attr not in ("href", "src"):
            return value
        url = value.strip()
        if url.startswith(("#", "/", "?")):
            return url if not url.startswith("//") else None
        scheme = _SCHEME.match(url)
        if scheme:
            return url if scheme.group(0)[:-1].lower() in SCHEMES else None
        rel = quote(url.removeprefix("./"), safe="/#?&=%")
        return f"{base}/{'resolve' if tag == 'img' else 'blob'}/main/{rel}"

    return filter_


def render_card(text: str, base: str) -> str:
    """README.md `text` (front matter skipped) as sanitised HTML; `base` is the repo's page path."""
    html = _parser().render(text[:MAX_CARD_CHARS])
    return nh3.clean(
        html,
        tags=_TAGS,
        clean_content_tags={"script", "style"},
        attributes=_ATTRIBUTES,
        attribute_filter=_link_filter(base),
        url_schemes=SCHEMES,
        link_rel="noopener noreferrer nofollow",
    )


def highlight_file(path: str, text: str) -> str:
    """`text` highlighted as `path`'s language, in a table with linkable line numbers (#L12)."""
    try:
        lexer = guess_lexer_for_filename(path, text[:4096])
    except ClassNotFound:
        lexer = TextLexer()
    formatter = HtmlFormatter(linenos="table", anchorlinenos=True, lineanchors="L", cssclass=CODE_CLASS)
    return highlight(text, lexer, formatter)


@functools.cache
def pygments_css() -> str:
    """Pygments' token colours for light pages, and a dark set under prefers-color-scheme."""
    light = HtmlFormatter(style="default").get_style_defs([f".{CODE_CLASS}", ".card pre"])
    dark = HtmlFormatter(style="monokai").get_style_defs([f".{CODE_CLASS}", ".card pre"])
    return f"{light}\n@media (prefers-color-scheme: dark) {{\n{dark}\n}}\n"
