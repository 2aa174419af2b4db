"""Keep the translation catalogs in step with the code: extract, update, compile.

``python -m release.devtools.catalogs`` (``make translations``) re-extracts every marked string with
Babel's extractors (configured in babel.cfg), merges new ones into each catalog and compiles
the .mo files, which are committed next to the .po files so a fresh checkout needs no build
step. The catalog test uses :func:`extract` to fail when a catalog misses a string.
"""

from __future__ import annotations

import sys
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po

from release.config import LOCALES
from release.paths import PROJECT_ROOT, TRANSLATIONS

SOURCE_LOCALE = "en"
# Beyond Babel's defaults (_, gettext, ngettext, ...): lazy strings, and link errors whose
# message is translated where errors.py renders it. Locations are left out of the .po files
# so that moving a string does not touch every catalog.
KEYWORDS = {"_l": None, "lazy_gettext": None, "LinkInvalid": None, "LinkExpired": None}


def extract() -> Catalog:
    """Every translatable string in the code and templates, as a template catalog."""
    with open(PROJECT_ROOT / "babel.cfg", encoding="utf-8") as fh:
        method_map, options_map = parse_mapping_cfg(fh)
    template = Catalog(project="sender-fp-release", domain="messages")
    keywords = {"_": None, "gettext": None, "ngettext": (1, 2), **KEYWORDS}
    found = extract_from_dir(str(PROJECT_ROOT), method_map, options_map, keywords=keywords, strip_comment_tags=True)
    for filename, lineno, message, comments, context in found:
        template.add(message, None, [(filename, lineno)], auto_comments=comments, context=context)
    return template


def catalog_path(locale: str) -> Path:
    """Where the .po file of ``locale`` lives (the .mo sits next to it)."""
    return TRANSLATIONS / locale / "LC_MESSAGES" / "messages.po"


def read_catalog(locale: str) -> Catalog:
    """The committed catalog of ``locale``."""
    with open(catalog_path(locale), "rb") as fh:
        return read_po(fh, locale=locale)


def update_and_compile() -> None:
    """Merge the extracted strings into every catalog and write its .mo."""
    template = extract()
    for locale in LOCALES:
        if locale == SOURCE_LOCALE:
            continue
        catalog = read_catalog(locale)
        created = catalog.creation_date
        catalog.update(template, no_fuzzy_matching=True)
        catalog.creation_date = created  # an unchanged catalog stays byte-for-byte the same
        with open(catalog_path(locale), "wb") as fh:
            write_po(fh, catalog, sort_output=True, width=100, no_location=True, include_previous=False)
        with open(catalog_path(locale).with_suffix(".mo"), "wb") as fh:
            write_mo(fh, catalog)
        untranslated = [m.id for m in catalog if m.id and not m.string]
        if untranslated:
            print(f"{locale}: {len(untranslated)} strings need a translation", file=sys.stderr)  # noqa: T201


if __name__ == "__main__":
    update_and_compile()
