"""Transactions on an index directory: add, update and delete records, then commit atomically.

A write takes an exclusive lock, records what it is doing in ``journal.json``,
writes new LanceDB versions and a new BM25 directory, and finally commits by
replacing ``manifest.json`` (an atomic rename). Until then readers, and any
process that opens the index, see the previous commit unchanged.

If a write dies (exception, Ctrl-C, SIGKILL), the next write finds the journal:
an interrupted ``add`` is resumed (documents already written are recognised by
id and content hash and not written again), anything else is rolled back to the
committed table versions.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from clinrag.config import IndexConfig
from clinrag.data.chunking import chunk_document
from clinrag.data.schema import Chunk, Document, ImageRecord
from clinrag.errors import IndexLockedError
from clinrag.indexing.encoders import document_budget
from clinrag.indexing.lexical import bm25_model_id, build_bm25
from clinrag.indexing.manifest import Manifest, atomic_write_text, dir_checksums, write_manifest
from clinrag.indexing.multivector import TokenCompressor, build_multivector
from clinrag.indexing.store import (
    LanceStore,
    chunks_table,
    documents_table,
    image_hash,
    images_table,
    sql_in,
)

if TYPE_CHECKING:
    from clinrag.indexing.encoders import TokenEncoder
    from clinrag.indexing.image_encoders import ImageEncoder

log = logging.getLogger(__name__)
JOURNAL = "journal.json"
LOCK = ".lock"
FLUSH_CHUNKS = 8192


@dataclass(frozen=True)
class WriteStats:
    """What a write changed."""

    documents_added: int = 0
    documents_updated: int = 0
    documents_unchanged: int = 0
    documents_deleted: int = 0
    chunks_added: int = 0
    chunks_deleted: int = 0
    images_added: int = 0
    images_unchanged: int = 0
    resumed: bool = False


class IndexLock:
    """An exclusive, non-blocking ``flock`` on ``root/.lock``."""

    def __init__(self, root: Path) -> None:
        self.path = root / LOCK
        self._fd: int | None = None

    def __enter__(self) -> IndexLock:
        self._fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            self._fd = None
            raise IndexLockedError(
                f"{self.path.parent} is being written by another process; wait for it to finish "
                "(or, if none runs, delete the stale lock file .lock)") from None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


class Transaction:
    """One write to an index. Use as a context manager; call :meth:`commit` to publish it."""

    def __init__(self, root: Path, manifest: Manifest, op: str, *, resume: bool = True,
                 encoder: TokenEncoder | None = None,
                 image_encoder: Callable[[], ImageEncoder] | None = None,
                 image_progress: Callable[[int], None] | None = None) -> None:
        self.root = root
        self.encoder = encoder
        self.image_encoder = image_encoder  # loaded on the first image to embed
        self.image_progress = image_progress  # called with the count of images embedded so far
        self._embedded = 0
        self.compressor: TokenCompressor | None = None
        self.codec_dir: str | None = manifest.codec_dir
        self._drift = [0.0, 0]  # sum of token-centroid cosines of new tokens, token count
        self._truncated = 0  # chunks the text model had to truncate (reported in the manifest)
        self._ner_seconds = 0.0  # time spent in NER (reported in the manifest)
        self.ner_model_id: str | None = None
        self.manifest = manifest
        self.config: IndexConfig = manifest.config
        self.op = op
        self.resume = resume
        self._lock = IndexLock(root)
        self.store: LanceStore
        self.resumed = False
        self._counts: dict[str, int] = {}
        self._touched: set[str] = set()  # patients whose memory this write must recompute

    # -- lifecycle ----------------------------------------------------------------------------------
    def __enter__(self) -> Transaction:
        self._lock.__enter__()
        try:
            self._begin()
        except BaseException:
            self._lock.__exit__()
            raise
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None:
            log.warning("write to %s interrupted; the last commit is unchanged and the next %s "
                        "resumes where this one stopped", self.root, self.op)
        self._lock.__exit__()

    def _begin(self) -> None:
        journal = self.root / JOURNAL
        previous: dict[str, Any] | None = None
        if journal.exists():
            try:
                previous = json.loads(journal.read_text())
            except (OSError, json.JSONDecodeError):
                previous = None
        self.store = LanceStore(self.root)
        latest = self.store.versions()
        dirty = latest != dict(self.manifest.tables)
        if dirty and previous and previous.get("op") == "add" and self.op == "add" and self.resume:
            log.info("resuming an interrupted add in %s", self.root)
            self.resumed = True
            # codes already written were made with the codec that run trained: keep using it
            self.codec_dir = previous.get("codec_dir") or self.codec_dir
            self._drop_orphan_chunks()
        elif dirty:
            log.info("rolling back uncommitted writes in %s", self.root)
            self.store.rollback_to(self.manifest.tables)
        if self.codec_dir:
            self.compressor = TokenCompressor.load(self.root / self.codec_dir)
        self._write_journal()

    def _write_journal(self) -> None:
        atomic_write_text(self.root / JOURNAL, json.dumps({
            "op": self.op, "pid": os.getpid(), "codec_dir": self.codec_dir,
            "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "committed_tables": dict(self.manifest.tables)}))

    def _drop_orphan_chunks(self) -> None:
        """Chunks are written before their document row; chunks without one are from a cut batch."""
        docs = set(self.store.scan("documents", ["doc_id"]).column("doc_id").to_pylist())
        chunk_docs = set(self.store.scan("chunks", ["doc_id"]).column("doc_id").unique().to_pylist())
        orphans = sorted(chunk_docs - docs)
        if orphans:
            log.info("removing chunks of %d documents whose write was cut short", len(orphans))
            self.store.delete("chunks", "doc_id", orphans)

    # -- writes -------------------------------------------------------------------------------------
    def add(self, records: Iterable[Document | ImageRecord],
            progress: Callable[[int], None] | None = None) -> WriteStats:
        """Add or update records. A document whose id exists with other content replaces it."""
        existing = dict(zip(*[self.store.scan("documents", ["doc_id", "content_hash"]).column(c).to_pylist()
                              for c in ("doc_id", "content_hash")], strict=True))
        existing_img = dict(zip(*[self.store.scan("images", ["image_id", "content_hash"]).column(c).to_pylist()
                                  for c in ("image_id", "content_hash")], strict=True))
        st = {"added": 0, "updated": 0, "unchanged": 0, "chunks": 0, "img_added": 0, "img_unchanged": 0,
              "chunks_deleted": 0}
        # pending writes, keyed by id: a record repeated in one batch keeps its last version
        docs: dict[str, tuple[Document, list[Chunk]]] = {}
        images: dict[str, ImageRecord] = {}
        replace: list[str] = []
        replace_img: list[str] = []
        n_pending = 0
        cfg = self.config
        # chunks never exceed what the text model reads (the LanceDB multivector backend too)
        budget = document_budget(self.encoder) if self.encoder is not None else None

        def flush() -> None:
            nonlocal n_pending
            if replace:
                self._touch(replace)
                st["chunks_deleted"] += self.store.count("chunks", sql_in("doc_id", replace))
                self.store.delete("chunks", "doc_id", replace)
                self.store.delete("documents", "doc_id", replace)
            if replace_img:
                self.store.delete("images", "image_id", replace_img)
            # chunks before their document row: a cut write leaves orphan chunks, removed on resume
            self.store.append("chunks", self._encode([c for _, cs in docs.values() for c in cs]))
            self.store.append("documents", documents_table([d for d, _ in docs.values()],
                                                           [len(cs) for _, cs in docs.values()]))
            self.store.append("images", self._images(list(images.values())))
            for pending in (docs, images):
                pending.clear()
            replace.clear()
            replace_img.clear()
            n_pending = 0

        for seen, rec in enumerate(records, 1):
            if isinstance(rec, ImageRecord):
                state = _classify(existing_img, rec.id, image_hash(rec), replace_img)
                if state == "unchanged":
                    st["img_unchanged"] += 1
                else:
                    images[rec.id] = rec
                    st["img_added"] += 1
            else:
                state = _classify(existing, rec.id, rec.content_hash, replace)
                st[state] += 1
                if state != "unchanged":
                    cs = chunk_document(rec, max_words=cfg.chunk_max_words,
                                        overlap_words=cfg.chunk_overlap_words, split_sections=cfg.split_sections,
                                        max_tokens=budget[0] if budget else None,
                                        count_tokens=budget[1] if budget else None)
                    if rec.id in docs:  # repeated within this batch: the earlier version never lands
                        st["chunks"] -= len(docs[rec.id][1])
                    docs[rec.id] = (rec, cs)
                    if rec.patient_id:
                        self._touched.add(rec.patient_id)
                    n_pending += len(cs)
                    st["chunks"] += len(cs)
            if n_pending >= FLUSH_CHUNKS or len(images) >= FLUSH_CHUNKS or len(docs) >= FLUSH_CHUNKS:
                flush()
            if progress is not None:
                progress(seen)
        flush()
        return WriteStats(documents_added=st["added"], documents_updated=st["updated"],
                          documents_unchanged=st["unchanged"], chunks_added=st["chunks"],
                          chunks_deleted=st["chunks_deleted"], images_added=st["img_added"],
                          images_unchanged=st["img_unchanged"], resumed=self.resumed)

    def _entities(self, chunks: list[Chunk]) -> list[list[Any]] | None:
        """Each chunk's entities when the index is built with NER (``ner_model``), else None."""
        if not self.config.ner_model or not self.store.has_entities:
            return None
        import time

        from clinrag.indexing.cache import get_model
        from clinrag.ner.pipeline import load_pipeline

        ner = get_model("ner", self.config.ner_model, load_pipeline)
        t0 = time.perf_counter()
        ents = ner.pipe([c.text for c in chunks])
        self._ner_seconds += time.perf_counter() - t0
        self.ner_model_id = ner.model_id
        return [list(e) for e in ents]

    def _images(self, images: list[ImageRecord]) -> pa.Table:
        """Image rows, with embeddings when the index has an image model."""
        dim = self.store.image_dim
        if not dim or not images:
            return images_table(images, image_dim=dim)
        if self.image_encoder is None:
            from clinrag.errors import ConfigError

            raise ConfigError(f"{self.root} stores image embeddings but no image model was given to embed them")
        from clinrag.indexing.image_embed import embed_image_files

        done, callback = self._embedded, self.image_progress

        def report(n: int) -> None:
            if callback is not None:
                callback(done + n)

        vectors = embed_image_files([r.path for r in images], self.image_encoder(), progress=report)
        self._embedded += len(images)
        return images_table(images, vectors, image_dim=dim)

    def _touch(self, doc_ids: list[str]) -> None:
        """Mark the patients of stored documents ``doc_ids`` for a memory update."""
        rows = self.store.fetch("documents", doc_ids, ["doc_id", "patient_id"])
        self._touched.update(r["patient_id"] for r in rows.values() if r.get("patient_id"))

    def _memory(self) -> str | None:
        """Recompute the memory of the patients this write touched; a new memory dir, or the old one."""
        from clinrag.indexing.memory import MEMORY_COLUMNS, load_memory, save_memory, update_memory

        old_dir = self.manifest.memory_dir
        # first build, an index made before memory existed, or a resumed add (whose first run's
        # touched patients are unknown): recompute every patient
        full = old_dir is None or self.resumed
        if not full and not self._touched:
            return old_dir
        old = {} if full else load_memory(self.root, old_dir)
        touched = sorted(self._touched)
        where = "patient_id IS NOT NULL" if full else sql_in("patient_id", touched) if touched else None
        rows = self.store.scan("documents", list(MEMORY_COLUMNS), where).to_pylist() if where else []
        memory = update_memory(old, touched, rows)
        log.info("patient memory: %d patients recomputed, %d in all", len(touched) if not full else len(memory),
                 len(memory))
        return save_memory(self.root, memory)

    def _encode(self, chunks: list[Chunk]) -> pa.Table:
        """Chunk rows, with compressed token vectors when the index has a text model."""
        entities = self._entities(chunks) if chunks else None
        if self.encoder is None or not chunks:
            return chunks_table(chunks, vector_dim=self.store.vector_dim, entities=entities)
        before = self.encoder.truncated
        vectors = self.encoder.encode_documents([c.text for c in chunks])
        self._truncated += self.encoder.truncated - before
        if self.store.vector_dim:  # LanceDB multivector backend: vectors as they are
            return chunks_table(chunks, vectors=vectors, vector_dim=self.store.vector_dim, entities=entities)
        if self.compressor is None:
            cfg = self.config
            self.compressor = TokenCompressor.fit(vectors, dim=cfg.dim, nbits=cfg.nbits, n_centroids=cfg.n_centroids)
            name = f"codec-{uuid.uuid4().hex[:12]}"
            self.compressor.save(self.root / name)
            self.codec_dir = name
            self._write_journal()
            log.info("trained %d centroids (%d-bit residuals) on %d token vectors",
                     len(self.compressor.codec.centroids), cfg.nbits, int(self.compressor.stats["train_tokens"]))
        flat = [v for v in vectors if len(v)]
        if flat:
            sample = self.compressor.project(np.concatenate(flat)[:: max(1, sum(map(len, flat)) // 20000)])
            self._drift[0] += self.compressor.centroid_cosine(sample) * len(sample)
            self._drift[1] += len(sample)
        codes, residuals = self.compressor.compress(vectors)
        return chunks_table(chunks, codes, residuals, entities=entities)

    def delete(self, ids: Iterable[str]) -> WriteStats:
        """Delete documents (with their chunks) and images by id; unknown ids are ignored."""
        ids = list(dict.fromkeys(ids))
        docs = list(self.store.fetch("documents", ids, ["doc_id"]))
        imgs = list(self.store.fetch("images", ids, ["image_id"]))
        n_chunks = self.store.count("chunks", sql_in("doc_id", docs)) if docs else 0
        self._touch(docs)
        if docs:
            self.store.delete("chunks", "doc_id", docs)
            self.store.delete("documents", "doc_id", docs)
        if imgs:
            self.store.delete("images", "image_id", imgs)
        return WriteStats(documents_deleted=len(docs) + len(imgs), chunks_deleted=n_chunks)

    def optimize(self, *, sample_chunks: int = 20_000, batch: int = 4096) -> dict[str, float]:
        """Re-train the codec on the current chunks and rewrite every chunk's codes.

        Drift is measured as the mean cosine between a token and its nearest centroid: on the
        training sample when the codec was made, and on the current data (before and after).
        """
        from clinrag.errors import ConfigError

        if self.encoder is None or self.store.vector_dim:
            raise ConfigError(f"{self.root} has no compressed multi-vector index: there is nothing to optimize")
        table = self.store.scan("chunks", list(self.store.table("chunks").schema.names))
        texts = table.column("text").to_pylist()
        rng = np.random.default_rng(0)
        pick = sorted(rng.choice(len(texts), min(sample_chunks, len(texts)), replace=False).tolist())
        sample_vecs = self.encoder.encode_documents([texts[i] for i in pick])
        before = None
        if self.compressor is not None and sample_vecs:
            before = self.compressor.centroid_cosine(self.compressor.project(np.concatenate(sample_vecs)))
        cfg = self.config
        comp = TokenCompressor.fit(sample_vecs, dim=cfg.dim, nbits=cfg.nbits, n_centroids=cfg.n_centroids,
                                   expected_tokens=int(np.mean([len(v) for v in sample_vecs] or [0]) * len(texts)))
        name = f"codec-{uuid.uuid4().hex[:12]}"
        comp.save(self.root / name)
        self.compressor, self.codec_dir = comp, name
        self._write_journal()
        ids = table.column("chunk_id").to_pylist()
        self.store.delete("chunks", "chunk_id", ids)
        for start in range(0, len(texts), batch):
            part = table.slice(start, batch)
            codes, residuals = comp.compress(self.encoder.encode_documents(part.column("text").to_pylist()))
            part = part.drop_columns(["n_tokens", "codes", "residuals"])
            part = part.append_column("n_tokens", pa.array([len(c) for c in codes], pa.int32()))
            part = part.append_column("codes", pa.array(codes, pa.list_(pa.int32())))
            part = part.append_column("residuals", pa.array(residuals, pa.large_binary()))
            self.store.append("chunks", part.select(table.schema.names))
        return {"chunks": float(len(texts)), "centroids": float(len(comp.codec.centroids)),
                "centroid_cos_before": float(before) if before is not None else float("nan"),
                "centroid_cos_after": comp.stats["train_centroid_cos"]}

    # -- commit -------------------------------------------------------------------------------------
    def commit(self, build_info: dict[str, Any] | None = None) -> Manifest:
        """Build the derived indexes and publish everything with one atomic manifest write."""
        self.store.compact()
        table = self.store.scan("chunks", ["chunk_id", "text"])
        bm25_name = f"bm25-{uuid.uuid4().hex[:12]}"
        build_bm25(self.root / bm25_name, table.column("chunk_id").to_pylist(),
                   table.column("text").to_pylist(), self.config)
        mv_name = None
        build = dict(build_info or {})
        if self.encoder is not None:
            build["truncated_chunks"] = self._truncated
        if self.compressor is not None:
            mv_name = f"mv-{uuid.uuid4().hex[:12]}"
            mv = self.store.scan_batches("chunks", ["chunk_id", "codes", "residuals"])
            mv_stats = build_multivector(self.root / mv_name, mv, len(self.compressor.codec.centroids))
            build["multivector"] = mv_stats
            if self._drift[1]:
                build["centroid_cos_new"] = round(self._drift[0] / self._drift[1], 4)
            build["centroid_cos_train"] = round(self.compressor.stats.get("train_centroid_cos", 0.0), 4)
        counts = {
            "documents": self.store.count("documents"),
            "chunks": self.store.count("chunks"),
            "images": self.store.count("images"),
            "patients": self.store.count_patients(),
        }
        models = dict(self.manifest.models)
        models["lexical"] = bm25_model_id()
        checksums = dir_checksums(self.root / bm25_name, self.root)
        if self.encoder is not None:
            models["text"] = self.encoder.name
        if self.ner_model_id:
            models["ner"] = self.ner_model_id
            build["ner_seconds"] = round(self._ner_seconds, 3)
        if self.codec_dir:
            checksums.update(dir_checksums(self.root / self.codec_dir, self.root))
        memory_dir = self._memory()
        if memory_dir:
            checksums.update(dir_checksums(self.root / memory_dir, self.root))
        manifest = self.manifest.committed(
            memory_dir=memory_dir,
            tables=self.store.versions(), bm25_dir=bm25_name, counts=counts, models=models, checksums=checksums,
            mv_dir=mv_name or self.manifest.mv_dir, codec_dir=self.codec_dir,
            last_build={"op": self.op, "resumed": self.resumed, **build},
        )
        write_manifest(self.root, manifest)
        (self.root / JOURNAL).unlink(missing_ok=True)
        self.manifest = manifest
        self._cleanup(keep={bm25_name, manifest.mv_dir, manifest.codec_dir, manifest.memory_dir})
        return manifest

    def _cleanup(self, keep: set[str | None]) -> None:
        """Remove derived directories that no commit refers to (old ones, or left by a crash)."""
        for pattern in ("bm25-*", "mv-*", "codec-*", "memory-*"):
            for p in self.root.glob(pattern):
                if p.name not in keep and p.is_dir():
                    shutil.rmtree(p, ignore_errors=True)


def _classify(existing: dict[str, str], rid: str, digest: str, replace: list[str]) -> str:
    """``added``, ``updated`` (queued in ``replace``) or ``unchanged``; records the new digest."""
    old = existing.get(rid)
    if old == digest:
        return "unchanged"
    existing[rid] = digest
    if old is None:
        return "added"
    replace.append(rid)
    return "updated"


__all__ = ["JOURNAL", "IndexLock", "Transaction", "WriteStats"]
