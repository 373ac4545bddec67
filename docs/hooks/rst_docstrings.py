"""A griffe extension that turns flowcore's Sphinx-flavoured docstrings into Markdown.

flowcore's docstrings are written for ``help()`` and Sphinx: ``double backticks``,
``:math:`...``` roles, ``.. math::`` blocks, ``:class:`~flowcore.X``` cross-reference roles,
``text::`` literal blocks and paragraphs led by ``Log-det:``, ``Options:`` or ``References:``.
mkdocstrings renders Markdown, so before it parses a docstring this extension rewrites it:

- ``:math:`x``` becomes ``\\(x\\)`` and a ``.. math::`` block one ``$$ ... $$`` display per
  equation (a block's blank lines separate its equations; an equation aligned with ``&`` is
  wrapped in ``aligned``), which ``pymdownx.arithmatex`` keeps away from Markdown and the
  ``mathml`` hook turns into MathML;
- ``double backticks`` become ``single backticks`` (inline code);
- ``:func:`name```, ``:class:`~a.b.C```, ``:meth:``, ``:attr:``, ... become inline code wrapped
  in an optional autorefs link to the name resolved in the docstring's scope: a link where the
  target is documented on the site, plain code where it is not;
- a paragraph ending in ``::`` introduces a fenced Python block;
- ``Log-det:``, ``Options:``, ``Parameters:``, ``References:`` and the like, leading a
  paragraph, become bold lead-ins.

Loaded by mkdocs.yml: ``plugins.mkdocstrings.handlers.python.options.extensions``.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from typing import Any

import griffe

#: ``:role:`target``` and ``:role:`title <target>```; ``~`` shows the last component only.
ROLE = re.compile(r":(?:py:)?(func|class|meth|attr|data|mod|exc|obj|const|type):`([^`]+)`")
MATH_ROLE = re.compile(r":math:`([^`]+)`")
#: Inline code; RST's plural of code, "``name`` s", loses its space.
DOUBLE_BACKTICKS = re.compile(r"(?<!`)``(?!`)(.+?)(?<!`)``(?!`)(?: (s)\b)?", re.DOTALL)
MATH_DIRECTIVE = re.compile(r"^(?P<indent>[ \t]*)\.\. math::[ \t]*(?P<rest>.*)$")
#: The lead-ins of flowcore's docstring paragraphs (not Google sections: they run on).
LEAD_INS = (
    "Log-det",
    "Log-dets",
    "Options",
    "Option",
    "Parameters",
    "Parameter",
    "No parameters",
    "References",
    "Reference",
    "State",
    "Input domain",
    "Raises",
    "Returns",
    "Examples",
    "Example",
    "Note",
    "Notes",
)
LEAD_IN = re.compile(r"^(?P<indent>[ \t]*)(?P<name>" + "|".join(LEAD_INS) + r"):(?=\s|$)")

#: Fenced code and displays span lines.
FLAGS = re.MULTILINE | re.DOTALL

Resolver = Callable[[str], str | None]


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _display(lines: list[str], indent: str) -> list[str]:
    """One ``$$`` display per equation of a math block's (dedented) lines."""
    out: list[str] = []
    equations: list[list[str]] = [[]]
    for line in lines:
        if line.strip():
            equations[-1].append(line.strip())
        elif equations[-1]:
            equations.append([])
    for equation in equations:
        if not equation:
            continue
        tex = "\n".join(equation)
        if "&" in tex and "\\begin" not in tex:
            tex = "\\begin{aligned}\n" + tex + "\n\\end{aligned}"
        out += ["", f"{indent}$$", *(indent + t for t in tex.split("\n")), f"{indent}$$", ""]
    return out


def _math_blocks(lines: list[str]) -> list[str]:
    """``.. math::`` directives (with their indented bodies) as ``$$`` displays."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        match = MATH_DIRECTIVE.match(lines[i])
        if not match:
            out.append(lines[i])
            i += 1
            continue
        base = len(match["indent"])
        body = [match["rest"]] if match["rest"].strip() else []
        i += 1
        while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > base):
            body.append(lines[i])
            i += 1
        # trailing blank lines belong to the text after the block
        while body and not body[-1].strip():
            body.pop()
            i -= 1
        out += _display(body, match["indent"])
    return out


def _literal_blocks(lines: list[str]) -> list[str]:
    """A paragraph ending in ``::`` followed by an indented block: the block fenced."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.rstrip().endswith("::") or line.strip().startswith(".."):
            out.append(line)
            i += 1
            continue
        stripped = line.rstrip()[:-2].rstrip()
        base = _indent(line)
        j = i + 1
        while j < len(lines) and not lines[j].strip():
            j += 1
        if j >= len(lines) or _indent(lines[j]) <= base:
            out.append(line)
            i += 1
            continue
        if stripped.strip():
            out.append(stripped + ":")
        block: list[str] = []
        while j < len(lines) and (not lines[j].strip() or _indent(lines[j]) > base):
            block.append(lines[j])
            j += 1
        while block and not block[-1].strip():
            block.pop()
            j -= 1
        depth = min(_indent(b) for b in block if b.strip())
        pad = " " * base
        out += ["", pad + "```python", *(pad + b[depth:] for b in block), pad + "```"]
        i = j
    return out


def _role(match: re.Match[str], resolve: Resolver) -> str:
    text = match[2].strip()
    if "<" in text and text.endswith(">"):
        title, target = text[:-1].split("<", 1)
        title, target = title.strip(), target.strip()
    else:
        target = text.lstrip("~").lstrip(".")
        title = target.rsplit(".", 1)[-1] if text.startswith("~") else target
    if match[1] in ("func", "meth") and not title.endswith(")"):
        title += "()"
    code = f"<code>{html.escape(title)}</code>"
    identifier = resolve(target.rstrip("()"))
    if identifier is None:
        return code
    return f'<autoref identifier="{html.escape(identifier)}" optional>{code}</autoref>'


def convert(text: str, resolve: Resolver = lambda name: None) -> str:
    """The Markdown of an RST-flavoured docstring; ``resolve`` maps a role's target to the
    full path of an object (or None: no link)."""
    lines = _math_blocks(text.split("\n"))
    lines = _literal_blocks(lines)
    out: list[str] = []
    fenced = False
    previous_blank = True
    for line in lines:
        if line.strip().startswith("```"):
            fenced = not fenced
        if not fenced:
            line = LEAD_IN.sub(r"\g<indent>**\g<name>:**", line) if previous_blank else line
        out.append(line)
        previous_blank = not line.strip()
    text = "\n".join(out)
    # inline markup, outside fenced code and math displays
    parts = re.split(r"(^[ \t]*```.*?^[ \t]*```|^[ \t]*\$\$\n.*?^[ \t]*\$\$$)", text, flags=FLAGS)
    for k in range(0, len(parts), 2):
        part = MATH_ROLE.sub(lambda m: "\\(" + m[1] + "\\)", parts[k])
        part = DOUBLE_BACKTICKS.sub(lambda m: _code(m[1]) + (m[2] or ""), part)
        parts[k] = ROLE.sub(lambda m: _role(m, resolve), part)
    return "".join(parts)


def _code(text: str) -> str:
    """Inline code for ``text`` (a backtick inside takes a longer fence)."""
    text = " ".join(text.split())
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def resolver(obj: griffe.Object) -> Resolver:
    """Resolve a role's target as Python would in ``obj``'s scope: its members, its module's
    imports and members, then as an absolute path."""

    def resolve(name: str) -> str | None:
        if not name:
            return None
        head, _, tail = name.partition(".")
        scope: Any = obj
        while scope is not None:
            try:
                path = scope.resolve(head)
            except Exception:  # noqa: BLE001 - griffe raises several kinds; any means "not here"
                scope = scope.parent
                continue
            return f"{path}.{tail}" if tail else str(path)
        return name if "." in name else None

    return resolve


class RstDocstrings(griffe.Extension):
    """Rewrite every docstring into Markdown once the package is loaded (so that every name
    its roles mention can be resolved)."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        self._walk(pkg, set())

    def _walk(self, obj: griffe.Object, seen: set[str]) -> None:
        if obj.path in seen:
            return
        seen.add(obj.path)
        if obj.docstring is not None:
            obj.docstring.value = convert(obj.docstring.value, resolver(obj))
        for member in obj.members.values():
            if not member.is_alias:
                self._walk(member, seen)  # type: ignore[arg-type]
