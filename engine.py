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
from clinrag.errors import ConfigError, FilterError, IndexExistsError, IndexMismatchError
from clinrag.indexing.filters import Filters
from clinrag.indexing.manifest import MANIFEST, Manifest, fsync_dir, read_manifest, write_manifest
from clinrag.indexing.store import ENTITIES_JSON, LanceStore
from clinrag.indexing.writer import Transaction, WriteStats
from clinrag.retrieval.base import Hit, Retriever, Scored
from clinrag.retrieval.factory import build_retriever
from clinrag.retrieval.rows import HIT_COLUMNS, document_from_row, hit_from_row, row_entities

if TYPE_CHECKING:
    import datetime as dt

    from clinrag.generation.answer import AnswerConfig
    from clinrag.generation.types import Answer
    from clinrag.indexing.encoders import TokenEncoder
    from clinrag.indexing.image_encoders import ImageEncoder
    from clinrag.indexing.memory import PatientMemory
    from clinrag.retrieval.images import ImageHit, ImageIndex
    from clinrag.retrieval.timeline import TimelineEvent
    from clinrag.review.protocol import ReviewProtocol
    from clinrag.review.result import ReviewResult
    from clinrag.review.runner import Progress as ReviewProgress

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
        self._retrievers: dict[tuple[str, LateParams | None], Retriever] = {}
        self._chunk_doc: dict[str, str] | None = None
        self._memories: tuple[str, dict[str, Any]] | None = None  # (memory_dir, stored memories)
        self.late_params = LateParams()
        self._image_encoder: ImageEncoder | None = None
        self._image_index: ImageIndex | None = None

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
            image_dim, models = None, {}
            if cfg.image_model:
                from clinrag.indexing.image_encoders import get_image_encoder

                image_encoder = get_image_encoder(cfg.image_model)
                image_dim, models = image_encoder.dim, {"image": image_encoder.name}
            store = LanceStore.create(tmp, vector_dim, image_dim, entities=bool(cfg.ner_model))
            manifest = Manifest.new(cfg, models).committed(
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
        image_built = manifest.models.get("image")
        if image_built is not None and image_built != manifest.config.image_model:
            raise IndexMismatchError(f"{root}: its image embeddings were made by {image_built!r} but its config names "
                                     f"{manifest.config.image_model!r}; the index is inconsistent, rebuild it")
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
        self._image_index = None

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
            resume: bool = True, build_info: dict[str, Any] | None = None,
            image_progress: Callable[[int], None] | None = None) -> WriteStats:
        """Add or update records and commit. Unchanged records (same id and content) are skipped,
        so re-running an interrupted build resumes it. ``image_progress`` counts images embedded."""
        images = (lambda: self.image_encoder) if self.config.image_model else None
        with Transaction(self.root, self.manifest, "add", resume=resume, encoder=self.encoder,
                         image_encoder=images, image_progress=image_progress) as tx:
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

    def retriever(self, mode: str | None = None, late_params: LateParams | None = None) -> Retriever:
        """The first-stage retriever for ``mode`` (``lexical``, ``late`` or ``hybrid``) under the search
        settings ``late_params`` (default: :attr:`late_params`), cached per mode and settings."""
        mode = mode or self.config.mode
        if mode not in SEARCH_MODES:
            raise ConfigError(f"unknown search mode {mode!r}; choose one of {', '.join(SEARCH_MODES)}")
        params = late_params or self.late_params
        key = (mode, None if mode == "lexical" else params)  # BM25 does not depend on the settings
        if key in self._retrievers:
            return self._retrievers[key]
        retriever = build_retriever(mode, self.root, self.manifest, store=lambda: self.store,
                                    encoder=lambda: self.encoder, late_params=params, sub=self.retriever)
        self._retrievers[key] = retriever
        return retriever

    def allowed_chunks(self, filters: FilterLike) -> frozenset[str] | None:
        """The chunk ids a filter admits (None: no restriction), resolved by LanceDB."""
        f = Filters.coerce(filters)
        if f.uses_entities and not self.store.has_entities:
            raise FilterError(f"{self.root} was built without NER, so it has no entities to filter on; "
                              "rebuild it with `clinrag index --ner` (IndexConfig(ner_model='default'))")
        sql = f.to_sql(table="chunks")
        if sql is None:
            return None
        return frozenset(self.store.scan("chunks", ["chunk_id"], sql).column("chunk_id").to_pylist())

    def search(self, query: str, k: int = 10, filters: FilterLike = None, *, mode: str | None = None,
               unique_docs: bool = False, entity_boost: float = 0.0, temporal: bool = True,
               recency: float = 0.0) -> list[Hit]:
        """The ``k`` best chunks for ``query`` (or best chunk per document with ``unique_docs``).

        ``entity_boost`` > 0 (indexes built with NER) re-ranks the top candidates by the share of
        the query's entities a chunk mentions with compatible assertion (see
        :mod:`clinrag.retrieval.entity_boost`). With ``temporal`` (default), a "first"/"most recent"
        wish or a date range in the query ("latest HbA1c", "procedures in 2015") re-orders the hits
        (see :mod:`clinrag.retrieval.temporal`); ``recency`` > 0 adds a recency prior of that weight
        (one-year half-life)."""
        return self.search_batch([query], k, filters, mode=mode, unique_docs=unique_docs,
                                 entity_boost=entity_boost, temporal=temporal, recency=recency)[0]

    def search_batch(self, queries: Sequence[str], k: int = 10, filters: FilterLike = None, *,
                     mode: str | None = None, unique_docs: bool = False, entity_boost: float = 0.0,
                     temporal: bool = True, recency: float = 0.0) -> list[list[Hit]]:
        """Search many queries at once (faster than a loop: one filter pass, batched scoring); the
        options are those of :meth:`search`, applied to each query."""
        if k <= 0:
            raise ConfigError(f"k must be positive, got {k}")
        allowed = self.allowed_chunks(filters)
        if (allowed is not None and not allowed) or not self.manifest.counts.get("chunks", 0):
            return [[] for _ in queries]
        from clinrag.retrieval.temporal import apply_intent, detect_intent, recency_prior

        intents = [detect_intent(q) if temporal else None for q in queries]
        wide = recency > 0 or any(i is not None and not i.empty for i in intents)
        depth = max(k, 50) if wide else k  # a temporal re-order or prior looks past the first k
        boost = entity_boost > 0 and self.store.has_entities
        ranked = self.rank(queries, max(depth, 50) if boost else depth, allowed, mode=mode, unique_docs=unique_docs)
        columns = HIT_COLUMNS + (ENTITIES_JSON,) if self.store.has_entities else HIT_COLUMNS
        rows = self.store.fetch("chunks", [s.chunk_id for r in ranked for s in r], columns)
        if boost:
            ranked = self._entity_rerank(queries, ranked, rows, entity_boost, depth)
        name = self.retriever(mode).name
        out = []
        for r, intent in zip(ranked, intents, strict=True):
            hits = [hit_from_row(rows[s.chunk_id], s, rank, name) for rank, s in enumerate(r, 1)
                    if s.chunk_id in rows]
            if recency > 0:
                hits = recency_prior(hits, weight=recency)
            if intent is not None and not intent.empty:
                hits = apply_intent(hits, intent)
            out.append(hits[:k])
        return out

    def _entity_rerank(self, queries: Sequence[str], ranked: list[list[Scored]], rows: Mapping[str, Any],
                       weight: float, k: int) -> list[list[Scored]]:
        from clinrag.indexing.cache import get_model
        from clinrag.ner.pipeline import load_pipeline
        from clinrag.retrieval.entity_boost import entity_boost

        ner = get_model("ner", self.config.ner_model or "default", load_pipeline)
        chunk_ents = {cid: row_entities(row) for cid, row in rows.items()}
        return [entity_boost(r, q_ents, chunk_ents, weight)[:k]
                for r, q_ents in zip(ranked, ner.pipe(list(queries)), strict=True)]

    def rank(self, queries: Sequence[str], k: int, allowed: frozenset[str] | None = None, *,
             mode: str | None = None, unique_docs: bool = False) -> list[list[Scored]]:
        """Ranked chunk ids and scores, without loading their text (used by evaluation)."""
        if not self.manifest.counts.get("chunks", 0):
            return [[] for _ in queries]
        retriever = self.retriever(mode)
        if not unique_docs:
            return retriever.search(queries, k, allowed)
        from clinrag.retrieval.unique_docs import rank_unique_docs

        total = len(allowed) if allowed is not None else self.manifest.counts.get("chunks", 0)
        return rank_unique_docs(retriever, queries, k, allowed, total=total, doc_of=self.chunk_doc_map())

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
        return [document_from_row(rows[i]) for i in ids if i in rows]

    def info(self) -> IndexInfo:
        return IndexInfo(str(self.root), dict(self.manifest.counts), self.manifest.to_dict())

    # -- images (steps in clinrag.retrieval.image_search) -----------------------------------------
    @property
    def image_encoder(self) -> ImageEncoder:
        """The index's image model (loaded once); ConfigError saying what to do when it has none."""
        from clinrag.retrieval.image_search import check_image_encoder, no_image_model_error

        name = self.config.image_model
        if name is None:
            raise no_image_model_error(self.root, self.manifest.counts.get("images", 0))
        if self._image_encoder is None:
            from clinrag.indexing.image_encoders import get_image_encoder

            self._image_encoder = get_image_encoder(name)
        check_image_encoder(self.root, name, self.manifest.models.get("image"), self.store.image_dim,
                            self._image_encoder)
        return self._image_encoder

    def image_index(self) -> ImageIndex:
        """The FAISS index of the image embeddings (built from LanceDB once per open engine)."""
        _ = self.image_encoder  # fails clearly without an image model
        if self._image_index is None:
            from clinrag.retrieval.images import ImageIndex

            self._image_index = ImageIndex.from_store(self.store)
        return self._image_index

    def _image_ranking(self, query: str | None, image: str | os.PathLike[str] | None, k: int,
                       filters: FilterLike, vector: Any = None) -> list[Scored]:
        from clinrag.retrieval.image_search import allowed_images, image_query

        if k <= 0:
            raise ConfigError(f"k must be positive, got {k}")
        q = image_query(lambda: self.image_encoder, query, image, vector)
        index = self.image_index()
        return index.search(q, k, allowed_images(self.store, filters))[0]

    def search_images(self, query: str | None = None, *, image: str | os.PathLike[str] | None = None, k: int = 10,
                      filters: FilterLike = None, vector: Any = None) -> list[ImageHit]:
        """Images most similar to a text ``query`` (text -> image, CLIP text tower), to an ``image``
        file (image -> image), or to a precomputed ``vector`` (a unit row in the image model's space).
        Hits carry path, patient, date, modality and the linked notes."""
        from clinrag.retrieval.images import image_hits

        return image_hits(self.store, self._image_ranking(query, image, k, filters, vector))

    def search_image_notes(self, image: str | os.PathLike[str], k: int = 10, filters: FilterLike = None, *,
                           depth: int = 50) -> list[Hit]:
        """Image -> text: the notes (chunks) linked to the images most similar to ``image``; each hit's
        score is its image's similarity and ``metadata['via_image']`` names that image."""
        from clinrag.retrieval.image_search import note_hits

        ranked = self._image_ranking(None, image, max(depth, k), filters)
        return note_hits(self.store, ranked, k, self.allowed_chunks(filters))

    def search_multimodal(self, query: str | None = None, *, image: str | os.PathLike[str] | None = None,
                          k: int = 10, filters: FilterLike = None, mode: str | None = None,
                          method: str = "rrf", image_weight: float = 0.5, depth: int = 50) -> list[Hit]:
        """One ranked list of text hits and image hits for one query, fused (``retrieval.fusion``).

        A text query fuses text search (``mode``) with text -> image search; an image query fuses
        image -> text with image -> image. Each hit's ``stage_scores`` keep the unfused scores.
        """
        from clinrag.retrieval.image_search import fuse_text_and_images

        if not 0.0 <= image_weight <= 1.0:
            raise ConfigError(f"image_weight must be in [0, 1], got {image_weight}")
        n = max(depth, k)
        img_ranked = self._image_ranking(query, image, n, filters)
        if image is not None:
            text_hits = self.search_image_notes(image, n, filters, depth=n)
        else:
            text_hits = self.search(str(query), n, filters, mode=mode)
        return fuse_text_and_images(self.store, text_hits, img_ranked, k=k, method=method, image_weight=image_weight)

    # -- systematic reviews (clinrag.review) --------------------------------------------------------
    def review(self, protocol: ReviewProtocol | str | os.PathLike[str], *, out: str | os.PathLike[str] | None = None,
               mode: str | None = None, batch_size: int = 64,
               progress: Callable[[ReviewProgress], None] | None = None) -> ReviewResult:
        """Run a review protocol (a :class:`~clinrag.review.protocol.ReviewProtocol` or a YAML path):
        every formulation searched in batches, fused per question, de-duplicated and flagged by the
        criteria. With ``out``, writes per-question CSV/Parquet/RIS and a run manifest, resuming a
        killed run. See ``docs/review.md``."""
        from clinrag.review.protocol import ReviewProtocol, load_protocol
        from clinrag.review.runner import run_review

        path = None
        if not isinstance(protocol, ReviewProtocol):
            path = str(protocol)
            protocol = load_protocol(protocol)
        mode = mode or protocol.mode or self.config.mode
        return run_review(self, protocol, out=out, mode=mode, batch_size=batch_size, progress=progress,
                          index_info={"path": str(self.root), "manifest": self.manifest.to_dict()},
                          protocol_path=path)

    # -- answering (clinrag.generation) ------------------------------------------------------------
    def ask(self, question: str, k: int = 8, patient: str | None = None, filters: FilterLike = None, *,
            mode: str = "auto", llm: Any = None, search_mode: str | None = None,
            on_token: Callable[[str], None] | None = None, config: AnswerConfig | None = None) -> Answer:
        """Answer ``question`` from the ``k`` best chunks, citing them; abstains without support.

        ``patient`` scopes the search and, again, the evidence: no other patient's record can
        reach the prompt or the answer. ``mode``: ``llm``, ``extractive`` or ``auto`` (the LLM,
        or extractive when none loads); ``llm`` is a spec string (``llamacpp[:PATH]``,
        ``ollama:MODEL``...) or any llama-index LLM; ``on_token`` receives streamed text.
        See :mod:`clinrag.generation.answer`.
        """
        import time
        from dataclasses import replace

        from clinrag.generation.answer import AnswerConfig, answer

        f = Filters.coerce(filters)
        if patient is not None:
            given = f.patient_id
            if given is not None and patient not in ([given] if isinstance(given, str) else list(given)):
                raise ConfigError(f"patient {patient!r} conflicts with the patient filter {given!r}")
            f = replace(f, patient_id=patient)
        t0 = time.perf_counter()
        hits = self.search(question, k=k, filters=f, mode=search_mode)
        cfg = replace(config or AnswerConfig(), mode=mode, max_evidence=k)
        encoder = self.encoder if self.config.text_model else None
        return answer(question, hits, patient=patient, llm=llm, config=cfg, encoder=encoder, on_token=on_token,
                      timings={"retrieval": time.perf_counter() - t0})

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
        from clinrag.indexing.memory import load_memory, read_patient_memory

        mdir = self.manifest.memory_dir
        if mdir and (self._memories is None or self._memories[0] != mdir):  # read once per committed version
            self._memories = (mdir, load_memory(self.root, mdir))
        stored = self._memories[1] if mdir and self._memories is not None else None
        return read_patient_memory(self.root, mdir, self.store, patient_id, stored=stored)


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
