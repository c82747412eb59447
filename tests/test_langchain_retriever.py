"""JinroRetriever through LangChain's own Runnable interface: invoke, batch, ainvoke, chains, errors."""

from __future__ import annotations

import asyncio

import pytest
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableLambda
from pydantic import ValidationError

from assistant.errors import RetrievalError
from assistant.retrieval.langchain import JinroRetriever
from assistant.retrieval.hybrid import HybridRetriever
from tests.support.dictionary import code_of
from tests.support.knowledge_base import KB, module_kb

METADATA_KEYS = {"external_id", "title", "as_of", "score", "chunk_id"}


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory, embedder) -> KB:
    kb = module_kb(tmp_path_factory, embedder, "langchain-kb")
    yield kb
    kb.close()


@pytest.fixture(scope="module")
def hybrid(kb: KB, embedder) -> HybridRetriever:
    r = kb.retriever(embedder)
    r.warm()
    return r


def test_invoke_returns_documents_with_metadata(hybrid: HybridRetriever) -> None:
    lc = JinroRetriever(retriever=hybrid, k=4)
    assert isinstance(lc, BaseRetriever)
    docs = lc.invoke("간호사가 되려면 대학 꼭 나와야 하나요?")
    assert 1 <= len(docs) <= 4
    assert all(isinstance(d, Document) for d in docs)
    for d in docs:
        assert METADATA_KEYS <= set(d.metadata)
        assert d.page_content
        assert d.metadata["external_id"].startswith("job:")
        assert isinstance(d.metadata["chunk_id"], int)
        assert isinstance(d.metadata["score"], float)
    assert docs[0].metadata["external_id"] == f"job:{code_of('간호사')}"
    assert docs[0].metadata["title"] == "간호사"
    assert docs[0].metadata["from_facts"] is True


def test_documents_match_the_wrapped_retriever(hybrid: HybridRetriever) -> None:
    query = "웹사이트 화면을 디자인하는 일"
    for mode in ("dense", "bm25", "hybrid"):
        docs = JinroRetriever(retriever=hybrid, k=5, mode=mode).invoke(query)
        hits = hybrid.search(query, k=5, mode=mode).hits
        assert [(d.metadata["external_id"], d.metadata["chunk_id"], d.page_content) for d in docs] == \
               [(h.external_id, h.chunk_id, h.text) for h in hits]


def test_batch_and_async(hybrid: HybridRetriever) -> None:
    lc = JinroRetriever(retriever=hybrid, k=3, mode="hybrid+facts")
    queries = ["수의사가 되려면?", "웹 디자이너는 무슨 일을 해?", "간호사 자격증", "데이터 분석하는 직업"]
    batched = lc.batch(queries)
    assert len(batched) == len(queries)
    assert all(1 <= len(docs) <= 3 for docs in batched)
    assert batched[0][0].metadata["title"] == "수의사(일반)"
    assert batched[1][0].metadata["title"] == "웹디자이너"
    sequential = [lc.invoke(q) for q in queries]
    assert [[d.metadata["chunk_id"] for d in docs] for docs in batched] == \
           [[d.metadata["chunk_id"] for d in docs] for docs in sequential]

    async def run() -> tuple[list[Document], list[list[Document]]]:
        return await lc.ainvoke(queries[0]), await lc.abatch(queries[:2])

    one, two = asyncio.run(run())
    assert [d.metadata["chunk_id"] for d in one] == [d.metadata["chunk_id"] for d in sequential[0]]
    assert len(two) == 2


def test_in_a_chain(hybrid: HybridRetriever) -> None:
    chain = JinroRetriever(retriever=hybrid, k=2) | RunnableLambda(lambda docs: [d.metadata["title"] for d in docs])
    assert chain.invoke("간호사가 되려면?")[0] == "간호사"


def test_bad_input_and_configuration(hybrid: HybridRetriever) -> None:
    lc = JinroRetriever(retriever=hybrid)
    with pytest.raises(RetrievalError):
        lc.invoke("   ")
    assert lc.invoke("?!?!") == []  # no words: no documents, no error
    with pytest.raises(ValidationError):
        JinroRetriever(retriever=hybrid, mode="semantic")
    with pytest.raises(ValidationError):
        JinroRetriever(retriever=hybrid, k=0)
    with pytest.raises(ValidationError):
        JinroRetriever(retriever="not a retriever")
