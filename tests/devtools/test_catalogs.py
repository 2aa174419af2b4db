"""The committed catalogs cover every marked string, are fully translated, and match their .mo."""

from __future__ import annotations

import re

import pytest
from babel.messages.mofile import read_mo

from release.config import LOCALES
from release.devtools.catalogs import SOURCE_LOCALE, catalog_path, extract, read_catalog

TRANSLATED = [code for code in LOCALES if code != SOURCE_LOCALE]
PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]")
MARKUP = re.compile(r"</?[a-z]+[^>]*>")
# Words that really are spelt the same (a copied English msgid anywhere else is a mistake).
SAME_IN = {"de": {"Details:", "Details: %(release_url)s", "Cc", "Name"}}  # the same word in German


@pytest.fixture(scope="module")
def msgids() -> set[str]:
    """Extracted afresh with Babel's extractors (babel.cfg), as `make translations` does."""
    ids = {m.id for m in extract() if m.id}
    assert len(ids) > 100  # the extractor really found the templates and the Python strings
    return {i for i in ids if isinstance(i, str)}


@pytest.mark.parametrize("locale", TRANSLATED)
def test_catalog_has_every_string_translated(locale: str, msgids: set[str]) -> None:
    catalog = read_catalog(locale)
    assert not catalog.fuzzy, f"{locale}: the catalog header is marked fuzzy"
    entries = {m.id: m for m in catalog if m.id}
    missing = sorted(msgids - set(entries))
    assert not missing, f"{locale} misses {len(missing)} strings (run `make translations`): {missing[:5]}"
    untranslated = sorted(i for i in msgids if not entries[i].string)
    assert not untranslated, f"{locale} has untranslated strings: {untranslated[:5]}"
    fuzzy = sorted(i for i in msgids if entries[i].fuzzy)
    assert not fuzzy, f"{locale} has fuzzy strings: {fuzzy[:5]}"


@pytest.mark.parametrize("locale", TRANSLATED)
def test_translations_keep_placeholders_and_markup(locale: str, msgids: set[str]) -> None:
    for message in read_catalog(locale):
        if message.id not in msgids:
            continue
        source, target = str(message.id), str(message.string)
        assert sorted(PLACEHOLDER.findall(source)) == sorted(PLACEHOLDER.findall(target)), (locale, source)
        assert sorted(MARKUP.findall(source)) == sorted(MARKUP.findall(target)), (locale, source)
        same = SAME_IN.get(locale, set())
        assert target != source or source in same, f"{locale}: {source!r} is not translated"


@pytest.mark.parametrize("locale", TRANSLATED)
def test_compiled_catalog_matches_the_po(locale: str) -> None:
    po = {m.id: m.string for m in read_catalog(locale) if m.id}
    with open(catalog_path(locale).with_suffix(".mo"), "rb") as fh:
        mo = {m.id: m.string for m in read_mo(fh) if m.id}
    assert mo == po, f"{locale}: messages.mo is stale; run `make translations` and commit it"


def test_no_stale_strings_linger(msgids: set[str]) -> None:
    """Strings removed from the code leave the catalogs (obsolete entries are dropped)."""
    for locale in TRANSLATED:
        stale = sorted({m.id for m in read_catalog(locale) if m.id} - msgids)
        assert not stale, f"{locale} has strings no longer in the code: {stale[:5]}"


def test_every_state_has_translatable_words() -> None:
    """A state added to the schema must get its words (else the status page would raise KeyError)."""
    from release.db.states import RecipientState, ReportState

    REPORT_STATES, RECIPIENT_STATES = set(ReportState), set(RecipientState)
    from release.web.presenters import RECIPIENT_WORDS, RELEASE_WORDS, REPORT_WORDS, STATE_LABELS

    assert set(REPORT_STATES) <= set(STATE_LABELS) and set(REPORT_STATES) <= set(REPORT_WORDS)
    for words in (STATE_LABELS, RECIPIENT_WORDS, RELEASE_WORDS):
        assert set(RECIPIENT_STATES) <= set(words)
