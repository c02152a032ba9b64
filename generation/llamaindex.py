"""llama-index integration: clinrag retrieval as a llama-index retriever and query engines.

:class:`ClinragRetriever` is a llama-index ``BaseRetriever`` over anything with clinrag's
``search(query, k=..., filters=...)`` (an :class:`~clinrag.engine.Engine`; typed here by the
:class:`Searcher` Protocol so this layer does not import the engine). Nodes are ``TextNode``
with the chunk id as node id and the record's patient, date, source and section in metadata.

- :func:`query_engine` gives llama-index's own ``RetrieverQueryEngine`` over it (any LLM,
  llama-index's response synthesis);
- :class:`GroundedQueryEngine` answers with clinrag's checked, cited answers instead
  (:func:`clinrag.generation.answer.answer`); the response's metadata carries ``citations``,
  ``abstained`` and ``reason``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from clinrag.errors import MissingDependencyError
from clinrag.generation.answer import AnswerConfig, answer
from clinrag.retrieval.base import Hit

try:
    from llama_index.core.base.base_query_engine import BaseQueryEngine
    from llama_index.core.base.base_retriever import BaseRetriever
    from llama_index.core.base.response.schema import Response
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingDependencyError("llama-index-core", "llm", "the llama-index integration") from exc


@runtime_checkable
class Searcher(Protocol):
    """What the retriever needs: clinrag's ``Engine.search`` signature."""

    def search(self, query: str, k: int = 10, filters: Any = None, *, mode: str | None = None,
               unique_docs: bool = False) -> list[Hit]: ...


def hit_to_node(hit: Hit) -> NodeWithScore:
    """A clinrag hit as a llama-index ``NodeWithScore`` (metadata: doc, patient, date, source, section)."""
    meta: dict[str, Any] = {"doc_id": hit.doc_id, "patient_id": hit.patient_id, "source": hit.source,
                            "section": hit.section, "kind": hit.kind, "title": hit.title,
                            "date": hit.timestamp.date().isoformat() if hit.timestamp else None}
    node = TextNode(id_=hit.chunk_id, text=hit.text, metadata=meta,
                    excluded_llm_metadata_keys=["kind", "title"], excluded_embed_metadata_keys=list(meta))
    return NodeWithScore(node=node, score=float(hit.score))


def _scoped_filters(filters: Any, patient: str | None) -> Any:
    if patient is None:
        return filters
    from clinrag.indexing.filters import Filters

    f = Filters.coerce(filters)
    from dataclasses import replace

    return replace(f, patient_id=patient)


class ClinragRetriever(BaseRetriever):
    """A llama-index retriever over a clinrag index (``k`` chunks, optional filters and patient).

    With ``patient``, hits of other patients are dropped even if the searcher returned them.
    """

    def __init__(self, searcher: Searcher, *, k: int = 8, filters: Mapping[str, Any] | Any = None,
                 patient: str | None = None, mode: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.searcher = searcher
        self.k = k
        self.filters = _scoped_filters(filters, patient)
        self.patient = patient
        self.mode = mode

    def hits(self, query: str) -> list[Hit]:
        """The clinrag hits behind :meth:`retrieve` (patient-scoped)."""
        hits = self.searcher.search(query, k=self.k, filters=self.filters, mode=self.mode)
        return [h for h in hits if self.patient is None or h.patient_id == self.patient]

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return [hit_to_node(h) for h in self.hits(query_bundle.query_str)]


def query_engine(searcher: Searcher, *, llm: Any = None, k: int = 8, patient: str | None = None,
                 filters: Any = None, **kwargs: Any) -> Any:
    """llama-index's ``RetrieverQueryEngine`` over a :class:`ClinragRetriever` (``kwargs`` go to ``from_args``)."""
    from llama_index.core.query_engine import RetrieverQueryEngine

    retriever = ClinragRetriever(searcher, k=k, filters=filters, patient=patient)
    return RetrieverQueryEngine.from_args(retriever, llm=llm, **kwargs)


class GroundedQueryEngine(BaseQueryEngine):
    """A llama-index query engine that answers with clinrag's cited, support-checked answers."""

    def __init__(self, searcher: Searcher, *, llm: Any = None, k: int = 8, patient: str | None = None,
                 filters: Any = None, config: AnswerConfig | None = None, encoder: Any = None) -> None:
        super().__init__(callback_manager=None)
        self.retriever = ClinragRetriever(searcher, k=k, filters=filters, patient=patient)
        self.llm = llm
        self.config = config or AnswerConfig()
        self.encoder = encoder

    def _get_prompt_modules(self) -> dict[str, Any]:
        return {}

    def retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return self.retriever.retrieve(query_bundle)

    def _query(self, query_bundle: QueryBundle) -> Response:
        hits = self.retriever.hits(query_bundle.query_str)
        ans = answer(query_bundle.query_str, hits, patient=self.retriever.patient, llm=self.llm,
                     config=self.config, encoder=self.encoder)
        by_chunk = {h.chunk_id: h for h in hits}
        nodes = [hit_to_node(by_chunk[e.chunk_id]) for e in ans.evidence]
        return Response(response=ans.text, source_nodes=nodes,
                        metadata={"citations": ans.citations, "abstained": ans.abstained, "reason": ans.reason,
                                  "evidence_ids": {e.n: e.chunk_id for e in ans.evidence}})

    async def _aquery(self, query_bundle: QueryBundle) -> Response:
        return self._query(query_bundle)


__all__ = ["ClinragRetriever", "GroundedQueryEngine", "Searcher", "hit_to_node", "query_engine"]


