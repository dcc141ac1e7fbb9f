"""The words of product text, for the keyword index: documents and queries go through :func:`words`.

Unicode NFKC normalisation (full-width Latin/digits -> ASCII), ``casefold`` (so "Straße" matches
"STRASSE"), then runs of word characters. Word characters follow the Unicode definition of the
``regex`` package (letters, digits and combining marks, so Devanagari or Thai words stay whole;
Python's ``re`` would cut them at every vowel sign); ``re`` is the fallback.

Compound product words stay one word (issue 11: "shirt" must not match every "T-shirt"): a single
letter joined to the next word by a hyphen ("T-shirt", "V-neck", "A-line", "e-reader") becomes one
word ("tshirt", "vneck", "aline", "ereader"), as do the spaced spellings shoppers type for the
common ones ("t shirt", "v neck"), so "tshirt", "t-shirt" and "T shirt" are the same term.
"""

from __future__ import annotations

import logging
import unicodedata

log = logging.getLogger(__name__)

try:  # a dependency of transformers, so normally present
    import regex as _re

    TOKENIZER = "nfkc-casefold-regex-w-compound1"
except ImportError:  # pragma: no cover
    import re as _re

    TOKENIZER = "nfkc-casefold-re-w-compound1"
    log.warning("the 'regex' package is missing; words with combining marks (e.g. Devanagari) will be split")

_WORD = _re.compile(r"\w+")
# a lone letter, a hyphen (ASCII or Unicode), a word: "t-shirt", "v‐neck"; not "3-pack", not "xl-t"
_HYPHENATED = _re.compile(r"(?<!\w)([^\W\d_])[-\u2010\u2011](?=[^\W\d_]{2})")
# spaced spellings of the common compounds
_SPACED = _re.compile(r"(?<!\w)(t|v)\s+(?=(?:shirts?|neck|necks)\b)")


def words(text: str) -> list[str]:
    """Normalised words of ``text`` in order, compound product words joined (see module doc)."""
    norm = unicodedata.normalize("NFKC", text).casefold()
    norm = _SPACED.sub(r"\1", _HYPHENATED.sub(r"\1", norm))
    return _WORD.findall(norm)
