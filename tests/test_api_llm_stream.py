"""An LLM turn streamed over real HTTP (`jinro serve` with `JINRO_GENERATOR=openai:` against the local protocol
server): the fact guard shows the answer sentence by sentence, and a client that cuts the stream after the first
piece still gets its turn stored exactly once, whole."""

from __future__ import annotations

import time

import httpx
import pytest
from sqlalchemy import select

from db.conversation import Message
from db.engine import create_db_engine, session_factory
from tests.support.api_client import bearer, new_key, parse_sse
from tests.support.knowledge_base import clone_kb, template_kb
from tests.support.openai_stub import OpenAIStub, Stream
from tests.support.processes import Server

pytestmark = pytest.mark.slow
ANSWER = "좋은 질문이에요, 함께 알아봐요. 위의 자료를 먼저 살펴보면 도움이 될 거예요. 더 궁금한 점이 있으면 물어봐 주세요."


def test_a_client_that_cuts_an_llm_stream_still_gets_the_turn_stored_once(api_embedder, tmp_path_factory) -> None:
    base = tmp_path_factory.mktemp("llm-stream")
    kb = clone_kb(template_kb(tmp_path_factory.getbasetemp(), api_embedder), base / "kb")
    words = ANSWER.split(" ")
    chunks = [w + " " for w in words[:-1]] + [words[-1]]
    with OpenAIStub(default=Stream(chunks, chunk_delay=0.08)) as stub:
        server = Server(kb, base / "logs", env_extra={"JINRO_GENERATOR": f"openai:{stub.url}"}).start()
        try:
            server.wait_ready()
            headers = bearer(new_key(kb.url, "client"))
            sid = httpx.post(server.url + "/v1/sessions", json={}, headers=headers).json()["id"]
            url, sse = f"{server.url}/v1/sessions/{sid}/messages", {**headers, "Accept": "text/event-stream"}
            with httpx.stream("POST", url, json={"text": "간호사는 무슨 일을 해요?"}, headers=sse, timeout=30) as r:
                arrivals = [(time.perf_counter(), e) for e in parse_sse(r.iter_lines())]
            tokens = [(t, e) for t, e in arrivals if e.event == "token"]
            assert tokens[0][1].json()["text"].strip() == "좋은 질문이에요, 함께 알아봐요."
            # shown while the model was still writing the rest (13 more words, 80 ms apart)
            assert arrivals[-1][0] - tokens[0][0] > 0.5 and arrivals[-1][1].event == "final"
            with httpx.stream("POST", url, json={"text": "그 직업은 자격증이 필요해?"}, headers=sse, timeout=30) as r:
                assert r.status_code == 200
                next(e for e in parse_sse(r.iter_lines()) if e.event == "token")
            # the client has gone after the first sentence
            engine = create_db_engine(kb.url)
            try:
                rows: list[Message] = []
                for _ in range(100):  # the turn runs to its end after the client left, then is stored
                    with session_factory(engine)() as s:
                        rows = list(s.scalars(select(Message).where(Message.session_id == sid).order_by(Message.seq)))
                    if len(rows) == 4:
                        break
                    time.sleep(0.1)
                time.sleep(0.5)
                with session_factory(engine)() as s:
                    again = s.scalars(select(Message).where(Message.session_id == sid)).all()
            finally:
                engine.dispose()
            assert [m.role for m in rows] == ["student", "counselor"] * 2 and len(again) == 4
            assert rows[3].text == ANSWER and rows[3].fact_guard == "passed"  # stored whole, once
            assert len(stub.posts()) == 2  # the model was asked once a turn
        finally:
            server.stop()
