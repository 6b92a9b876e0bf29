"""Sphinx configuration for skinfluence's documentation (builds offline)."""

import skinfluence

project = "skinfluence"
author = "skinfluence developers"
copyright = "2026, skinfluence developers"
release = version = skinfluence.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]
autosummary_generate = True
numpydoc_show_class_members = False
numpydoc_validation_checks = {"all", "GL01", "GL02", "SA01", "EX01", "ES01", "RT02",
                              "SA04", "PR04", "GL08"}
nitpicky = False
exclude_patterns = ["_build", "auto_examples/*.ipynb", "auto_examples/*.py"]

sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": "/plot_",
    "download_all_examples": False,
    "remove_config_comments": True,
}

html_theme = "pydata_sphinx_theme"
html_theme_options = {"navigation_with_keys": False}
html_title = "skinfluence"
