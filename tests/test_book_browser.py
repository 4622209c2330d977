"""The book and a notebook, in a real browser (Debian's chromium, driven by Playwright).

Every page of the book loads with no console error and no request leaving the machine, its
math is typeset (no raw TeX, no MathJax error), its images and audio players load, and its
internal links resolve. One chapter opened in JupyterLab runs all its cells with no error.

They run as a step of their own in ``bash .ci/run``, after the book is built
(``MMCOURSE_BROWSER_TESTS=1``, ``MMCOURSE_BOOK_DIR``); run alone, this file builds the book
itself. They skip, saying why, where there is no chromium.
"""

from __future__ import annotations

import functools
import html.parser
import http.server
import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import nbformat
import pytest

from mmcourse import course

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("MMCOURSE_CHROMIUM", "/usr/bin/chromium"))
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
LAB_NOTEBOOK = "02_attention.ipynb"  # a chapter that runs in seconds

if not os.environ.get("MMCOURSE_BROWSER_TESTS"):
    pytest.skip("the browser tests are a step of their own in `bash .ci/run`; "
                "MMCOURSE_BROWSER_TESTS=1 runs them here", allow_module_level=True)
if not CHROMIUM.exists():
    pytest.skip(f"no chromium at {CHROMIUM}: `apt-get install chromium` as root "
                "(.ci/run does so where it can)", allow_module_level=True)
playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright")

CHAPTERS = [c for c in course.chapters(ROOT / "README.md") if (ROOT / "notebooks" / c.notebook).exists()]
OTHER_PAGES = ["index.html", "instructors.html", "api/index.html"]


@pytest.fixture(scope="module")
def book(tmp_path_factory) -> Path:
    given = os.environ.get("MMCOURSE_BOOK_DIR")
    if given and (Path(given) / "index.html").exists():
        return Path(given)
    from mmcourse import book as builder

    out = tmp_path_factory.mktemp("book") / "html"
    builder.build(out, root=ROOT)
    return out


@pytest.fixture(scope="module")
def site(book):
    """The book served on 127.0.0.1 (fonts and scripts load as on a real web server)."""
    handler = functools.partial(_QuietHandler, directory=str(book))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """A Chromium with a fresh profile."""
    with playwright.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=str(CHROMIUM),
            headless=True, args=FLAGS)
        yield context
        context.close()


class Problems:
    """What went wrong on one page, collected from the browser's events; every request off
    this machine is refused and noted."""

    def __init__(self, page) -> None:
        self.console: list[str] = []
        self.failed: list[str] = []
        self.outside: list[str] = []

        def route(r):
            host = urllib.parse.urlparse(r.request.url).hostname
            if host in ("127.0.0.1", None) or r.request.url.startswith("data:"):
                r.continue_()
            else:
                self.outside.append(r.request.url)
                r.abort()

        page.route("**/*", route)
        page.on("console", lambda m: m.type == "error" and self.console.append(m.text))
        page.on("pageerror", lambda e: self.console.append(f"uncaught: {e}"))
        page.on("requestfailed", lambda r: r.url not in self.outside
                and self.failed.append(f"{r.url} ({r.failure})"))
        page.on("response", lambda r: r.status >= 400 and self.failed.append(f"{r.url} ({r.status})"))


# Waits for MathJax, then reports what a reader would see.
INSPECT = """async () => {
  if (window.MathJax && MathJax.startup) { await MathJax.startup.promise; }
  const images = await Promise.all([...document.images].map(async (img) => {
    img.loading = "eager";
    try { await img.decode(); return [img.src, img.naturalWidth]; } catch (e) { return [img.src, 0]; }
  }));
  const audio = await Promise.all([...document.querySelectorAll("audio")].map((a) =>
    new Promise((resolve) => {
      const done = () => resolve([a.currentSrc.slice(0, 40), a.duration, a.error && a.error.code]);
      if (a.readyState >= 1 || a.error) { done(); return; }
      a.addEventListener("loadedmetadata", done); a.addEventListener("error", done);
      a.preload = "metadata"; a.load(); setTimeout(done, 10000);
    })));
  const skip = new Set(["PRE", "CODE", "SCRIPT", "STYLE", "TEXTAREA", "MJX-CONTAINER",
                        "MJX-ASSISTIVE-MML", "NOSCRIPT"]);
  const raw = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    let hidden = false;
    for (let e = node.parentElement; e; e = e.parentElement) { if (skip.has(e.tagName)) { hidden = true; break; } }
    if (!hidden && /\\\\[a-zA-Z]{2,}|\\$\\S[^$]*\\$|\\\\\\(|\\\\\\[/.test(node.textContent)) {
      raw.push(node.textContent.trim().slice(0, 80));
    }
  }
  return {
    math: document.querySelectorAll(".math").length,
    typeset: document.querySelectorAll(".math mjx-container, mjx-container").length,
    untypeset: [...document.querySelectorAll(".math")].filter((m) => !m.querySelector("mjx-container"))
                 .map((m) => m.textContent.slice(0, 60)),
    errors: [...document.querySelectorAll("mjx-merror")].map((e) => e.getAttribute("data-mjx-error") || e.textContent),
    raw, images, audio,
    links: [...document.querySelectorAll("a[href]")].map((a) => a.href),
  };
}"""


class _Ids(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: set[str] = set()

    def handle_starttag(self, tag, attrs) -> None:
        self.found.update(v for k, v in attrs if k in ("id", "name") and v)


@functools.cache
def _ids(path: Path) -> frozenset[str]:
    """The anchors a page offers."""
    parser = _Ids()
    parser.feed(path.read_text(encoding="utf-8"))
    return frozenset(parser.found)


def _broken_links(links: list[str], site: str, book: Path) -> list[str]:
    broken = []
    for link in links:
        if not link.startswith(site):
            continue  # external: a link, never loaded by the page
        parsed = urllib.parse.urlparse(link)
        target = book / urllib.parse.unquote(parsed.path).lstrip("/")
        if target.is_dir():
            target = target / "index.html"
        if not target.is_file():
            broken.append(f"{link} (no such file)")
        elif parsed.fragment and target.suffix == ".html" and \
                urllib.parse.unquote(parsed.fragment) not in _ids(target):
            broken.append(f"{link} (no such anchor)")
    return broken


def _visit(browser, site: str, book: Path, page_path: str) -> dict:
    page = browser.new_page()
    problems = Problems(page)
    try:
        response = page.goto(f"{site}/{page_path}", wait_until="load")
        assert response is not None and response.ok, f"{page_path}: {response and response.status}"
        report = page.evaluate(INSPECT)
        page.wait_for_timeout(200)  # late console messages
    finally:
        page.close()
    report["console"], report["failed"] = problems.console, problems.failed
    report["outside"] = problems.outside
    report["broken"] = _broken_links(report["links"], site, book)
    return report


def _assert_page_reads_well(report: dict, name: str) -> None:
    assert not report["outside"], f"{name}: requests off this machine {report['outside']}"
    assert not report["console"], f"{name}: console errors {report['console']}"
    assert not report["failed"], f"{name}: failed requests {report['failed']}"
    assert not report["untypeset"] and not report["errors"], (
        f"{name}: math not typeset {report['untypeset'][:3]}, MathJax errors {report['errors'][:3]}")
    assert not report["raw"], f"{name}: raw TeX in the text: {report['raw'][:3]}"
    bad = [src for src, width in report["images"] if not width]
    assert not bad, f"{name}: images that did not load: {bad}"
    silent = [a for a in report["audio"] if not (a[1] and a[1] > 0) or a[2]]
    assert not silent, f"{name}: audio players without sound: {silent}"
    assert not report["broken"], f"{name}: broken internal links {report['broken'][:5]}"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.number for c in CHAPTERS])
def test_chapter_page_in_chromium(chapter, browser, site, book):
    report = _visit(browser, site, book, Path(chapter.notebook).with_suffix(".html").name)
    _assert_page_reads_well(report, chapter.notebook)
    assert report["math"] > 0 and report["typeset"] >= report["math"], chapter.notebook
    nb = nbformat.read(ROOT / "notebooks" / chapter.notebook, as_version=4)
    plots = sum(1 for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {}))
    assert len(report["images"]) >= plots, f"{chapter.notebook}: {plots} plots stored, fewer shown"
    players = sum(1 for c in nb.cells for o in c.get("outputs", [])
                  if "<audio" in str(o.get("data", {}).get("text/html", "")))
    assert len(report["audio"]) >= players


@pytest.mark.parametrize("page_path", OTHER_PAGES)
def test_other_pages_in_chromium(page_path, browser, site, book):
    report = _visit(browser, site, book, page_path)
    _assert_page_reads_well(report, page_path)
    if page_path == "index.html":  # the chapter table links every chapter page
        for c in CHAPTERS:
            assert any(link.endswith(Path(c.notebook).with_suffix(".html").name) for link in report["links"])
    if page_path == "api/index.html":
        for group in sorted((book / "api").glob("mmcourse*.html")):
            sub = _visit(browser, site, book, f"api/{group.name}")
            _assert_page_reads_well(sub, group.name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def jupyterlab(tmp_path):
    """JupyterLab on 127.0.0.1 with one chapter, started here and stopped here."""
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy2(ROOT / "notebooks" / LAB_NOTEBOOK, work / LAB_NOTEBOOK)
    # every cell in the page, not only those scrolled into view, so the test can see them all
    settings = tmp_path / "settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    (settings / "tracker.jupyterlab-settings").write_text('{"windowingMode": "none"}')
    port, token = _free_port(), secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}  # inline plots, as a learner
    env.update(PYTHONPATH=str(ROOT), MMCOURSE_QUIET="1", OMP_NUM_THREADS="1",
               JUPYTER_CONFIG_DIR=str(tmp_path / "config"), JUPYTER_RUNTIME_DIR=str(tmp_path / "run"),
               IPYTHONDIR=str(tmp_path / "ipython"), JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={work}",
           "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
           "--LabApp.extension_manager=readonly", "--LabApp.expose_app_in_browser=True"]
    log = (tmp_path / "lab.log").open("w")
    server = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=work)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("JupyterLab did not start:\n" + (tmp_path / "lab.log").read_text()[-3000:])
            time.sleep(0.5)
        yield base, token, work
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=20)
        log.close()


PROMPTS = """() => [...document.querySelectorAll('.jp-NotebookPanel .jp-CodeCell .jp-InputPrompt')]
    .map(p => p.textContent.trim())"""


def test_chapter_runs_in_jupyterlab(jupyterlab, browser, tmp_path):
    base, token, work = jupyterlab
    code_cells = sum(c.cell_type == "code" for c in nbformat.read(work / LAB_NOTEBOOK, as_version=4).cells)
    page = browser.new_page()
    Problems(page)  # requests off this machine (the notebook's Colab badge image) are refused
    try:
        page.goto(f"{base}/lab/tree/{LAB_NOTEBOOK}?token={token}", wait_until="load")
        page.wait_for_function(f"() => ({PROMPTS})().length === {code_cells}", timeout=90000)
        page.wait_for_function(
            "() => [...document.querySelectorAll('.jp-Notebook-ExecutionIndicator')]"
            ".some(e => e.getAttribute('data-status') === 'idle')", timeout=90000)
        # what Run > Run All Cells does, through JupyterLab's own command registry
        page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
        try:  # every code cell shows its execution count
            page.wait_for_function(f"() => ({PROMPTS})().every(t => /^\\[\\d+\\]:$/.test(t))",
                                   timeout=180000)
        except playwright.TimeoutError:
            page.screenshot(path=str(tmp_path / "lab.png"), full_page=True)
            raise AssertionError(f"not every cell ran: {page.evaluate(PROMPTS)}") from None
        stderr = [e.inner_text() for e in
                  page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").all()]
        page.evaluate("() => { window.jupyterapp.commands.execute('docmanager:save'); }")
        deadline = time.monotonic() + 60
        while True:  # the saved file holds every execution count
            try:
                nb = nbformat.read(work / LAB_NOTEBOOK, as_version=4)
                code = [c for c in nb.cells if c.cell_type == "code"]
                if all(c.execution_count for c in code):
                    break
            except (ValueError, OSError):  # caught mid-write
                pass
            assert time.monotonic() < deadline, "JupyterLab did not save the notebook"
            time.sleep(0.5)
    finally:
        page.close()
    assert len(code) == code_cells
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, f"cells raised in JupyterLab: {[(o.ename, o.evalue) for o in errors]}"
    assert not [t for t in stderr if "Traceback" in t or "Error" in t], stderr
    assert any("image/png" in o.get("data", {}) for c in code for o in c.outputs), "no plot shown"
