"""The HTML documentation builds without warnings and reads offline.

One Sphinx build (``-W``, as CI runs it) into a temporary folder serves every
test here. It takes about 15 s; on a fresh clone docs/conf.py first draws the
figures (about 100 s), which the CI docs build after the tests then reuses.
"""

import pathlib
import re
import subprocess
import sys
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest

import downhill

pytest.importorskip("sphinx", reason="the docs extra: pip install -e '.[docs]'")

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The folder of a fresh HTML build of docs/."""
    out = tmp_path_factory.mktemp("html")
    build = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "-q", "-b", "html", str(ROOT / "docs"),
         str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, f"sphinx-build failed:\n{build.stdout}\n{build.stderr}"
    return out


class _Page(HTMLParser):
    """What a page loads (scripts, stylesheets, images) and its links around images."""

    def __init__(self, path):
        super().__init__()
        self.loads = []
        self.images = []  # (href of the enclosing <a> or None, img src)
        self._links = []
        self.feed(path.read_text(encoding="utf-8"))

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script" and attrs.get("src"):
            self.loads.append(attrs["src"])
        elif tag == "link" and "stylesheet" in (attrs.get("rel") or "").split():
            self.loads.append(attrs["href"])
        elif tag == "img":
            self.loads.append(attrs["src"])
            self.images.append((self._links[-1] if self._links else None, attrs["src"]))
        elif tag == "a":
            self._links.append(attrs.get("href"))

    def handle_endtag(self, tag):
        if tag == "a" and self._links:
            self._links.pop()


def _local_file(page, url):
    """The file a relative URL of ``page`` names, or None for a remote URL."""
    parts = urlsplit(url)
    if parts.scheme or parts.netloc:  # http:, https:, data:, //host/...
        return None
    return (page.parent / parts.path).resolve()


def _pages(site):
    pages = sorted(site.rglob("*.html"))
    assert len(pages) > 20
    return pages


def test_pages_load_scripts_styles_and_images_from_local_files_only(site):
    checked = 0
    for page in _pages(site):
        for url in _Page(page).loads:
            target = _local_file(page, url)
            assert target is not None, f"{page.relative_to(site)} loads {url} from the network"
            assert target.is_file(), f"{page.relative_to(site)} loads {url}: no such file"
            checked += 1
    assert checked > 100
    for css in (site / "_static").glob("*.css"):
        for url in re.findall(r"""(?:url\(|@import)\s*['"]?([^'")\s;]+)""", css.read_text()):
            assert _local_file(css, url) is not None, f"{css.name} loads {url}"


def test_algorithm_pages_have_math_for_the_local_mathjax(site):
    """Each algorithm page holds TeX between MathJax's delimiters and loads
    the shipped MathJax (with the fonts its output needs) from _static."""
    mathjax = site / "_static" / "mathjax"
    fonts = list((mathjax / "output" / "chtml" / "fonts" / "woff-v2").glob("*.woff"))
    assert len(fonts) > 10
    inline = []
    for name in downhill.ALGORITHMS:
        page = site / "algorithms" / f"{name}.html"
        scripts = [_local_file(page, url) for url in _Page(page).loads
                   if "mathjax" in url.lower()]
        assert len(scripts) == 1, f"{name}: MathJax scripts {scripts}"
        (script,) = scripts
        assert script.parent == mathjax and script.stat().st_size > 500_000
        assert re.search(r'VERSION="3\.', script.read_text(encoding="utf-8"))
        text = page.read_text(encoding="utf-8")
        # MathJax 3 typesets \( \) inline and \[ \] display math
        inline += re.findall(r'<span class="math notranslate nohighlight">\\\((.+?)\\\)</span>',
                             text)
        display = re.findall(r'<div class="math notranslate nohighlight">\s*\\\[(.+?)\\\]',
                             text, flags=re.S)
        assert any("\\" in tex for tex in display), f"{name}: no displayed equation"
    assert len(inline) > 50


def test_cli_page_keeps_double_dashes_and_straight_quotes(site):
    text = (site / "cli.html").read_text(encoding="utf-8")
    dashes = re.findall(".{0,20}[\u2013\u2014].{0,20}", text)  # en and em dashes
    assert not dashes, f"smart dashes on the CLI page: {dashes}"
    # option help text (sphinx-click), not only the <code> option names
    for phrase in ["; --plot draws one loss curve per algorithm",
                   "Continue from --checkpoint FILE"]:
        assert phrase in text, f"cli.html lacks {phrase!r}"
    algorithm = (site / "algorithms" / "sgd.html").read_text(encoding="utf-8")
    assert "'raise', 'stop' or 'skip'" in algorithm, "curly quotes around values"


def test_figures_link_to_their_full_size_files(site):
    images = []
    for name in ["examples.html", "guide.html"]:
        page = site / name
        for href, src in _Page(page).images:
            if "figures" not in src and "_images" not in src:
                continue
            images.append(src)
            assert href is not None, f"{name}: {src} is not a link"
            target = _local_file(page, href)
            assert target is not None and target.is_file(), f"{name}: {src} links to {href}"
            assert target.name == pathlib.Path(src).name
    assert len(images) == 10
