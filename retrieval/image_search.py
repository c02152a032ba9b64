"""The steps of :class:`clinrag.Engine`'s image searches, on the pieces of an open index.

Checking an index's image model, encoding a text or image query, the images a filter admits,
image -> text note hits, and fusing text hits with image hits (``Engine.search_multimodal``).
The engine holds the state (store, cached encoder and FAISS index); these functions take it.

>>> image_query(lambda: None, None, None, vector=[0.6, 0.8])
[0.6, 0.8]
>>> image_query(lambda: None, "pneumonia", "cxr.png")
Traceback (most recent call last):
...
clinrag.errors.ConfigError: give one of a text query, an image (path) or a query vector
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clinrag.errors import ConfigError, IndexMismatchError
from clinrag.indexing.filters import Filters
from clinrag.retrieval.base import Hit, Scored
from clinrag.retrieval.rows import HIT_COLUMNS, hit_from_row

if TYPE_CHECKING:
    import os

    from clinrag.indexing.image_encoders import ImageEncoder
    from clinrag.indexing.store import LanceStore

FilterLike = Filters | Mapping[str, Any] | None


def no_image_model_error(root: Path, n_images: int) -> ConfigError:
    """The error for an image-similarity search on an index built without an image model."""
    return ConfigError(
        f"{root} was built without an image model, so it cannot search by image similarity "
        f"(its {n_images} images are indexed by metadata and linked notes: "
        "search those with a text query, e.g. --kind image-note). To search images, rebuild the index "
        "with an image model: `clinrag index SOURCES --index DIR --overwrite --image-model "
        "hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224` (or ARCH@CHECKPOINT, a saved "
        "open_clip or transformers CLIP folder)")


def check_image_encoder(root: Path, name: str, built: str | None, store_dim: int | None,
                        encoder: ImageEncoder) -> None:
    """Raise IndexMismatchError unless ``encoder`` (loaded for ``name``) is the model the index was built with."""
    if built is not None and encoder.name != built:
        raise IndexMismatchError(f"{root} was built with the image model {built!r}, not "
                                 f"{encoder.name!r}; rebuild the index with --overwrite")
    if store_dim != encoder.dim:
        raise IndexMismatchError(f"{root} stores {store_dim}-d image embeddings but {name!r} "
                                 f"gives {encoder.dim}-d ones; rebuild the index with --overwrite")


def image_query(encoder: Callable[[], ImageEncoder], query: str | None, image: str | os.PathLike[str] | None,
                vector: Any = None) -> Any:
    """The query embedding: of a text ``query``, of an ``image`` file, or ``vector`` itself (exactly one)."""
    if vector is not None and query is None and image is None:
        return vector
    if (query is None) == (image is None) or vector is not None:
        raise ConfigError("give one of a text query, an image (path) or a query vector")
    if image is not None:
        from clinrag.data.images import load_image

        return encoder().encode_images([load_image(Path(image))])
    return encoder().encode_texts([str(query)])


def allowed_images(store: LanceStore, filters: FilterLike) -> frozenset[str] | None:
    """The image ids a filter admits (None: no restriction), resolved by LanceDB."""
    sql = Filters.coerce(filters).to_sql(table="images")
    return None if sql is None else frozenset(
        store.scan("images", ["image_id"], sql).column("image_id").to_pylist())


def note_hits(store: LanceStore, ranked_images: Sequence[Scored], k: int,
              allowed_chunks: frozenset[str] | None) -> list[Hit]:
    """Image -> text: hits for the chunks of the notes linked to ``ranked_images``, each scored by its
    image, with ``metadata['via_image']`` naming that image."""
    from clinrag.retrieval.images import note_ranking

    scored, via = note_ranking(store, ranked_images, k, allowed_chunks)
    rows = store.fetch("chunks", [s.chunk_id for s in scored], HIT_COLUMNS)
    hits = [hit_from_row(rows[s.chunk_id], s, rank, "image") for rank, s in enumerate(scored, 1)
            if s.chunk_id in rows]
    return [replace(h, metadata={**h.metadata, "via_image": via[h.chunk_id]}) for h in hits]


def fuse_text_and_images(store: LanceStore, text_hits: Sequence[Hit], img_ranked: Sequence[Scored], *,
                         k: int, method: str = "rrf", image_weight: float = 0.5) -> list[Hit]:
    """One ranked list of ``text_hits`` and the image hits of ``img_ranked``, fused by ``method``
    (``retrieval.fusion``); each hit's ``stage_scores`` keep its unfused scores plus ``fused``."""
    from clinrag.retrieval.fusion import fuse
    from clinrag.retrieval.images import image_hits

    text_ranked = [Scored(h.chunk_id, h.score) for h in text_hits]
    fused = fuse([text_ranked, list(img_ranked)], method=method, weights=[1 - image_weight, image_weight], k=k)
    by_id: dict[str, Hit] = {h.chunk_id: h for h in text_hits}
    by_id.update({h.chunk_id: h for h in image_hits(store, [s for s in img_ranked
                                                            if s.chunk_id in {f.chunk_id for f in fused}])})
    out: list[Hit] = []
    for rank, f in enumerate((f for f in fused if f.chunk_id in by_id), 1):
        h = by_id[f.chunk_id]
        stages = dict(h.stage_scores)
        stages["fused"] = f.score
        out.append(replace(h, score=f.score, rank=rank, stage_scores=stages))
    return out


__all__ = ["allowed_images", "check_image_encoder", "fuse_text_and_images", "image_query", "no_image_model_error",
           "note_hits"]
