"""Sphinx configuration of the book (`mmcourse book OUT_DIR` assembles the pages around it).

Everything the pages load ships with the site: the theme's files, and MathJax copied from the
django-static-mathjax distribution into _static/mathjax (no CDN, so the book reads offline).
Notebooks are never executed here: the pages show the outputs stored in them.
"""

import re

from mmcourse import __version__
from mmcourse.course import BRANCH, REPOSITORY

project = "mmcourse"
author = "the mmcourse authors"
copyright = "the mmcourse authors, MIT license"
release = __version__
html_title = "mmcourse: multimodal deep learning, from the formula up"

extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.mathjax"]
exclude_patterns = ["_build", "**.ipynb_checkpoints"]

# The notebooks: stored outputs only; math with $...$ and $$...$$; LaTeX environments.
nb_execution_mode = "off"
nb_ipywidgets_js = {}  # no widget manager from a CDN
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3

# MathJax 3, from the site itself
mathjax_path = "mathjax/tex-mml-chtml.js"
mathjax3_config = {"tex": {"inlineMath": [["\\(", "\\)"]], "displayMath": [["\\[", "\\]"]]}}

# The API reference, from the package's docstrings
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"show-inheritance": True, "ignore-module-all": True}
napoleon_numpy_docstring = False  # the docstrings use Google style: "Args:", "Returns:"

html_theme = "sphinx_book_theme"
html_static_path = ["_static"]
html_css_files = ["book.css"]
html_theme_options = {
    "repository_url": REPOSITORY,
    "repository_branch": BRANCH,
    "path_to_docs": "notebooks",
    "use_repository_button": True,
    "launch_buttons": {"colab_url": "https://colab.research.google.com"},
    "home_page_in_toc": True,
    "show_navbar_depth": 1,
}
html_context = {"default_mode": "auto"}  # light or dark as the reader's system prefers
html_last_updated_fmt = None


def _bars_are_magnitudes(app, what, name, obj, options, lines) -> None:
    """The package's docstrings write |x| for a magnitude, never an RST substitution: escape the
    bars outside code (``literals`` and blocks after a line ending in ``::``)."""
    literal, indent = False, 0
    for i, line in enumerate(lines):
        depth = len(line) - len(line.lstrip())
        if literal and line.strip() and depth <= indent:
            literal = False
        if not literal:
            parts = re.split(r"(``.*?``|`[^`]*`)", line)  # odd parts are code: kept as typed
            lines[i] = "".join(p if k % 2 else re.sub(r"(?<!\\)\|", r"\\|", p)
                               for k, p in enumerate(parts))
            if line.rstrip().endswith("::"):
                literal, indent = True, depth


def setup(app) -> None:
    app.connect("autodoc-process-docstring", _bars_are_magnitudes)
