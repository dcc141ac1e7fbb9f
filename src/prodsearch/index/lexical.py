"""BM25 keyword index (via ``bm25s``) with a language-neutral tokenizer, incremental updates and
crash-safe saves.

Tokenisation (one function, :meth:`LexicalIndex.tokenize`, used for documents and queries alike):
Unicode NFKC normalisation (full-width Latin/digits -> ASCII), ``casefold`` (so "Straße" matches
"STRASSE"), then runs of word characters. Word characters follow the Unicode definition of the
``regex`` package (letters, digits and combining marks, so Devanagari or Thai words stay whole;
Python's ``re`` would cut them at every vowel sign); ``re`` is the fallback. Scripts written without
spaces (Chinese, Japanese) become one token per unbroken run. No stemming and no stopwords by
default, since both are language-specific; ``stopwords="en"`` and ``stemmer="english"`` (PyStemmer)
are opt-in and saved with the index.

Updates keep every document's tokens; the BM25 matrix is rebuilt lazily (on the next search or
save) after ``add``/``remove``, which takes about a second for 44k product titles.
"""

from __future__ import annotations

import logging
import threading
import time
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from prodsearch.errors import ConfigError, IndexNotFoundError, MissingDependencyError, QueryError
from prodsearch.index.storage import GenerationWriter, read_generation
from prodsearch.index.types import Hits, top_k

log = logging.getLogger(__name__)

NAME = "lexical"

try:  # a dependency of transformers, so normally present
    import regex as _re

    TOKENIZER = "nfkc-casefold-regex-w"
except ImportError:  # pragma: no cover
    import re as _re

    TOKENIZER = "nfkc-casefold-re-w"
    log.warning("the 'regex' package is missing; words with combining marks (e.g. Devanagari) will be split")

_WORD = _re.compile(r"\w+")


def _stopword_set(stopwords: str | Sequence[str] | None) -> frozenset[str]:
    if stopwords is None:
        return frozenset()
    if isinstance(stopwords, str):
        if stopwords != "en":
            raise ConfigError(
                f"stopwords {stopwords!r} is not a known list; expected 'en', a list of words, or None"
            )
        from bm25s.stopwords import STOPWORDS_EN

        return frozenset(STOPWORDS_EN)
    return frozenset(unicodedata.normalize("NFKC", str(w)).casefold() for w in stopwords)


def _stemmer(language: str | None) -> Callable[[str], str] | None:
    if language is None:
        return None
    try:
        import Stemmer
    except ImportError as err:
        raise MissingDependencyError(f"stemmer={language!r} needs PyStemmer: pip install PyStemmer") from err
    try:
        return Stemmer.Stemmer(language).stemWord
    except KeyError as err:
        raise ConfigError(
            f"stemmer language {language!r} is unknown; PyStemmer knows {Stemmer.algorithms()}"
        ) from err


class LexicalIndex:
    """BM25 (Lucene variant, Robertson & Zaragoza 2009) over product texts, keyed by int iids.

    ``k1``, ``b``: BM25 parameters. ``stopwords``: None (default), "en" or a list of words.
    ``stemmer``: None (default) or a PyStemmer language name such as "english" or "french".
    """

    def __init__(
        self,
        *,
        k1: float = 1.5,
        b: float = 0.75,
        stopwords: str | Sequence[str] | None = None,
        stemmer: str | None = None,
    ):
        if k1 < 0 or not 0.0 <= b <= 1.0:
            raise ConfigError(f"BM25 needs k1 >= 0 and 0 <= b <= 1, got k1={k1}, b={b}")
        self.k1, self.b = float(k1), float(b)
        self.stopwords = stopwords if stopwords is None or isinstance(stopwords, str) else list(stopwords)
        self.stemmer = stemmer
        self._stop = _stopword_set(stopwords)
        self._stem = _stemmer(stemmer)
        self._ids: list[int] = []
        self._tokens: list[list[str]] = []
        self._pos: dict[int, int] = {}
        self._bm25: Any = None
        self._doc_iids = np.zeros(0, np.int64)  # iid of each BM25 document
        self._sorted: tuple[np.ndarray, np.ndarray] | None = None  # (sorted doc iids, their doc rows)
        self._dirty = False
        self._lock = threading.RLock()

    def params(self) -> dict[str, Any]:
        return {"k1": self.k1, "b": self.b, "stopwords": self.stopwords, "stemmer": self.stemmer}

    # ------------------------------------------------------------------ tokenisation
    def _words(self, text: str) -> list[str]:
        return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())

    def _term(self, word: str) -> str | None:
        if word in self._stop:
            return None
        return self._stem(word) if self._stem is not None else word

    def tokenize(self, text: str) -> list[str]:
        """Index terms of ``text``, in order (duplicates kept)."""
        if not isinstance(text, str):
            raise QueryError(f"text must be a string, got {type(text).__name__}")
        return [t for t in map(self._term, self._words(text)) if t]

    def matched_terms(self, query: str, text: str) -> list[str]:
        """Query words (normalised, in query order, without repeats) whose index term occurs in ``text``."""
        doc_terms = set(self.tokenize(text))
        out: list[str] = []
        for word in self._words(query):
            term = self._term(word)
            if term and term in doc_terms and word not in out:
                out.append(word)
        return out

    # ------------------------------------------------------------------ documents
    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, iid: object) -> bool:
        return iid in self._pos

    @property
    def iids(self) -> np.ndarray:
        with self._lock:
            return np.asarray(self._ids, dtype=np.int64)

    def _check(self, iids: Sequence[int] | np.ndarray, texts: Sequence[str]) -> list[int]:
        ids = [int(i) for i in np.asarray(iids, dtype=np.int64).reshape(-1)]
        if len(ids) != len(texts):
            raise ValueError(f"LexicalIndex: {len(ids)} iids but {len(texts)} texts")
        if len(set(ids)) != len(ids):
            raise ValueError("LexicalIndex: duplicate iids in one call")
        return ids

    def build(self, iids: Sequence[int] | np.ndarray, texts: Sequence[str]) -> None:
        """Replace the whole index with ``texts`` keyed by ``iids``."""
        ids = self._check(iids, texts)
        tokens = [self.tokenize(t) for t in texts]
        with self._lock:
            self._ids, self._tokens = ids, tokens
            self._pos = {i: p for p, i in enumerate(ids)}
            self._dirty = True
            self._refresh()

    def add(self, iids: Sequence[int] | np.ndarray, texts: Sequence[str]) -> None:
        """Insert or replace documents (the BM25 matrix is rebuilt lazily)."""
        ids = self._check(iids, texts)
        tokens = [self.tokenize(t) for t in texts]
        with self._lock:
            for i, toks in zip(ids, tokens, strict=True):
                p = self._pos.get(i)
                if p is None:
                    self._pos[i] = len(self._ids)
                    self._ids.append(i)
                    self._tokens.append(toks)
                else:
                    self._tokens[p] = toks
            self._dirty = self._dirty or bool(ids)

    def remove(self, iids: Iterable[int] | np.ndarray) -> int:
        """Delete documents (absent iids are ignored); returns how many were removed."""
        gone = {
            int(i) for i in np.asarray(list(iids) if not isinstance(iids, np.ndarray) else iids).reshape(-1)
        }
        with self._lock:
            gone &= self._pos.keys()
            if not gone:
                return 0
            keep = [p for p, i in enumerate(self._ids) if i not in gone]
            self._ids = [self._ids[p] for p in keep]
            self._tokens = [self._tokens[p] for p in keep]
            self._pos = {i: p for p, i in enumerate(self._ids)}
            self._dirty = True
            return len(gone)

    def _refresh(self) -> None:
        """Rebuild the BM25 matrix from the stored tokens if documents changed."""
        if not self._dirty:
            return
        self._doc_iids = np.asarray(self._ids, dtype=np.int64)
        self._sorted = None
        if not self._ids:
            self._bm25 = None
        else:
            import bm25s

            t = time.perf_counter()
            bm25 = bm25s.BM25(k1=self.k1, b=self.b, method="lucene")
            bm25.index(self._tokens, show_progress=False)
            self._bm25 = bm25
            log.debug("BM25 index over %d documents built in %.2fs", len(self._ids), time.perf_counter() - t)
        self._dirty = False

    # ------------------------------------------------------------------ search
    def search(self, query: str, k: int, *, allowed: np.ndarray | Sequence[int] | None = None) -> Hits:
        """Top-``k`` documents by BM25 for ``query``; only documents sharing at least one term are
        returned (so an empty query or one with no known term gives empty :class:`Hits`).
        ``allowed``: iids a result may have; ``None`` = all."""
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise QueryError(f"k must be a positive integer, got {k!r}")
        terms = list(dict.fromkeys(self.tokenize(query or "")))  # a repeated word counts once
        with self._lock:
            self._refresh()
            if self._bm25 is None or not terms:
                return Hits.empty()
            vocab = self._bm25.vocab_dict
            ids = [vocab[t] for t in terms if t in vocab]
            if not ids:
                return Hits.empty()
            scores = self._bm25.get_scores_from_ids(ids)
            cand = scores > 0  # Lucene BM25 idf is positive, so score > 0 <=> a term matched
            if allowed is not None:
                cand &= self._allowed_mask(np.asarray(allowed, dtype=np.int64).reshape(-1))
            rows = np.nonzero(cand)[0]
            return top_k(self._doc_iids[rows], scores[rows], k)

    def _allowed_mask(self, allowed: np.ndarray) -> np.ndarray:
        if self._sorted is None:
            order = np.argsort(self._doc_iids, kind="stable")
            self._sorted = (self._doc_iids[order], order)
        keys, rows = self._sorted
        mask = np.zeros(keys.size, bool)
        if keys.size and allowed.size:
            pos = np.clip(np.searchsorted(keys, allowed), 0, keys.size - 1)
            mask[rows[pos[keys[pos] == allowed]]] = True
        return mask

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path) -> Path:
        """Save as one crash-safe unit: ``directory/lexical.json`` + ``directory/lexical.gen-N/``
        (``docs.txt``: one line of space-joined terms per document, ``iids.npy``, ``bm25/``)."""
        with self._lock:
            self._refresh()
            with GenerationWriter(directory, NAME) as gen:
                np.save(gen.path("iids.npy"), np.asarray(self._ids, dtype=np.int64))
                # \w+ terms never contain whitespace, so a space/newline-joined file round-trips exactly
                with open(gen.path("docs.txt"), "w", encoding="utf-8") as fh:
                    fh.write("\n".join(" ".join(t) for t in self._tokens))
                if self._bm25 is not None:
                    self._bm25.save(str(gen.path("bm25")), show_progress=False)
                meta = {
                    "type": "prodsearch.LexicalIndex",
                    "count": len(self._ids),
                    "tokenizer": TOKENIZER,
                    "params": self.params(),
                }
                return gen.commit(meta)

    @classmethod
    def load(cls, directory: str | Path, *, verify: bool = True) -> LexicalIndex:
        """Load what :meth:`save` wrote, raising :class:`IndexNotFoundError` naming a missing or corrupt file."""
        meta, gen = read_generation(directory, NAME, verify=verify)
        where = Path(directory) / f"{NAME}.json"
        try:
            self = cls(**dict(meta["params"]))
            count = int(meta["count"])
        except (KeyError, TypeError, ValueError) as err:
            raise IndexNotFoundError(
                f"{where}: invalid lexical index metadata ({err}); rebuild the index"
            ) from err
        if meta.get("tokenizer") != TOKENIZER:
            log.warning(
                "%s was built with tokenizer %s, this install uses %s",
                where,
                meta.get("tokenizer"),
                TOKENIZER,
            )
        try:
            ids = np.load(gen / "iids.npy", allow_pickle=False)
            text = (gen / "docs.txt").read_text(encoding="utf-8")
        except (OSError, ValueError) as err:
            raise IndexNotFoundError(
                f"lexical index in {gen} cannot be read ({err}); rebuild the index"
            ) from err
        lines = text.split("\n") if count else []
        if ids.shape != (count,) or len(lines) != count:
            raise IndexNotFoundError(
                f"lexical index in {gen}: {ids.shape} iids and {len(lines)} documents, expected {count} per {where}"
            )
        self._ids = [int(i) for i in ids]
        self._tokens = [line.split() for line in lines]
        self._pos = {i: p for p, i in enumerate(self._ids)}
        self._doc_iids = np.asarray(self._ids, dtype=np.int64)
        if count:
            import bm25s

            try:
                bm25 = bm25s.BM25.load(str(gen / "bm25"), show_progress=False)
            except (OSError, ValueError, KeyError) as err:
                raise IndexNotFoundError(
                    f"BM25 files in {gen / 'bm25'} cannot be read ({err}); rebuild the index"
                ) from err
            if int(bm25.scores["num_docs"]) != count:
                raise IndexNotFoundError(
                    f"BM25 files in {gen / 'bm25'} hold {bm25.scores['num_docs']} documents, expected {count}"
                )
            self._bm25 = bm25
        return self
