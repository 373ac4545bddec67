"""An mkdocs hook that renders the site's TeX as MathML when the site is built.

``pymdownx.arithmatex`` (generic mode) finds ``$...$``, ``\\(...\\)`` and ``$$...$$`` in the
Markdown (the hand-written pages and, through the ``rst_docstrings`` griffe extension, the
docstrings) and leaves each as ``<span class="arithmatex">\\(...\\)</span>`` or
``<div class="arithmatex">\\[...\\]</div>``. This hook replaces those with the MathML of
``latex2mathml``, which browsers render natively: no JavaScript, no fonts and no network at
build or view time. A formula that latex2mathml cannot render (an unknown command comes back
as text) is logged as a warning, so ``mkdocs build --strict`` fails on it.
"""

from __future__ import annotations

import html
import logging
import re
from typing import Any

from latex2mathml.converter import convert

log = logging.getLogger("mkdocs.hooks.mathml")

ARITHMATEX = re.compile(
    r'<(?P<tag>span|div) class="arithmatex">\s*'
    r"(?:\\\((?P<inline>.*?)\\\)|\\\[(?P<block>.*?)\\\])\s*</(?P=tag)>",
    re.DOTALL,
)
#: MathML text nodes (``<mi>``, ``<mo>``, ``<mtext>``, ...) holding a TeX command or ``&``:
#: what latex2mathml leaves of a command or an alignment it does not know.
UNRENDERED = re.compile(r"<m(?:i|o|n|text)[^>]*>[^<]*(?:\\[A-Za-z]+|&(?![#a-zA-Z0-9]+;))[^<]*<")
TEXT_ARGUMENT = re.compile(r"\\(text|texttt|mathrm|textrm|operatorname)\{([^{}]*)\}")
QUOTES = (("``", "\u201c"), ("''", "\u201d"))


def normalise(tex: str) -> str:
    """TeX that latex2mathml reads as a TeX reader would: ``aligned`` as ``align*`` (which
    it aligns), a row that starts with ``[`` as a row (not as the optional argument of the
    line break or ``\\begin`` before it), escaped underscores and TeX quotes in text arguments as
    characters."""
    tex = re.sub(r"\\(begin|end)\{aligned\}", r"\\\1{align*}", tex)
    # a row that starts with "[" is not an optional argument of the line break or the
    # \begin before it
    tex = re.sub(r"(\\\\|\\begin\{[^}]*\})(\s*)\[", r"\1\2{}[", tex)

    def text(match: re.Match[str]) -> str:
        body = match[2].replace("\\_", "_").replace("\\&", "&amp;").replace("\\%", "%")
        for tex_quote, quote in QUOTES:
            body = body.replace(tex_quote, quote)
        return f"\\{match[1]}{{{body}}}"

    return TEXT_ARGUMENT.sub(text, tex)


def to_mathml(tex: str, display: bool, where: str = "") -> str:
    """The MathML of ``tex`` (a warning where latex2mathml leaves TeX behind)."""
    try:
        mathml = convert(normalise(tex), display="block" if display else "inline")
    except Exception as error:  # noqa: BLE001 - latex2mathml raises many kinds
        log.warning("%s: latex2mathml cannot read %r: %r", where or "math", tex, error)
        return f"<code>{html.escape(tex)}</code>"
    if UNRENDERED.search(mathml):
        log.warning("%s: latex2mathml could not render all of %r", where or "math", tex)
    return mathml


def render(page_html: str, where: str = "") -> str:
    """``page_html`` with every arithmatex span and div replaced by MathML."""

    def replace(match: re.Match[str]) -> str:
        block = match["block"] is not None
        tex = html.unescape(match["block"] if block else match["inline"])
        mathml = to_mathml(tex, display=block, where=where)
        if block:
            return f'<div class="arithmatex">{mathml}</div>'
        return f'<span class="arithmatex">{mathml}</span>'

    return ARITHMATEX.sub(replace, page_html)


def on_page_content(html: str, page: Any, **kwargs: Any) -> str:
    """mkdocs' event: a page's content, Markdown and mkdocstrings blocks rendered."""
    return render(html, where=page.file.src_uri)
