"""The clinrag engine: create or open an index directory, add records, search.

>>> import tempfile
>>> from clinrag import Document, Engine
>>> with Engine.create(tempfile.mkdtemp() + "/idx") as eng:
...     _ = eng.add([Document(id="d1", text="Metformin for type 2 diabetes."),
...                  Document(id="d2", text="Chest X-ray shows pneumonia.")])
...     [h.doc_id for h in eng.search("diabetes metformin")]
['d1']
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clinrag.config import SEARCH_MODES, IndexConfig, LateParams
from clinrag.data.schema import Document, ImageRecord
from clinrag.errors import ConfigError, IndexExistsError, IndexMismatchError
from clinrag.indexing.filters import Filters
from clinrag.indexing.manifest import MANIFEST, Manifest, fsync_dir, read_manifest, write_manifest
from clinrag.indexing.store import LanceStore
from clinrag.indexing.writer import Transaction, WriteStats
from clinrag.retrieval.base import Hit, Retriever, Scored
from clinrag.retrieval.bm25 import BM25Retriever

if TYPE_CHECKING:
    import datetime as dt

    from clinrag.indexing.encoders import TokenEncoder
    from clinrag.indexing.memory import PatientMemory
    from clinrag.retrieval.timeline import TimelineEvent

log = logging.getLogger(__name__)
FilterLike = Filters | Mapping[str, Any] | None


@dataclass(frozen=True)
class IndexInfo:
    """What ``clinrag info`` shows: where the index is, its counts and its manifest."""

    path: str
    counts: Mapping[str, int]
    manifest: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "counts": dict(self.counts), "manifest": dict(self.manifest)}


class Engine:
    """An open clinrag index. Create with :meth:`create`, open with :meth:`open`."""

    def __init__(self, root: Path, manifest: Manifest, encoder: TokenEncoder | None = None) -> None:
        self.root = root
        self.manifest = manifest
        self._encoder = encoder
        self._store: LanceStore | None = None
        self._retrievers: dict[str, Retriever] = {}
        self._chunk_doc: dict[str, str] | None = None
        self.late_params = LateParams()

    # -- lifecycle ----------------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike[str], config: IndexConfig | None = None, *,
               overwrite: bool = False, encoder: TokenEncoder | None = None) -> Engine:
        """Create an empty index at ``path``. With ``overwrite``, an existing index is replaced
        (atomically: the old one stays readable until the new empty one is in place)."""
        root = Path(path)
        if (root / MANIFEST).exists() and not overwrite:
            raise IndexExistsError(f"an index already exists at {root}; open it with Engine.open, "
                                   "or pass overwrite=True (CLI: --overwrite) to replace it")
        if root.exists() and not (root / MANIFEST).exists() and any(root.iterdir()):
            raise IndexExistsError(f"{root} exists, is not empty and is not a clinrag index; "
                                   "choose another directory")
        root.parent.mkdir(parents=True, exist_ok=True)
        tmp = root.parent / f".{root.name}.new-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            cfg = config or IndexConfig()
            vector_dim = None
            if cfg.text_model and cfg.late_backend == "lancedb":
                from clinrag.indexing.cache import get_model
                from clinrag.indexing.colbert import load_token_encoder

                encoder = encoder or get_model("text", cfg.text_model, load_token_encoder)
                vector_dim = encoder.dim
            store = LanceStore.create(tmp, vector_dim)
            manifest = Manifest.new(cfg).committed(
                tables=store.versions(), counts={"documents": 0, "chunks": 0, "images": 0, "patients": 0})
            write_manifest(tmp, manifest)
            _swap_in(tmp, root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return cls(root, manifest, encoder)

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, expect_config: IndexConfig | None = None,
             encoder: TokenEncoder | None = None) -> Engine:
        """Open an existing index, validating its manifest (format version, models, settings)."""
        root = Path(path)
        manifest = read_manifest(root)
        if expect_config is not None and expect_config != manifest.config:
            diff = {k: (v, manifest.config.to_dict()[k]) for k, v in expect_config.to_dict().items()
                    if manifest.config.to_dict()[k] != v}
            raise IndexMismatchError(f"{root} was built with other settings (wanted, found): {diff}. "
                                     "Rebuild it with `--overwrite` or drop the differing options.")
        lexical = manifest.models.get("lexical")
        if lexical is not None and not str(lexical).startswith("bm25s-"):
            raise IndexMismatchError(f"{root} has a lexical index of {lexical!r}; this clinrag reads bm25s")
        built = manifest.models.get("text")
        if encoder is not None and built is not None and encoder.name != built:
            raise IndexMismatchError(f"{root} was built with the text model {built!r}, not {encoder.name!r}; "
                                     "query it with the same model, or rebuild the index with --overwrite")
        return cls(root, manifest, encoder)

    @property
    def encoder(self) -> TokenEncoder | None:
        """The token encoder of the index's text model (loaded once, on first use), or None."""
        name = self.config.text_model
        if name is None:
            return None
        if self._encoder is None:
            from clinrag.indexing.cache import get_model
            from clinrag.indexing.colbert import load_token_encoder

            self._encoder = get_model("text", name, load_token_encoder)
        built = self.manifest.models.get("text")
        if built is not None and self._encoder.name != built:
            raise IndexMismatchError(f"{self.root} was built with the text model {built!r}, but "
                                     f"{self._encoder.name!r} was loaded for {name!r}; rebuild the index")
        return self._encoder

    def close(self) -> None:
        self._store = None
        self._retrievers.clear()
        self._chunk_doc = None

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def refresh(self) -> None:
        """Re-read the manifest (another process may have committed a write)."""
        manifest = read_manifest(self.root)
        if manifest.to_dict() != self.manifest.to_dict():
            self.close()
            self.manifest = manifest

    # -- writing ------------------------------------------------------------------------------------
    def add(self, records: Iterable[Document | ImageRecord], *, progress: Callable[[int], None] | None = None,
            resume: bool = True, build_info: dict[str, Any] | None = None) -> WriteStats:
        """Add or update records and commit. Unchanged records (same id and content) are skipped,
        so re-running an interrupted build resumes it."""
        with Transaction(self.root, self.manifest, "add", resume=resume, encoder=self.encoder) as tx:
            stats = tx.add(records, progress=progress)
            self.manifest = tx.commit(build_info)
        self.close()
        return stats

    def optimize(self) -> dict[str, float]:
        """Re-train the multi-vector codec on the current data and rewrite all codes (see ``clinrag optimize``)."""
        with Transaction(self.root, self.manifest, "optimize", encoder=self.encoder) as tx:
            report = tx.optimize()
            self.manifest = tx.commit({"optimize": report})
        self.close()
        return report

    def delete(self, ids: Iterable[str]) -> int:
        """Delete documents (and their chunks) or images by id. Returns how many were deleted."""
        with Transaction(self.root, self.manifest, "delete") as tx:
            stats = tx.delete(ids)
            self.manifest = tx.commit()
        self.close()
        return stats.documents_deleted

    # -- reading ------------------------------------------------------------------------------------
    @property
    def store(self) -> LanceStore:
        if self._store is None:
            self._store = LanceStore(self.root, self.manifest.tables)
        return self._store

    @property
    def config(self) -> IndexConfig:
        return self.manifest.config

    def retriever(self, mode: str | None = None) -> Retriever:
        """The first-stage retriever for ``mode`` (``lexical``, ``late`` or ``hybrid``)."""
        mode = mode or self.config.mode
        if mode not in SEARCH_MODES:
            raise ConfigError(f"unknown search mode {mode!r}; choose one of {', '.join(SEARCH_MODES)}")
        if mode in self._retrievers:
            return self._retrievers[mode]
        retriever: Retriever
        if mode == "lexical":
            if self.manifest.bm25_dir is None:
                raise ConfigError(f"{self.root} has no lexical index; add records to build it")
            retriever = BM25Retriever.load(self.root / self.manifest.bm25_dir, self.config)
        elif self.config.text_model is None:
            raise ConfigError(f"search mode {mode!r} needs a multi-vector text model, and {self.root} "
                              "was built without one; use --mode lexical or rebuild the index with --text-model")
        elif mode == "late" and self.config.late_backend == "lancedb":
            from clinrag.retrieval.lance_mv import LanceMultiVectorRetriever

            retriever = LanceMultiVectorRetriever(self.store.table("chunks"), self.encoder, vector_column="vectors")
        elif mode == "late":
            if self.manifest.mv_dir is None or self.manifest.codec_dir is None:
                raise ConfigError(f"{self.root} has no multi-vector index yet; add records to build it")
            from clinrag.indexing.multivector import MultiVectorIndex, TokenCompressor
            from clinrag.retrieval.late import LateRetriever

            encoder = self.encoder
            if encoder is None:  # pragma: no cover - text_model is set here
                raise ConfigError("no text model")
            comp = TokenCompressor.load(self.root / self.manifest.codec_dir)
            retriever = LateRetriever(MultiVectorIndex.load(self.root / self.manifest.mv_dir), comp.codec, encoder,
                                      query_transform=comp.project if comp.projection is not None else None,
                                      params=self.late_params)
        else:
            from clinrag.retrieval.hybrid import HybridRetriever

            w = self.config.hybrid_weight
            retriever = HybridRetriever([self.retriever("lexical"), self.retriever("late")], weights=[1 - w, w],
                                        method=self.config.hybrid_method)
        self._retrievers[mode] = retriever
        return retriever

    def allowed_chunks(self, filters: FilterLike) -> frozenset[str] | None:
        """The chunk ids a filter admits (None: no restriction), resolved by LanceDB."""
        sql = Filters.coerce(filters).to_sql(table="chunks")
        if sql is None:
            return None
        return frozenset(self.store.scan("chunks", ["chunk_id"], sql).column("chunk_id").to_pylist())

    def search(self, query: str, k: int = 10, filters: FilterLike = None, *, mode: str | None = None,
               unique_docs: bool = False, temporal: bool = True, recency: float = 0.0) -> list[Hit]:
        """The ``k`` best chunks for ``query`` (or best chunk per document with ``unique_docs``).

        With ``temporal`` (default), a "first"/"most recent" wish or a date range in the query
        ("latest HbA1c", "procedures in 2015") re-orders the hits (see :mod:`clinrag.retrieval.temporal`);
        ``recency`` > 0 adds a recency prior of that weight (one-year half-life)."""
        if not temporal and recency <= 0:
            return self.search_batch([query], k, filters, mode=mode, unique_docs=unique_docs)[0]
        from clinrag.retrieval.temporal import apply_intent, detect_intent, recency_prior

        intent = detect_intent(query) if temporal else None
        wide = intent is not None and not intent.empty or recency > 0
        hits = self.search_batch([query], max(k, 50) if wide else k, filters, mode=mode,
                                 unique_docs=unique_docs)[0]
        if recency > 0:
            hits = recency_prior(hits, weight=recency)
        if intent is not None and not intent.empty:
            hits = apply_intent(hits, intent)
        return hits[:k]

    def search_batch(self, queries: Sequence[str], k: int = 10, filters: FilterLike = None, *,
                     mode: str | None = None, unique_docs: bool = False) -> list[list[Hit]]:
        """Search many queries at once (faster than a loop: one filter pass, batched scoring)."""
        if k <= 0:
            raise ConfigError(f"k must be positive, got {k}")
        allowed = self.allowed_chunks(filters)
        if (allowed is not None and not allowed) or not self.manifest.counts.get("chunks", 0):
            return [[] for _ in queries]
        ranked = self.rank(queries, k, allowed, mode=mode, unique_docs=unique_docs)
        rows = self.store.fetch("chunks", [s.chunk_id for r in ranked for s in r], _HIT_COLUMNS)
        name = self.retriever(mode).name
        return [[_hit(rows[s.chunk_id], s, rank, name) for rank, s in enumerate(r, 1) if s.chunk_id in rows]
                for r in ranked]

    def rank(self, queries: Sequence[str], k: int, allowed: frozenset[str] | None = None, *,
             mode: str | None = None, unique_docs: bool = False) -> list[list[Scored]]:
        """Ranked chunk ids and scores, without loading their text (used by evaluation)."""
        if not self.manifest.counts.get("chunks", 0):
            return [[] for _ in queries]
        retriever = self.retriever(mode)
        if not unique_docs:
            return retriever.search(queries, k, allowed)
        total = len(allowed) if allowed is not None else self.manifest.counts.get("chunks", 0)
        doc_of = self.chunk_doc_map()
        out: list[list[Scored]] = [[] for _ in queries]
        todo = list(range(len(queries)))
        depth = max(4 * k, 50)
        while todo:
            results = retriever.search([queries[i] for i in todo], depth, allowed)
            again = []
            for qi, res in zip(todo, results, strict=True):
                best: dict[str, Scored] = {}
                for s in res:
                    best.setdefault(doc_of.get(s.chunk_id, s.chunk_id), s)
                out[qi] = list(best.values())[:k]
                if len(best) < k and len(res) >= depth and depth < total:
                    again.append(qi)
            todo, depth = again, depth * 4
        return out

    def chunk_doc_map(self) -> dict[str, str]:
        """``{chunk_id: doc_id}`` for every chunk (loaded once per open engine)."""
        if self._chunk_doc is None:
            t = self.store.scan("chunks", ["chunk_id", "doc_id"])
            self._chunk_doc = dict(zip(t.column("chunk_id").to_pylist(), t.column("doc_id").to_pylist(),
                                       strict=True))
        return self._chunk_doc

    def documents(self, ids: Sequence[str]) -> list[Document]:
        """Full documents by id, in the order given (unknown ids are skipped)."""
        rows = self.store.fetch("documents", ids)
        return [_document(rows[i]) for i in ids if i in rows]

    def info(self) -> IndexInfo:
        return IndexInfo(str(self.root), dict(self.manifest.counts), self.manifest.to_dict())

    # -- patients: timelines, memory ---------------------------------------------------------------
    def timeline(self, patient_id: str, since: str | dt.datetime | None = None,
                 until: str | dt.datetime | None = None, kinds: Sequence[str] | None = None) -> list[TimelineEvent]:
        """The patient's dated events (notes, rendered resources, images), oldest first; ``since``/``until``
        take dates or durations (``6m``), ``kinds`` record kinds (``condition``, ``note``, ``image``...)."""
        from clinrag.retrieval.timeline import build_timeline

        return build_timeline(self.store, patient_id, since, until, kinds)

    def memory(self, patient_id: str) -> PatientMemory:
        """The patient's memory (problems, medications, allergies, last labs, encounters; each line citing
        record ids), as kept up to date by every write. Raises PatientNotFoundError for an unknown patient."""
        from clinrag.errors import PatientNotFoundError
        from clinrag.indexing.memory import MEMORY_COLUMNS, PatientMemory, load_memory, rows_from_table, summarize
        from clinrag.indexing.store import sql_in

        stored = load_memory(self.root, self.manifest.memory_dir) if self.manifest.memory_dir else None
        if stored is not None and patient_id in stored:
            return PatientMemory.from_dict(stored[patient_id])
        rows = rows_from_table(self.store.scan("documents", list(MEMORY_COLUMNS), sql_in("patient_id", [patient_id]))
                               .to_pylist()).get(patient_id)
        if not rows:
            raise PatientNotFoundError(f"{self.root} has no records of patient {patient_id!r}; "
                                       "list patients with `clinrag search ... --json` or check the id")
        return summarize(patient_id, rows)


_HIT_COLUMNS = ("chunk_id", "doc_id", "text", "title", "section", "source", "kind", "patient_id", "encounter_id",
                "timestamp", "meta_json")


def _hit(row: Mapping[str, Any], s: Scored, rank: int, stage: str) -> Hit:
    return Hit(
        chunk_id=row["chunk_id"], doc_id=row["doc_id"], score=s.score, text=row["text"], rank=rank,
        title=row["title"] or "", section=row["section"] or "", source=row["source"] or "",
        kind=row["kind"] or "", patient_id=row["patient_id"], encounter_id=row["encounter_id"],
        timestamp=row["timestamp"], metadata=json.loads(row["meta_json"] or "{}"),
        stage_scores=dict(s.stages) if s.stages else {stage: s.score},
    )


def _document(row: Mapping[str, Any]) -> Document:
    return Document(id=row["doc_id"], text=row["text"], title=row["title"] or "", source=row["source"] or "",
                    kind=row["kind"] or "document", patient_id=row["patient_id"], timestamp=row["timestamp"],
                    encounter_id=row["encounter_id"], metadata=json.loads(row["meta_json"] or "{}"))


def _swap_in(new: Path, target: Path) -> None:
    """Put directory ``new`` at ``target``, replacing what is there with renames only."""
    trash = None
    if target.exists():
        trash = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(target, trash)
    os.rename(new, target)
    fsync_dir(target.parent)
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)


__all__ = ["Engine", "IndexInfo"]
