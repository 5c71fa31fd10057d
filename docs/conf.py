"""Sphinx configuration for the pbidentity documentation."""

from __future__ import annotations

from importlib.metadata import version as _version

project = "pbidentity"
author = "The pbidentity authors"
copyright = "2026, The pbidentity authors"
release = _version("pbidentity")
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}

# No intersphinx: the documentation builds offline, warnings as errors.

html_theme = "furo"
html_title = f"pbidentity {release}"
exclude_patterns = ["_build"]
