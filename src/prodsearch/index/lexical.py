"""BM25 keyword index (via ``bm25s``) with a language-neutral tokenizer, incremental updates and
crash-safe saves.

Tokenisation (one function, :meth:`LexicalIndex.tokenize`, used for documents and queries alike):
the words of :func:`prodsearch.index.tokenize.words` (NFKC, casefold, Unicode word runs, compound
product words such as "T-shirt" kept whole). Scripts written without spaces (Chinese, Japanese)
become one token per unbroken run. No stemming and no stopwords by
default, since both are language-specific; ``stopwords="en"`` and ``stemmer="english"`` (PyStemmer)
are opt-in and saved with the index.

Updates cost O(batch), Lucene-style: the BM25 matrix (the *main* segment) is left as it is, a
replaced or deleted document gets a tombstone there, and new or changed documents go to a small
*delta* segment scored at query time with the main segment's statistics. :meth:`compact` rebuilds
the matrix over every live document (about a second for 44k product titles) without blocking
searches.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from prodsearch.errors import ConfigError, IndexNotFoundError, MissingDependencyError, QueryError
from prodsearch.index.storage import GenerationWriter, read_generation
from prodsearch.index.tokenize import TOKENIZER, words  # one tokenizer for documents and queries
from prodsearch.index.types import Hits, top_k

log = logging.getLogger(__name__)

NAME = "lexical"


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
        self._docs: dict[int, list[str]] = {}  # every live document's terms
        self._main = _Main({}, None)  # BM25 matrix of the last build/compaction + its tombstones
        self._delta: dict[int, list[str]] = {}  # documents added or replaced since
        self._post: dict[str, dict[int, int]] = {}  # delta postings: term -> {iid: term frequency}
        self._since: set[int] | None = None  # iids written while a compaction runs
        self._compact_lock = threading.Lock()  # one compaction at a time
        self.meta: dict[str, Any] = {}  # pointer metadata of the generation loaded or saved last
        self._lock = threading.RLock()

    def params(self) -> dict[str, Any]:
        return {"k1": self.k1, "b": self.b, "stopwords": self.stopwords, "stemmer": self.stemmer}

    # ------------------------------------------------------------------ tokenisation
    def _words(self, text: str) -> list[str]:
        return words(text)

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
        return len(self._docs)

    def __contains__(self, iid: object) -> bool:
        return iid in self._docs

    @property
    def iids(self) -> np.ndarray:
        with self._lock:
            return np.fromiter(self._docs, dtype=np.int64, count=len(self._docs))

    @property
    def pending(self) -> int:
        """Writes since the last compaction (delta documents plus tombstoned main documents)."""
        return len(self._delta) + self._main.dead_count

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
            self._docs = dict(zip(ids, tokens, strict=True))
            self._delta.clear()
            self._post.clear()
            self._main = _Main.build(dict(self._docs), self.k1, self.b)
            if self._since is not None:
                self._since.update(ids)

    def add(self, iids: Sequence[int] | np.ndarray, texts: Sequence[str]) -> None:
        """Insert or replace documents: O(batch), they go to the delta segment (see :meth:`compact`)."""
        ids = self._check(iids, texts)
        tokens = [self.tokenize(t) for t in texts]
        with self._lock:
            if self._since is not None:
                self._since.update(ids)
            for i, toks in zip(ids, tokens, strict=True):
                self._drop(i)
                self._docs[i] = toks
                self._index_delta(i, toks)

    def remove(self, iids: Iterable[int] | np.ndarray) -> int:
        """Delete documents (absent iids are ignored); returns how many were removed. O(batch)."""
        gone = {
            int(i) for i in np.asarray(list(iids) if not isinstance(iids, np.ndarray) else iids).reshape(-1)
        }
        with self._lock:
            gone &= self._docs.keys()
            if self._since is not None:
                self._since.update(gone)
            for i in gone:
                self._drop(i)
                del self._docs[i]
            return len(gone)

    def _drop(self, iid: int) -> None:
        """Tombstone ``iid`` in main and take it out of the delta segment (caller holds the lock)."""
        self._main.kill(iid)
        old = self._delta.pop(iid, None)
        for term in set(old or ()):
            post = self._post[term]
            del post[iid]
            if not post:
                del self._post[term]

    def compact(self) -> None:
        """Rebuild the BM25 matrix over every live document (fresh statistics) and empty the delta.

        The rebuild runs outside the lock on a snapshot of the documents, so searches and writes go
        on meanwhile; documents written during it are tombstoned in the new matrix and stay in the
        delta segment."""
        with self._compact_lock:
            with self._lock:
                if not self.pending:
                    return
                docs, self._since = dict(self._docs), set()
            try:
                main = _Main.build(docs, self.k1, self.b)
            except BaseException:
                with self._lock:
                    self._since = None
                raise
            with self._lock:
                touched, self._since = self._since, None
                for i in touched:
                    main.kill(i)
                self._main = main
                self._delta, self._post = {}, {}
                for i in touched:
                    if i in self._docs:
                        self._index_delta(i, self._docs[i])

    def _index_delta(self, iid: int, toks: list[str]) -> None:
        self._delta[iid] = toks
        for term, tf in Counter(toks).items():
            self._post.setdefault(term, {})[iid] = tf

    # ------------------------------------------------------------------ search
    def search(self, query: str, k: int, *, allowed: np.ndarray | Sequence[int] | None = None) -> Hits:
        """Top-``k`` documents by BM25 for ``query``; only documents sharing at least one term are
        returned (so an empty query or one with no known term gives empty :class:`Hits`).
        ``allowed``: iids a result may have; ``None`` = all.

        Delta documents are scored with the main segment's statistics (N, document frequencies,
        average length), as Lucene scores a new segment before a merge refreshes them; after
        :meth:`compact` every score is exact BM25 over the whole collection."""
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise QueryError(f"k must be a positive integer, got {k!r}")
        terms = list(dict.fromkeys(self.tokenize(query or "")))  # a repeated word counts once
        allow = None if allowed is None else np.asarray(allowed, dtype=np.int64).reshape(-1)
        with self._lock:
            if not terms or not self._docs:
                return Hits.empty()
            main_iids, main_scores = self._main.scores(terms, allow)
            if not self._delta:
                return top_k(main_iids, main_scores, k)
            d_iids, d_scores = self._delta_scores(terms, allow)
            return top_k(np.concatenate([main_iids, d_iids]), np.concatenate([main_scores, d_scores]), k)

    def _delta_scores(self, terms: list[str], allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        stats = self._main if self._main.n else _Main.stats_of(self._delta)
        scores: dict[int, float] = {}
        k1, b = self.k1, self.b
        for term in terms:
            post = self._post.get(term)
            if not post:
                continue
            idf = stats.idf(term)
            for iid, tf in post.items():
                norm = k1 * (1 - b + b * len(self._delta[iid]) / stats.avgdl)
                scores[iid] = scores.get(iid, 0.0) + idf * tf / (norm + tf)
        iids = np.fromiter(scores, dtype=np.int64, count=len(scores))
        vals = np.fromiter(scores.values(), dtype=np.float32, count=len(scores))
        if allowed is not None and iids.size:
            keep = np.isin(iids, allowed)
            iids, vals = iids[keep], vals[keep]
        return iids, vals

    # ------------------------------------------------------------------ persistence
    def save(
        self, directory: str | Path, *, meta: dict[str, Any] | None = None, compact: bool = True
    ) -> Path:
        """Save the main segment as one crash-safe unit: ``directory/lexical.json`` +
        ``directory/lexical.gen-N/`` (``docs.txt``: one line of space-joined terms per document,
        ``iids.npy``, ``dead.npy`` (its tombstones), ``bm25/``). ``compact`` first merges pending
        writes (without it, writes since the last compaction are left to the caller's log).
        ``meta``: extra keys for the pointer (e.g. ``applied_seq``)."""
        if compact:
            self.compact()
        with self._lock:  # the main segment only changes by tombstones: copy those, write unlocked
            main, dead = self._main, self._main.dead.copy()
        with GenerationWriter(directory, NAME) as gen:
            np.save(gen.path("iids.npy"), main.iids)
            np.save(gen.path("dead.npy"), dead)
            # \w+ terms never contain whitespace, so a space/newline-joined file round-trips exactly
            with open(gen.path("docs.txt"), "w", encoding="utf-8") as fh:
                fh.write("\n".join(" ".join(t) for t in main.docs.values()))
            if main.bm25 is not None:
                main.bm25.save(str(gen.path("bm25")), show_progress=False)
            info = {
                **(meta or {}),
                "type": "prodsearch.LexicalIndex",
                "count": main.n,
                "tokenizer": TOKENIZER,
                "params": self.params(),
            }
            folder = gen.commit(info)
            self.meta = info
            return folder

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
        docs = {int(i): line.split() for i, line in zip(ids.tolist(), lines, strict=True)}
        dead_path = gen / "dead.npy"
        dead = np.load(dead_path, allow_pickle=False) if dead_path.exists() else np.zeros(count, bool)
        if dead.shape != (count,) or dead.dtype != bool:
            raise IndexNotFoundError(
                f"lexical index file {dead_path} holds {dead.dtype}{dead.shape}, expected bool({count},)"
            )
        bm25 = None
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
        self._main = _Main(docs, bm25)
        for i in ids[dead].tolist():
            self._main.kill(int(i))
        self._docs = {i: t for i, t in docs.items() if not self._main.dead[self._main.row[i]]}
        self.meta = meta
        return self


class _Main:
    """The main segment: a BM25 matrix over the documents of the last build or compaction, the
    collection statistics it was built with, and tombstones for documents deleted or replaced since."""

    def __init__(self, docs: dict[int, list[str]], bm25: Any):
        self.bm25 = bm25
        self.docs = docs  # the documents the matrix was built from, in row order
        self.iids = np.fromiter(docs, dtype=np.int64, count=len(docs))
        self.row = {i: r for r, i in enumerate(self.iids.tolist())}
        self.dead = np.zeros(self.iids.size, bool)
        self.dead_count = 0
        self.n = int(self.iids.size)
        self.df: Counter[str] = Counter()
        total = 0
        for toks in docs.values():
            self.df.update(set(toks))
            total += len(toks)
        self.avgdl = total / self.n if self.n else 1.0
        self._sorted: tuple[np.ndarray, np.ndarray] | None = None

    @classmethod
    def build(cls, docs: dict[int, list[str]], k1: float, b: float) -> _Main:
        bm25 = None
        if docs:
            import bm25s

            t = time.perf_counter()
            bm25 = bm25s.BM25(k1=k1, b=b, method="lucene")
            bm25.index(list(docs.values()), show_progress=False)
            log.debug("BM25 index over %d documents built in %.2fs", len(docs), time.perf_counter() - t)
        return cls(docs, bm25)

    @classmethod
    def stats_of(cls, docs: dict[int, list[str]]) -> _Main:
        return cls(docs, None)

    def idf(self, term: str) -> float:
        df = self.df.get(term, 0)
        return math.log(1 + (self.n - df + 0.5) / (df + 0.5))

    def kill(self, iid: int) -> None:
        r = self.row.get(iid)
        if r is not None and not self.dead[r]:
            self.dead[r] = True
            self.dead_count += 1

    def scores(self, terms: list[str], allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        empty = (np.zeros(0, np.int64), np.zeros(0, np.float32))
        if self.bm25 is None:
            return empty
        vocab = self.bm25.vocab_dict
        ids = [vocab[t] for t in terms if t in vocab]
        if not ids:
            return empty
        scores = self.bm25.get_scores_from_ids(ids)
        cand = scores > 0  # Lucene BM25 idf is positive, so score > 0 <=> a term matched
        if self.dead_count:
            cand &= ~self.dead
        if allowed is not None:
            cand &= self._allowed_mask(allowed)
        rows = np.nonzero(cand)[0]
        return self.iids[rows], scores[rows]

    def _allowed_mask(self, allowed: np.ndarray) -> np.ndarray:
        if self._sorted is None:
            order = np.argsort(self.iids, kind="stable")
            self._sorted = (self.iids[order], order)
        keys, rows = self._sorted
        mask = np.zeros(keys.size, bool)
        if keys.size and allowed.size:
            pos = np.clip(np.searchsorted(keys, allowed), 0, keys.size - 1)
            mask[rows[pos[keys[pos] == allowed]]] = True
        return mask
