"""Rendered-page checks: build the book from the committed, executed notebooks and inspect the HTML.

The chapters' code is executed and compared by nbval (the notebooks under ``chapters/``) and by
``make book``; this test renders the stored outputs (execution off, about a minute) and checks what a
reader gets: every chapter page exists, has its captioned figures, shows no traceback or error output,
embeds the widget state, and loads MathJax and the widget JavaScript from the book itself (no CDN).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _chapters() -> list[str]:
    toc = (REPO / "book" / "_toc.yml").read_text()
    return re.findall(r"^\s*- file: (chapters/\S+)\s*$", toc, re.M)


@pytest.fixture(scope="module")
def html_dir(tmp_path_factory) -> Path:
    jb = Path(sys.executable).with_name("jupyter-book")
    if not jb.exists():
        pytest.skip("jupyter-book is not installed (pip install -e '.[book]')")
    out = tmp_path_factory.mktemp("book")
    config = (REPO / "_config.yml").read_text()
    config = re.sub(r"execute_notebooks:\s*\w+", 'execute_notebooks: "off"', config)
    # Jupyter Book resolves local_extensions' folders from the config file's folder: keep them in the repository.
    config = re.sub(r"^(\s+\w+: )(book/_ext)\s*$", lambda m: f"{m.group(1)}{REPO / m.group(2)}", config, flags=re.M)
    (out / "_config.yml").write_text(config)
    result = subprocess.run(
        [str(jb), "build", str(REPO), "--toc", str(REPO / "book" / "_toc.yml"), "--config", str(out / "_config.yml"),
         "--path-output", str(out), "-W", "-n", "--keep-going"],
        capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    html = out / "_build" / "html"
    yield html
    shutil.rmtree(out, ignore_errors=True)


def _figure_names(notebook: Path) -> list[str]:
    nb = json.loads(notebook.read_text())
    names = []
    for cell in nb["cells"]:
        fig = cell.get("metadata", {}).get("mystnb", {}).get("figure", {})
        if fig.get("name"):
            names.append(fig["name"])
    return names


@pytest.mark.parametrize("chapter", _chapters())
def test_chapter_page_renders(html_dir, chapter):
    page = html_dir / f"{chapter}.html"
    assert page.is_file(), f"{page} was not built"
    text = page.read_text(encoding="utf-8")
    for marker in ("Traceback (most recent call last)", 'class="output error', "Error</span>: "):
        assert marker not in text, f"{chapter}: error output on the page ({marker!r})"
    names = _figure_names(REPO / f"{chapter}.ipynb")
    for name in names:
        assert f'id="{name}"' in text, f"{chapter}: figure {name!r} missing"
    assert text.count("<img") >= len(names)
    assert text.count('class="caption') >= len(names)
    assert "Summary" in text and "Exercises" in text


def test_math_and_widget_javascript_are_local(html_dir):
    pages = {p: p.read_text(encoding="utf-8") for p in (html_dir / "chapters").glob("*.html")}
    assert pages
    for page, text in pages.items():
        remote = re.findall(r'<(?:script|link)[^>]*(?:src|href)="(https?://[^"]+)"', text)
        assert not remote, f"{page.name} loads {remote} from the network"
    with_widgets = [p for p, t in pages.items() if "application/vnd.jupyter.widget-state+json" in t]
    names = {p.stem for p in with_widgets}
    assert {"04_features", "05_steering"} <= names, names
    for page in with_widgets:
        text = pages[page]
        assert "vendor/html-manager/embed-amd.js" in text and "vendor/requirejs/require.js" in text
        state = re.search(r'<script type="application/vnd.jupyter.widget-state\+json">(.*?)</script>', text, re.S)
        assert state and json.loads(state.group(1))["state"], f"{page.name}: empty widget state"
    static = html_dir / "_static" / "vendor"
    assert (static / "html-manager" / "embed-amd.js").is_file() and (static / "mathjax" / "tex-svg-full.js").is_file()
    assert any("vendor/mathjax/tex-svg-full.js" in t for t in pages.values())


def test_api_and_glossary_pages(html_dir):
    api = (html_dir / "book" / "api.html").read_text(encoding="utf-8")
    for name in ("seqsae_lib.model.sasrec.SASRec", "seqsae_lib.sae.autoencoder.SparseAutoencoder", "seqsae_lib.interpret.explain.explain_final",
                 "seqsae_lib.steering.live.LiveSteering"):
        assert f'id="{name}"' in api, f"API page lacks {name}"
    assert "Capture point" in (html_dir / "book" / "glossary.html").read_text(encoding="utf-8")


def _cited_sources(markdown: str) -> list[str]:
    """The (Author, year)(URL) links of a markdown text whose URL is a source of book/references.bib."""
    bib = (REPO / "book" / "references.bib").read_text(encoding="utf-8")
    links = re.findall(r"\[[^\]]*\b(?:19|20)\d\d\)?\]\((https?://[^)\s]+)\)", markdown)
    return [url for url in links if url.rstrip("/").split("doi.org/")[-1].split("/abs/")[-1] in bib]


@pytest.mark.parametrize("chapter", _chapters())
def test_citations_read_in_jupyterlab(chapter):
    """JupyterLab shows MyST roles as raw text: chapters cite as (Author, year) links to the paper (its DOI, arXiv or
    web address, as in book/references.bib), which read the same in JupyterLab and in the book. The book's
    References page lists every entry of the bibliography (`:all:`)."""
    nb = json.loads((REPO / f"{chapter}.ipynb").read_text())
    markdown = "".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    assert "{cite" not in markdown, f"{chapter}: a {{cite}} role shows as raw text in JupyterLab"
    links = re.findall(r"\[[^\]]*\b(?:19|20)\d\d\)?\]\((https?://[^)\s]+)\)", markdown)
    assert links and len(_cited_sources(markdown)) == len(links), f"{chapter}: a citation link is not in references.bib"
    assert ":all:" in (REPO / "book" / "references.md").read_text()


@pytest.mark.parametrize("chapter", _chapters())
def test_chapter_structure(chapter):
    """Goals, prerequisites and runtime up front; one parameters cell an instructor edits; executed solutions, hidden in
    the book and collapsed in JupyterLab."""
    nb = json.loads((REPO / f"{chapter}.ipynb").read_text())
    cells = nb["cells"]
    opening = "".join(cells[0]["source"])
    for heading in ("**Goals.**", "**Prerequisites.**", "**Runtime.**"):
        assert heading in opening, f"{chapter}: the first cell lacks {heading}"
    markdown = "".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    assert "{cite}" in markdown or _cited_sources(markdown), f"{chapter} cites no paper"
    params = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1, f"{chapter}: expected one parameters cell, found {len(params)}"
    names = set(re.findall(r"^([A-Z_]+)\s*=", "".join(params[0]["source"]), re.M))
    assert {"DATASET", "SEED", "THREADS"} <= names, f"{chapter}: parameters cell has {sorted(names)}"
    for i, cell in enumerate(cells):
        images = [o for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
        hidden = "hide-cell" in cell.get("metadata", {}).get("tags", [])  # solutions may draw uncaptioned
        if images and not hidden:
            caption = cell.get("metadata", {}).get("mystnb", {}).get("figure", {}).get("caption")
            assert caption, f"{chapter}: cell {i} draws a figure without a caption"
    text = ["".join(c["source"]) for c in cells]
    summary = next(i for i, t in enumerate(text) if "## Summary" in t)
    assert any("## Exercises" in t for t in text[summary:]), chapter
    solutions = [i for i, t in enumerate(text) if cells[i]["cell_type"] == "markdown" and t.startswith("**Solution")]
    assert solutions, f"{chapter}: no solutions"
    for i in solutions:
        follow = cells[i + 1]
        if follow["cell_type"] == "code":
            assert "hide-cell" in follow.get("metadata", {}).get("tags", []), f"{chapter}: solution cell {i + 1} shown"
            assert follow.get("outputs") or follow.get("execution_count"), f"{chapter}: solution cell {i + 1} not executed"
    for i, cell in enumerate(cells):  # collapsed in JupyterLab and Notebook 7 too, not only in the HTML
        if "hide-cell" in cell.get("metadata", {}).get("tags", []):
            folded = cell["metadata"].get("jupyter", {})
            assert folded.get("source_hidden") is True and folded.get("outputs_hidden") is True, \
                f"{chapter}: hide-cell cell {i} is not collapsed in Jupyter (metadata jupyter.source_hidden/outputs_hidden)"


@pytest.mark.parametrize("chapter", _chapters())
def test_launch_and_download_buttons_point_at_the_notebook(html_dir, chapter):
    text = (html_dir / f"{chapter}.html").read_text(encoding="utf-8")
    config = (REPO / "_config.yml").read_text()
    repo = re.search(r"^\s*url:\s*https://github\.com/(\S+)\s*$", config, re.M).group(1)
    branch = re.search(r"^\s*branch:\s*(\S+)\s*$", config, re.M).group(1)
    assert f'href="https://colab.research.google.com/github/{repo}/blob/{branch}/{chapter}.ipynb"' in text
    assert f'href="https://mybinder.org/v2/gh/{repo}/{branch}?urlpath=tree/{chapter}.ipynb"' in text
    name = chapter.split("/")[-1]
    assert f'_sources/chapters/{name}.ipynb"' in text  # the download button
    assert (REPO / "binder" / "postBuild").is_file()


@pytest.mark.parametrize("chapter", _chapters())
def test_plotting_boilerplate_is_folded(chapter):
    """Cells that build a matplotlib figure by hand are folded (hide-input); one-line library plots stay visible."""
    nb = json.loads((REPO / f"{chapter}.ipynb").read_text())
    for i, cell in enumerate(nb["cells"]):
        source = "".join(cell["source"])
        if cell["cell_type"] == "code" and "plt.subplots" in source:
            tags = set(cell.get("metadata", {}).get("tags", []))
            assert tags & {"hide-input", "hide-cell", "remove-input"}, f"{chapter}: cell {i} shows plotting boilerplate"


def test_make_lab_opens_the_chapters_from_the_venv(tmp_path):
    """`make lab` (dry run: no server) installs the lab extra and starts the venv's JupyterLab on chapters/,
    passing SEQSAE_DATA on; the README and the intro say how."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / ".installed").touch()  # newer than pyproject.toml: the set-up step is up to date
    env = {"PATH": "/usr/bin:/bin", "SEQSAE_DATA": "/some/movielens"}
    run = subprocess.run(["make", "-n", "lab", f"VENV={venv}"], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == f'SEQSAE_DATA="/some/movielens" {venv}/bin/jupyter lab --notebook-dir=chapters'
    setup = subprocess.run(["make", "-n", "setup", f"VENV={tmp_path / 'fresh'}"], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=60).stdout
    assert '/bin/pip install -e ".[book,test,lab]"' in setup
    assert re.search(r'^lab = \[\s*"jupyterlab>=4",\s*\]', (REPO / "pyproject.toml").read_text(), re.M)
    for doc in (REPO / "README.md", REPO / "book" / "intro.md"):
        text = doc.read_text()
        assert "make lab" in text and "SEQSAE_DATA" in text, doc


def test_the_api_page_documents_every_module():
    """Each module of the library (not the package __init__ files) has its automodule block on the API page."""
    import pkgutil
    from pathlib import Path

    import seqsae_lib

    root = Path(__file__).resolve().parents[1]
    page = (root / "book" / "api.md").read_text(encoding="utf-8")
    modules = [m.name for m in pkgutil.walk_packages(seqsae_lib.__path__, "seqsae_lib.") if not m.ispkg]
    missing = [m for m in modules if f".. automodule:: {m}\n" not in page]
    assert not missing, f"book/api.md lacks: {missing}"


def _colab_cell_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("colab_cell", REPO / "scripts" / "colab_cell.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("chapter", _chapters())
def test_colab_install_cell_uses_the_one_repository_url(chapter):
    """The first code cell installs the library in Colab only, from _config.yml's repository.url (the launch buttons'
    URL); `python scripts/colab_cell.py` writes it. Anywhere else it does nothing and has no output."""
    import nbformat

    script = _colab_cell_script()
    url = script.repository_url()
    assert url.startswith("https://github.com/")
    nb = nbformat.read(REPO / f"{chapter}.ipynb", as_version=4)
    assert not script.problems(nb, url), f"{chapter}: {script.problems(nb, url)} (run python scripts/colab_cell.py)"
    source = script.install_cells(nb)[0].source
    assert 'if "google.colab" in sys.modules:' in source and f"git+{url}" in source


def test_colab_install_cell_is_a_no_op_outside_colab():
    """Run through IPython's input transformer and executed with IPython's magics stubbed out: nothing is installed."""
    from IPython.core.inputtransformer2 import TransformerManager

    script = _colab_cell_script()
    code = TransformerManager().transform_cell(script.cell_source(script.repository_url()))
    calls = []

    class Shell:
        def run_line_magic(self, *args):
            calls.append(args)

    import sys as real_sys

    namespace = {"get_ipython": lambda: Shell()}
    exec(code, namespace)
    assert calls == [] and "google.colab" not in real_sys.modules
    fake = type(real_sys)("google.colab")
    real_sys.modules["google.colab"] = fake
    try:
        exec(code, {"get_ipython": lambda: Shell()})
    finally:
        del real_sys.modules["google.colab"]
    assert calls == [("pip", f'install --quiet "seqsae @ git+{script.repository_url()}"')]


def test_no_machine_path_in_the_book(html_dir):
    """Module constants that are paths (PRETRAINED_DIR, RECORDED_DIR) are documented without their value: the API page
    printed the building machine's folder. No page or text file of the built book names the repository's folder or
    the home folder."""
    from pathlib import Path

    needles = {str(REPO), str(Path.home())} - {"/"}
    for path in html_dir.rglob("*"):
        if path.suffix not in {".html", ".txt", ".js", ".json", ".ipynb"} or "vendor" in path.parts:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        found = [n for n in needles if n in text]
        assert not found, f"{path.relative_to(html_dir)} names {found}"
    assert "PosixPath(" not in (html_dir / "book" / "api.html").read_text(encoding="utf-8")


def test_pages_declare_their_scripts_once_and_set_theme_mode_and_favicon(html_dir):
    """The browser console stayed clean only if: sphinx-thebe's inline config is on the page once (book/_ext/seqsae_book.py;
    twice threw "Identifier 'THEBE_JS_URL' has already been declared"), the theme's default mode is set (empty, every
    page logged "Got invalid theme mode"), the page links a favicon (else browsers ask the server for /favicon.ico),
    and widget pages map the widget bundle's modules to the vendored fonts (widgets-setup.js)."""
    pages = list((html_dir / "chapters").glob("*.html")) + list((html_dir / "book").glob("*.html"))
    assert pages
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert text.count("const THEBE_JS_URL") <= 1, page.name
        assert 'dataset.mode = localStorage.getItem("mode") || "light"' in text, page.name
        assert re.search(r'<link rel="icon" href="[./]*_static/favicon\.svg"', text), page.name
    assert (html_dir / "_static" / "favicon.svg").is_file()
    assert (html_dir / "favicon.ico").is_file()  # for pages without the link (index.html is a redirect)
    setup = (REPO / "book" / "_static" / "widgets-setup.js").read_text()
    assert '"@jupyter-widgets/html-manager/dist/libembed-amd"' in setup and "window.require = { paths: paths }" in setup
