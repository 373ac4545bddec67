"""The built docs site (``site/``, from ``mkdocs build --strict``) renders in a browser.

Opens every page of mkdocs.yml's nav in headless Chromium (through selenium and the system's
chromedriver: no download) and checks what a reader sees: each page loads with its title and
its content; the math is MathML that the browser lays out, as many formulas as the source
has, with no TeX or reStructuredText markup left in the text; every figure of the examples
page is a decoded PNG of the site; the API pages hold every transform of the catalogue,
with its formula and log-det. Run by tox env ``docs`` after the build; skipped, with the
reason, where the site is not built or Chromium, chromedriver or selenium is absent.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import pathlib
import re
import shutil

import pytest

import flowcore as fc
import flowcore.transforms

ROOT = pathlib.Path(__file__).resolve().parent.parent
SITE = ROOT / "site"
DOCS = ROOT / "docs"

#: The figure each example writes (tests/test_examples.py copies them into docs/figures).
FIGURES = {
    "demo.png": "examples/demo.py",
    "two_moons.png": "examples/two_moons.py",
    "conditional_moons.png": "examples/conditional_moons.py",
    "porting.png": "examples/porting.py",
    "digits.png": "examples/digits.py",
    "anomaly_map.png": "examples/anomaly_map.py",
    "disentangling_arc.png": "examples/disentangling_arc.py",
}
#: The user-facing functions and classes the API page must document.
API = [
    "build", "save", "load", "log_prob", "sample", "get_params", "set_params", "SequenceINN",
    "GraphINN", "InputNode", "ConditionNode", "OutputNode", "Node", "MLP", "ConvNet",
    "set_backend", "installed_backends",
]  # fmt: skip

#: Markup that must not reach a reader: TeX commands, math delimiters, RST roles.
LEFT_OVER = re.compile(
    r":(?:math|class|func|meth|attr|mod|data):`|``|\.\. math::|\$\$|\\\(|\\\)|\\\[|\\\]"
    r"|\$|\\(?:frac|sum|mathrm|alpha|sigma|theta|odot|log|begin|end|text|quad|lVert|partial)\b"
)
#: $...$ and $$...$$ in a hand-written page (no escaped dollars are used in docs/).
DOLLAR_MATH = re.compile(r"\$\$.+?\$\$|\$[^$\s][^$]*?\$", re.DOTALL)
#: ::: identifier lines of mkdocstrings.
AUTODOC = re.compile(r"^::: *(\S+)", re.MULTILINE)

#: JavaScript: the page's text outside code, the number of MathML elements, and those that
#: the browser did not take as MathML or did not lay out (a zero-sized box).
PAGE_FACTS = """
const article = document.querySelector("article.md-content__inner");
if (!article) { return null; }
const copy = article.cloneNode(true);
copy.querySelectorAll("pre, code, math, .doc-signature").forEach(e => e.remove());
const code = Array.from(article.querySelectorAll("pre")).map(p => p.textContent);
const maths = Array.from(article.querySelectorAll("math"));
const unrendered = maths.filter(m => {
  const box = m.getBoundingClientRect();
  return !(m instanceof MathMLElement) || box.width <= 0 || box.height <= 0;
}).map(m => m.outerHTML.slice(0, 200));
return {
  title: document.title,
  h1: (article.querySelector("h1") || {}).textContent || "",
  text: copy.textContent,
  code: code,
  maths: maths.length,
  unrendered: unrendered,
};
"""
#: JavaScript: the images of the page's article, as the browser decoded them.
IMAGES = """
return Array.from(document.querySelectorAll("article.md-content__inner img")).map(img => ({
  src: img.getAttribute("src"), complete: img.complete,
  width: img.naturalWidth, height: img.naturalHeight,
}));
"""
#: JavaScript: per documented object (by heading id), its heading text, its MathML count
#: and its text.
OBJECTS = """
return Array.from(document.querySelectorAll(".doc-heading[id]")).map(h => {
  const section = h.closest(".doc-object");
  const contents = section ? section.querySelector(".doc-contents") : null;
  return {
    id: h.id, heading: h.textContent,
    maths: contents ? contents.querySelectorAll("math").length : 0,
    text: contents ? contents.textContent : "",
  };
});
"""


def _nav_pages() -> list[str]:
    """The Markdown files of mkdocs.yml's nav, in order."""
    yaml = pytest.importorskip("yaml", reason="reading mkdocs.yml needs PyYAML (mkdocs has it)")
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())

    def walk(items: object) -> list[str]:
        if isinstance(items, str):
            return [items]
        if isinstance(items, list):
            return [page for item in items for page in walk(item)]
        if isinstance(items, dict):
            return [page for value in items.values() for page in walk(value)]
        return []

    return walk(config["nav"])


def _html(page: str) -> pathlib.Path:
    return SITE / (page[: -len(".md")] + ".html")


@pytest.fixture(scope="module")
def browser():
    if not (SITE / "index.html").exists():
        pytest.skip("the docs site is not built: run `mkdocs build --strict` first")
    names = ("chromium", "chromium-browser", "google-chrome")
    chromium = next((shutil.which(n) for n in names if shutil.which(n)), None)
    driver_path = shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        pytest.skip(
            "headless Chromium and chromedriver are needed: "
            "`apt-get install -y chromium chromium-driver`"
        )
    webdriver = pytest.importorskip(
        "selenium.webdriver", reason="selenium is needed: pip install -e '.[docs]'"
    )
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,1024", "--allow-file-access-from-files"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(
        options=options, service=webdriver.ChromeService(executable_path=driver_path)
    )
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def pages(browser):
    """What the browser shows of every nav page, by its Markdown path."""
    facts = {}
    for page in _nav_pages():
        path = _html(page)
        assert path.exists(), f"{page} is in the nav but {path.relative_to(ROOT)} was not built"
        browser.get(path.as_uri())
        facts[page] = browser.execute_script(PAGE_FACTS)
        assert facts[page] is not None, f"{page}: no article in the rendered page"
        facts[page]["objects"] = browser.execute_script(OBJECTS)
        facts[page]["images"] = browser.execute_script(IMAGES)
    return facts


def test_every_nav_page_loads_with_its_title_and_content(pages):
    for page in _nav_pages():
        page_facts = pages[page]
        assert page_facts["title"].endswith("flowcore"), (page, page_facts["title"])
        assert page_facts["h1"].strip(), f"{page}: no heading"
        assert len(page_facts["text"].split()) > 50, f"{page}: almost no text"
        assert ":::" not in page_facts["text"], f"{page}: a `:::` block was not rendered"
        ids = [o["id"] for o in page_facts["objects"]]
        for identifier in AUTODOC.findall((DOCS / page).read_text()):
            assert any(i == identifier or i.startswith(identifier + ".") for i in ids), (
                f"{page}: `::: {identifier}` rendered no object"
            )


def _formulas(doc: str | None) -> int:
    """How many formulas a docstring holds, at the least."""
    return (doc or "").count(":math:`") + (doc or "").count(".. math::")


def _docstring_math(identifier: str) -> int:
    """How many formulas ``::: identifier`` renders, at the least: those of the object's own
    docstring and, for a module, of the docstrings of what it exports."""
    if not identifier.startswith("flowcore"):
        return 0  # flowcore.backends is not imported here: it would import the frameworks
    module_name, _, attribute = identifier.rpartition(".")
    try:
        obj = importlib.import_module(identifier)
    except ImportError:
        obj = getattr(importlib.import_module(module_name), attribute)
    count = _formulas(obj.__doc__)
    if inspect.ismodule(obj):
        count += sum(_formulas(getattr(obj, n).__doc__) for n in getattr(obj, "__all__", ()))
    return count


def test_math_is_rendered_as_mathml_and_no_markup_is_left(pages):
    with_math = 0
    for page in _nav_pages():
        page_facts = pages[page]
        source = (DOCS / page).read_text()
        fenced = re.sub(r"```.*?```", "", source, flags=re.DOTALL)
        fenced = re.sub(r"`[^`\n]*`", "", fenced)
        expected = len(DOLLAR_MATH.findall(fenced))
        expected += sum(_docstring_math(i) for i in AUTODOC.findall(source))
        assert page_facts["maths"] >= expected, (
            f"{page}: {expected} formulas in the source, {page_facts['maths']} rendered"
        )
        unrendered = page_facts["unrendered"]
        assert not unrendered, f"{page}: MathML not laid out: {unrendered[:3]}"
        text = page_facts["text"]
        left = LEFT_OVER.search(text)
        where = text[max(0, left.start() - 60) : left.end() + 60] if left else ""
        assert left is None, f"{page}: markup left in the text: ...{where}..."
        with_math += expected > 0
    assert with_math >= 10, f"only {with_math} pages have math"


def test_every_figure_of_the_examples_page_is_a_png_of_the_site(pages):
    page_facts = pages["examples.md"]
    shown = {pathlib.PurePosixPath(i["src"]).name: i for i in page_facts["images"]}
    assert set(shown) == set(FIGURES), f"figures on the page: {sorted(shown)}"
    for name, image in shown.items():
        path = (SITE / image["src"]).resolve()
        assert path.is_file(), f"{name}: {image['src']} is not in site/"
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{name} is not a PNG"
        assert len(data) > 5_000, f"{name} is only {len(data)} bytes"
        assert image["complete"] and image["width"] >= 200 and image["height"] >= 100, (
            f"{name}: the browser decoded {image['width']}x{image['height']}"
        )
    commands = " ".join(page_facts["code"])
    for name, script in FIGURES.items():
        assert f"python {script}" in commands, f"examples page: no command for {name}"


def _catalogue() -> list[tuple[str, object]]:
    return [(name, getattr(flowcore.transforms, name)) for name in flowcore.transforms.__all__]


def test_api_pages_hold_every_transform_with_its_formula_and_log_det(pages):
    objects = {o["id"]: o for facts in pages.values() for o in facts["objects"]}
    for name, obj in _catalogue():
        module = obj.__module__
        identifier = f"{module}.{name}"
        page = f"transforms/{module.rsplit('.', 1)[-1]}.md"
        assert identifier in {o["id"] for o in pages[page]["objects"]}, (
            f"{name} is not documented on {page}"
        )
        found = objects[identifier]
        assert name in found["heading"], (name, found["heading"])
        formulas = _formulas(obj.__doc__)
        assert found["maths"] >= formulas, (
            f"{name}: {formulas} formulas in its docstring, {found['maths']} rendered"
        )
        if isinstance(obj, type) and issubclass(obj, fc.Transform):
            assert "log-det" in found["text"].lower(), f"{name}: no log-det in its reference"
            assert formulas == 0 or found["maths"] > 0, f"{name}: no formula rendered"


def test_api_page_documents_the_user_facing_functions(pages):
    ids = {o["id"] for o in pages["api.md"]["objects"]}
    for name in API:
        assert f"flowcore.{name}" in ids, f"api.md lacks flowcore.{name}"
    headings = " ".join(o["heading"] for o in pages["api.md"]["objects"])
    for trainer in ("flowcore.backends.torch.fit", "flowcore.backends.jax.fit"):
        assert trainer in headings, f"api.md lacks {trainer}"


def _hooks():
    """docs/hooks' modules (the griffe extension needs griffe, the math hook latex2mathml)."""
    pytest.importorskip("griffe", reason="the docs hooks need the docs extra")
    pytest.importorskip("latex2mathml", reason="the docs hooks need the docs extra")
    spec_paths = {n: DOCS / "hooks" / f"{n}.py" for n in ("rst_docstrings", "mathml")}
    modules = {}
    for name, path in spec_paths.items():
        spec = importlib.util.spec_from_file_location(f"docs_hooks_{name}", path)
        assert spec is not None and spec.loader is not None
        modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(modules[name])
    return modules["rst_docstrings"], modules["mathml"]


def test_docstrings_become_markdown_with_math_code_and_links():
    rst, _ = _hooks()
    text = (
        "Maps ``x`` by :math:`e^{s}`; see :class:`~flowcore.SequenceINN` and\n"
        ":func:`build`. Its ``InputNode`` s.\n\n"
        ".. math::\n\n    a &= b \\\\\n    c &= d\n\n    e = f\n\n"
        "Log-det: :math:`\\sum s`.\n\nA graph::\n\n    x = 1\n"
    )
    resolved = {"flowcore.SequenceINN": "flowcore.models.sequence.SequenceINN"}
    out = rst.convert(text, lambda name: resolved.get(name))
    assert "`x`" in out and "``" not in out.replace("```", "")
    assert "\\(e^{s}\\)" in out and ":math:" not in out
    assert (
        '<autoref identifier="flowcore.models.sequence.SequenceINN" optional>'
        "<code>SequenceINN</code></autoref>"
    ) in out
    assert "<code>build()</code>" in out  # unresolved: code without a link
    assert "`InputNode`s" in out
    assert out.count("$$") == 4 and "\\begin{aligned}" in out  # two equations, one aligned
    assert "**Log-det:**" in out
    assert "A graph:\n\n```python\nx = 1\n```" in out


def test_math_becomes_mathml_and_unknown_tex_is_a_warning(caplog):
    _, mathml = _hooks()
    page = (
        '<p><span class="arithmatex">\\(a &lt; b\\)</span></p>'
        '<div class="arithmatex">\\[\\begin{aligned} s &amp;= 1 \\\\ [t] &amp;= 2'
        "\\end{aligned}\\]</div>"
    )
    out = mathml.render(page)
    assert out.count("<math") == 2 and "\\(" not in out and "\\[" not in out
    assert 'display="block"' in out and "<mtable" in out and "<mo>&#x0003C;</mo>" in out
    assert not caplog.records
    mathml.render('<span class="arithmatex">\\(\\nosuchcommand x\\)</span>', where="page.md")
    assert any("page.md" in r.getMessage() for r in caplog.records)
