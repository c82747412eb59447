"""`JinroRetriever`: our hybrid retriever as a LangChain `BaseRetriever`, so chains and agents can use it.

    from assistant.retrieval.langchain import JinroRetriever
    docs = JinroRetriever(retriever=hybrid, k=5).invoke("간호사가 되려면?")

Each hit becomes a `Document(page_content=<chunk text>, metadata={external_id, title, as_of, score, chunk_id,
from_facts})`. The async path (`ainvoke`, `abatch`) is LangChain's default: the sync search in an executor.
Bad input (an empty query) raises our `RetrievalError` through `invoke`, as LangChain passes errors on.
"""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import Field, field_validator

from assistant.retrieval.hybrid import MODES, Hit, HybridRetriever


def hit_to_document(hit: Hit) -> Document:
    return Document(
        page_content=hit.text,
        metadata={
            "external_id": hit.external_id,
            "title": hit.title,
            "as_of": hit.as_of,
            "score": hit.score,
            "chunk_id": hit.chunk_id,
            "from_facts": hit.from_facts,
        },
        id=f"{hit.external_id}#{hit.chunk_id}",
    )


class JinroRetriever(BaseRetriever):
    """LangChain view of a `HybridRetriever`: top `k` passages (one per document) in `mode`."""

    retriever: HybridRetriever
    k: int = Field(default=5, ge=1)
    mode: str = "hybrid+facts"
    context: str = ""
    """Recent conversation text used to recognise occupations (only `hybrid+facts` uses it)."""

    @field_validator("mode")
    @classmethod
    def _known_mode(cls, value: str) -> str:
        if value not in MODES:
            raise ValueError(f"unknown retrieval mode {value!r}: use one of {', '.join(MODES)}")
        return value

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun,
                                **kwargs: Any) -> list[Document]:
        result = self.retriever.search(query, k=kwargs.get("k", self.k), mode=kwargs.get("mode", self.mode),
                                       context=kwargs.get("context", self.context))
        return [hit_to_document(h) for h in result.hits]
