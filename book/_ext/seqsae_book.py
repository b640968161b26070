"""Small Sphinx fixes for the seqsae book (loaded through ``sphinx.local_extensions`` in ``_config.yml``).

sphinx-thebe registers its inline configuration script (``const THEBE_JS_URL = ...``) and ``sphinx-thebe.js``
twice in a Jupyter Book 1.x build (once with the file name ``None``, once with ``""``; sphinx-togglebutton's
inline script too), so every page threw "Identifier 'THEBE_JS_URL' has already been declared". This extension drops repeated script and stylesheet entries from each page's context (the first
of each stays), which keeps the page otherwise unchanged.
"""

from __future__ import annotations


def _key(asset) -> tuple:
    filename = getattr(asset, "filename", asset) or ""  # an inline script is registered as None by some, "" by others
    attributes = getattr(asset, "attributes", {}) or {}
    return str(filename), tuple(sorted((k, str(v)) for k, v in attributes.items()))


def _drop_repeats(assets: list) -> list:
    seen, kept = set(), []
    for asset in assets:
        key = _key(asset)
        if key not in seen:
            seen.add(key)
            kept.append(asset)
    return kept


def drop_repeated_assets(app, pagename, templatename, context, doctree) -> None:
    for name in ("script_files", "css_files"):
        assets = context.get(name)
        if isinstance(assets, list):
            assets[:] = _drop_repeats(assets)  # in place: Sphinx restores the page-independent list itself


def setup(app):
    # Early (the default priority is 500): an html-page-context handler that returns a value stops the later ones.
    app.connect("html-page-context", drop_repeated_assets, priority=100)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
