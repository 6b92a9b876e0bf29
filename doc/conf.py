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
    # ships MathJax 3 into _build/html/_static/mathjax and points
    # mathjax_path at it: the maths renders without a network
    "sphinx-mathjax-offline",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]
autosummary_generate = True
# doc/_templates/autosummary: API pages titled by the short name, methods
# documented on the class's page
templates_path = ["_templates"]
numpydoc_show_class_members = False
numpydoc_validation_checks = {"all", "GL01", "GL02", "SA01", "EX01", "ES01", "RT02",
                              "SA04", "PR04", "GL08"}
# The class pages document the methods too (doc/_templates). Two method
# docstrings fail a check; skipped for them alone until they are fixed in
# skinfluence/_estimator.py (then delete these overrides).
nitpicky = False
exclude_patterns = ["_build", "auto_examples/*.ipynb", "auto_examples/*.py",
                    "auto_examples/**/*.ipynb", "auto_examples/**/*.py"]

sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": "/plot_",
    # Topic folders in reading order (the default is alphabetical).
    "subsection_order": ["../examples/basics", "../examples/validation",
                         "../examples/koh_liang", "../examples/mislabels",
                         "../examples/neural_networks"],
    "download_all_examples": False,
    "remove_config_comments": True,
    # the computation-times page loads jQuery and DataTables from CDNs
    "write_computation_times": False,
}

html_theme = "pydata_sphinx_theme"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
}
html_title = "skinfluence"
# "On this page" lists methods as fit(), not InfluenceEstimator.fit() (clipped)
toc_object_entries_show_parents = "hide"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
# Pages without sub-pages need no (empty) section navigation.
html_sidebars = {"changelog": []}
