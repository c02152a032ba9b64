"""LanceDB tables of an index: documents, chunks and images, pinned to committed versions.

Readers check out the table versions named in the manifest, so writes in
progress (new LanceDB versions not yet named by a manifest) are never seen.

>>> import tempfile
>>> store = LanceStore.create(tempfile.mkdtemp())
>>> store.versions()
{'documents': 1, 'chunks': 1, 'images': 1}
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import lancedb
import numpy as np
import pyarrow as pa

from clinrag.data.schema import Chunk, Document, ImageRecord
from clinrag.indexing.filters import meta_key_values

log = logging.getLogger(__name__)

TS = pa.timestamp("us")
_COMMON = [
    ("source", pa.string()), ("kind", pa.string()), ("patient_id", pa.string()),
    ("encounter_id", pa.string()), ("timestamp", TS), ("meta_json", pa.string()),
    ("meta_kv", pa.list_(pa.string())),
]
SCHEMAS: dict[str, pa.Schema] = {
    "documents": pa.schema([("doc_id", pa.string()), ("title", pa.string()), ("text", pa.string()),
                            ("content_hash", pa.string()), ("n_chunks", pa.int32()), *_COMMON]),
    "chunks": pa.schema([("chunk_id", pa.string()), ("doc_id", pa.string()), ("position", pa.int32()),
                         ("span_start", pa.int32()), ("span_end", pa.int32()), ("section", pa.string()),
                         ("title", pa.string()), ("text", pa.string()), *_COMMON,
                         ("n_tokens", pa.int32()), ("codes", pa.list_(pa.int32())),
                         ("residuals", pa.large_binary())]),
    "images": pa.schema([("image_id", pa.string()), ("path", pa.string()), ("modality", pa.string()),
                         ("caption", pa.string()), ("content_hash", pa.string()), *_COMMON]),
}
TABLES = tuple(SCHEMAS)
VECTORS = "vectors"  # uncompressed token vectors, only with the LanceDB multivector backend
# entities of each chunk (indexes built with NER only): the full records as a JSON list, and the
# filter keys of :func:`clinrag.ner.schema.entity_keys` (``k:term``, ``l:label``, ``+`` = not negated)
ENTITIES_JSON, ENTITY_KEYS = "entities_json", "entity_keys"
ENTITY_FIELDS = (pa.field(ENTITIES_JSON, pa.string()), pa.field(ENTITY_KEYS, pa.list_(pa.string())))


def chunks_schema(vector_dim: int | None = None, entities: bool = False) -> pa.Schema:
    """The chunks table's schema; with ``vector_dim``, plus LanceDB's multivector column;
    with ``entities`` (index built with NER), plus the entity columns."""
    schema = SCHEMAS["chunks"]
    if vector_dim:
        schema = schema.append(pa.field(VECTORS, pa.list_(pa.list_(pa.float16(), vector_dim))))
    if entities:
        for f in ENTITY_FIELDS:
            schema = schema.append(f)
    return schema
KEYS = {"documents": "doc_id", "chunks": "chunk_id", "images": "image_id"}
IMAGE_VECTOR = "embedding"  # image embeddings (float32, L2-normalised), only with an image model


def images_schema(image_dim: int | None = None) -> pa.Schema:
    """The images table's schema; with ``image_dim``, plus the image-embedding column."""
    schema = SCHEMAS["images"]
    if image_dim:
        schema = schema.append(pa.field(IMAGE_VECTOR, pa.list_(pa.float32(), image_dim)))
    return schema


def _meta(metadata: Mapping[str, Any], extra: Mapping[str, Any] | None = None) -> tuple[str, list[str]]:
    meta = dict(metadata)
    kv = meta_key_values(meta)
    if extra:
        kv += meta_key_values(extra)
    return json.dumps(meta, default=str, ensure_ascii=False), kv


def documents_table(docs: Sequence[Document], n_chunks: Sequence[int]) -> pa.Table:
    metas = [_meta(d.metadata) for d in docs]
    return pa.table({
        "doc_id": [d.id for d in docs], "title": [d.title for d in docs], "text": [d.text for d in docs],
        "content_hash": [d.content_hash for d in docs], "n_chunks": list(n_chunks),
        "source": [d.source for d in docs], "kind": [d.kind for d in docs],
        "patient_id": [d.patient_id for d in docs], "encounter_id": [d.encounter_id for d in docs],
        "timestamp": pa.array([d.timestamp for d in docs], TS),
        "meta_json": [m[0] for m in metas], "meta_kv": [m[1] for m in metas],
    }, schema=SCHEMAS["documents"])


def chunks_table(chunks: Sequence[Chunk], codes: Sequence[np.ndarray] | None = None,
                 residuals: Sequence[bytes] | None = None, vectors: Sequence[np.ndarray] | None = None,
                 vector_dim: int | None = None, entities: Sequence[Sequence[Any]] | None = None) -> pa.Table:
    """Rows of the chunks table; ``codes``/``residuals`` are the compressed token vectors, if any,
    ``vectors`` the uncompressed ones (LanceDB multivector backend, ``vector_dim`` set),
    ``entities`` each chunk's :class:`clinrag.ner.schema.Entity` list (indexes built with NER)."""
    metas = [_meta(c.metadata) for c in chunks]
    if codes is None:
        n_tok = pa.nulls(len(chunks), pa.int32())
        code_col = pa.nulls(len(chunks), pa.list_(pa.int32()))
        res_col = pa.nulls(len(chunks), pa.large_binary())
    else:
        n_tok = pa.array([len(c) for c in codes], pa.int32())
        code_col = pa.array([np.asarray(c, dtype=np.int32) for c in codes], pa.list_(pa.int32()))
        res_col = pa.array(list(residuals or []), pa.large_binary())
    columns = {
        "chunk_id": [c.id for c in chunks], "doc_id": [c.doc_id for c in chunks],
        "position": [c.position for c in chunks], "span_start": [c.span[0] for c in chunks],
        "span_end": [c.span[1] for c in chunks], "section": [c.section for c in chunks],
        "title": [c.title for c in chunks], "text": [c.text for c in chunks],
        "source": [c.source for c in chunks], "kind": [c.kind for c in chunks],
        "patient_id": [c.patient_id for c in chunks], "encounter_id": [c.encounter_id for c in chunks],
        "timestamp": pa.array([c.timestamp for c in chunks], TS),
        "meta_json": [m[0] for m in metas], "meta_kv": [m[1] for m in metas],
        "n_tokens": n_tok, "codes": code_col, "residuals": res_col,
    }
    if vector_dim:
        from clinrag.retrieval.lance_mv import multivector_array

        columns[VECTORS] = (multivector_array(vectors, vector_dim) if vectors is not None
                            else pa.nulls(len(chunks), pa.list_(pa.list_(pa.float16(), vector_dim))))
    if entities is not None:
        from clinrag.ner.schema import entity_keys

        columns[ENTITIES_JSON] = [json.dumps([e.to_dict() for e in ents], ensure_ascii=False) for ents in entities]
        columns[ENTITY_KEYS] = [entity_keys(ents) for ents in entities]
    return pa.table(columns, schema=chunks_schema(vector_dim, entities is not None))


def images_table(images: Sequence[ImageRecord], embeddings: np.ndarray | None = None,
                 image_dim: int | None = None) -> pa.Table:
    """Rows of the images table; with ``image_dim``, ``embeddings`` (one row per image) fill its vector column."""
    metas = [_meta(r.metadata, {"modality": r.modality}) for r in images]
    columns = {
        "image_id": [r.id for r in images], "path": [r.path for r in images],
        "modality": [r.modality for r in images], "caption": [r.caption for r in images],
        "content_hash": [image_hash(r) for r in images],
        "source": [r.source for r in images], "kind": ["image"] * len(images),
        "patient_id": [r.patient_id for r in images], "encounter_id": [r.encounter_id for r in images],
        "timestamp": pa.array([r.timestamp for r in images], TS),
        "meta_json": [m[0] for m in metas], "meta_kv": [m[1] for m in metas],
    }
    if image_dim:
        flat = np.asarray(embeddings if embeddings is not None else np.zeros((0, image_dim)), np.float32)
        columns[IMAGE_VECTOR] = pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), image_dim)
    return pa.table(columns, schema=images_schema(image_dim))


def image_hash(r: ImageRecord) -> str:
    """A hash of everything stored for an image; a changed record replaces the old one."""
    return hashlib.sha1(json.dumps([r.id, r.path, r.modality, r.caption, r.source, r.patient_id,
                                    r.encounter_id, str(r.timestamp), dict(r.metadata)],
                                   default=str, sort_keys=True).encode()).hexdigest()


def sql_in(column: str, values: Iterable[str]) -> str:
    quoted = ", ".join("'" + str(v).replace("'", "''") + "'" for v in values)
    return f"{column} IN ({quoted})"


class LanceStore:
    """The three LanceDB tables of an index directory, each pinned to a version."""

    def __init__(self, root: str | Path, versions: Mapping[str, int] | None = None) -> None:
        self.root = Path(root)
        self._db = lancedb.connect(str(self.root / "lance"))
        self._tables = {name: self._db.open_table(name) for name in TABLES}
        if versions is not None:
            for name, version in versions.items():
                self._tables[name].checkout(int(version))

    @classmethod
    def create(cls, root: str | Path, vector_dim: int | None = None, image_dim: int | None = None,
               entities: bool = False) -> LanceStore:
        """Create empty tables under ``root/lance`` (each at version 1); ``entities`` adds the
        chunks table's entity columns (indexes built with NER)."""
        db = lancedb.connect(str(Path(root) / "lance"))
        for name, schema in SCHEMAS.items():
            db.create_table(name, schema=chunks_schema(vector_dim, entities) if name == "chunks" else
                            images_schema(image_dim) if name == "images" else schema)
        return cls(root)

    @property
    def has_entities(self) -> bool:
        """Whether the chunks table stores entities (the index was built with NER)."""
        return ENTITY_KEYS in self._tables["chunks"].schema.names

    @property
    def image_dim(self) -> int | None:
        """Dimension of the image-embedding column of the images table, if it has one."""
        schema = self._tables["images"].schema
        if IMAGE_VECTOR not in schema.names:
            return None
        return int(schema.field(IMAGE_VECTOR).type.list_size)

    @property
    def vector_dim(self) -> int | None:
        """Dimension of the multivector column of the chunks table, if it has one."""
        schema = self._tables["chunks"].schema
        if VECTORS not in schema.names:
            return None
        return int(schema.field(VECTORS).type.value_type.list_size)

    def table(self, name: str) -> Any:
        return self._tables[name]

    def versions(self) -> dict[str, int]:
        return {name: int(t.version) for name, t in self._tables.items()}

    # -- reading ------------------------------------------------------------------------------------
    def scan(self, name: str, columns: Sequence[str], where: str | None = None) -> pa.Table:
        """All rows of ``name`` matching ``where`` (SQL), with ``columns`` only."""
        q = self._tables[name].search()
        if where:
            q = q.where(where)
        return q.select(list(columns)).limit(None).to_arrow()

    def scan_batches(self, name: str, columns: Sequence[str], batch_size: int = 8192) -> Iterator[pa.RecordBatch]:
        """All rows of ``name`` with ``columns`` only, streamed as record batches of up to ``batch_size``."""
        reader = self._tables[name].search().select(list(columns)).limit(None).to_batches(batch_size)
        yield from reader

    def fetch(self, name: str, ids: Sequence[str], columns: Sequence[str] | None = None) -> dict[str, dict]:
        """Rows of ``name`` by primary key, as ``{id: row}``; missing ids are absent."""
        out: dict[str, dict] = {}
        key = KEYS[name]
        cols = list(columns) if columns else list(SCHEMAS[name].names)
        if key not in cols:
            cols.append(key)
        ids = list(dict.fromkeys(ids))
        for start in range(0, len(ids), 500):
            rows = self.scan(name, cols, sql_in(key, ids[start:start + 500])).to_pylist()
            out.update({r[key]: r for r in rows})
        return out

    def count(self, name: str, where: str | None = None) -> int:
        return int(self._tables[name].count_rows(where) if where else self._tables[name].count_rows())

    def count_patients(self) -> int:
        ids: set[str] = set()
        for name in ("documents", "images"):
            col = self.scan(name, ["patient_id"], "patient_id IS NOT NULL").column("patient_id")
            ids.update(col.unique().to_pylist())
        return len(ids)

    # -- writing (only inside a transaction; see indexing.writer) ------------------------------------
    def checkout_latest(self) -> None:
        for t in self._tables.values():
            t.checkout_latest()

    def rollback_to(self, versions: Mapping[str, int]) -> None:
        """Make the committed ``versions`` the latest again, discarding uncommitted writes."""
        for name, version in versions.items():
            t = self._db.open_table(name)
            if int(t.version) != int(version):
                log.info("rolling %s back from version %s to %s", name, t.version, version)
                t.checkout(int(version))
                t.restore()
            self._tables[name] = self._db.open_table(name)

    def append(self, name: str, table: pa.Table) -> None:
        if table.num_rows:
            self._tables[name].add(table)

    def delete(self, name: str, column: str, ids: Sequence[str]) -> None:
        ids = list(ids)
        for start in range(0, len(ids), 500):
            self._tables[name].delete(sql_in(column, ids[start:start + 500]))

    def compact(self, min_fragments: int = 16) -> None:
        """Merge the small fragments that batch-by-batch writes leave (creates new versions)."""
        for t in self._tables.values():
            try:
                stats: Any = t.stats()
                if int(stats["fragment_stats"]["num_fragments"]) < min_fragments:
                    continue
                t.optimize()
            except Exception as exc:  # pragma: no cover - compaction is an optimisation only
                log.info("compaction of %s skipped: %s", t.name, exc)


__all__ = ["ENTITIES_JSON", "ENTITY_KEYS", "IMAGE_VECTOR", "KEYS", "SCHEMAS", "TABLES", "LanceStore",
           "chunks_table", "documents_table", "images_schema", "images_table"]
