"""No personal data survives anywhere (issue 16): hypothesis generates phone numbers, 주민등록번호, e-mails, card and
account numbers and addresses in many spacings inside Korean sentences (tests/support/pii.py).

1. `redact` removes every one of them (many examples, no I/O).
2. They go in through every door a user has — the session-creation profile, a profile PATCH, turns (from which the
   profile is extracted), feedback comments, a reviewer's edit and note, an uploaded document's title and text — and
   afterwards every table of the database (every text and JSON column of every row) and every export and listing
   is searched for them, over a real FastAPI app and SQLite.
"""

from __future__ import annotations

import json
import re

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import LargeBinary, select

from assistant.api import create_app
from db.base import Base
from ingest.redaction import redact
from tests.support.api_client import bearer, new_key
from tests.support.knowledge_base import KB, clone_kb, make_runtime, template_kb
from tests.support.pii import Pii, sentence_with_pii

NUMBER_KINDS = ("phone", "rrn", "card", "account")


def survives(pii: Pii, stored: str) -> bool:
    """Whether `pii` is in `stored`: a number as the same digits with any separators between them (and no digit
    right before or after), other kinds as typed."""
    if pii.kind not in NUMBER_KINDS:
        return pii.text in stored
    joined = re.sub(r"(?<=\d)[\s.\-()+]{1,3}(?=\d)", "", stored)
    return re.search(rf"(?<!\d){pii.needle}(?!\d)", joined) is not None


@settings(max_examples=1500, deadline=None)
@given(sentence_with_pii())
def test_redact_removes_every_generated_kind_and_spacing(case: tuple[str, Pii]) -> None:
    text, pii = case
    out = redact(text)
    assert not survives(pii, out), (pii.kind, text, out)


# ------------------------------------------------------------------------------------------ through the API

@pytest.fixture(scope="module")
def kb(api_embedder, tmp_path_factory) -> KB:
    return clone_kb(template_kb(tmp_path_factory.getbasetemp(), api_embedder), tmp_path_factory.mktemp("pii-kb"))


@pytest.fixture(scope="module")
def client(kb, api_embedder):
    runtime = make_runtime(kb, api_embedder)
    runtime.counselor.warm()
    with TestClient(create_app(kb.settings(), runtime=runtime)) as c:
        yield c
    runtime.knowledge.engine.dispose()


@pytest.fixture(scope="module")
def H(kb) -> dict[str, dict[str, str]]:
    return {role: bearer(new_key(kb.url, role, f"pii {role}")) for role in ("client", "reviewer", "admin")}


def everything_stored(kb: KB) -> list[str]:
    """Every text and JSON value of every row of every table."""
    from db.engine import create_db_engine

    engine = create_db_engine(kb.url)
    out: list[str] = []
    try:
        with engine.connect() as conn:
            for table in Base.metadata.sorted_tables:
                cols = [c for c in table.columns if not isinstance(c.type, LargeBinary)]
                for row in conn.execute(select(*cols)):
                    out.extend(v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
                               for v in row if isinstance(v, (str, dict, list)))
    finally:
        engine.dispose()
    return out


def everything_exported(client: TestClient, H: dict, sid: str) -> list[str]:
    admin, reviewer, student = H["admin"], H["reviewer"], H["client"]
    urls = [(f"/v1/sessions/{sid}", student), (f"/v1/sessions/{sid}/messages", student), ("/v1/sessions", student),
            ("/v1/review/queue?limit=200", reviewer), ("/v1/review/export/sft", reviewer),
            ("/v1/review/export/preferences", reviewer), ("/v1/knowledge/documents?kind=doc&limit=200", admin),
            ("/v1/knowledge/flagged", reviewer)]
    texts = []
    for url, headers in urls:
        r = client.get(url, headers=headers)
        assert r.status_code == 200, (url, r.text)
        texts.append(r.text)
    for status in ("pending", "edited"):
        for item in client.get(f"/v1/review/queue?limit=200&status={status}", headers=reviewer).json()["items"]:
            texts.append(client.get(f"/v1/review/{item['id']}", headers=reviewer).text)
    return texts


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(sentence_with_pii(), min_size=8, max_size=8))
def test_generated_personal_data_survives_in_no_table_and_no_export(client: TestClient, kb: KB, H: dict,
                                                                   cases: list[tuple[str, Pii]]) -> None:
    texts = [t for t, _ in cases]
    student, reviewer = H["client"], H["reviewer"]
    r = client.post("/v1/sessions", json={"profile": {"interests": [texts[0][:60]], "school": texts[1][:60]}},
                    headers=student)
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    assert client.patch(f"/v1/sessions/{sid}/profile", json={"strengths": [texts[2][:60]]},
                        headers=student).status_code == 200
    for text in (texts[3], f"저는 {texts[4]} 좋아해요"):
        r = client.post(f"/v1/sessions/{sid}/messages", json={"text": text}, headers=student)
        assert r.status_code == 200, r.text
    message_id = r.json()["message_id"]
    r = client.post(f"/v1/messages/{message_id}/feedback", json={"rating": "down", "comment": texts[5]}, headers=student)
    assert r.status_code == 201, r.text
    queue = client.get("/v1/review/queue?limit=200", headers=reviewer).json()["items"]
    review = next(i for i in queue if i["message_id"] == message_id)
    r = client.post(f"/v1/review/{review['id']}/edit", json={"text": f"고친 답: {texts[6]}", "note": texts[7]},
                    headers=reviewer)
    assert r.status_code == 200, r.text
    doc = f"# 안내 {cases[0][1].text}\n\n진로 박람회 안내입니다. 문의는 {cases[5][1].text} 또는 {cases[6][1].text}로 해 주세요."
    r = client.post("/v1/knowledge/documents", files=[("files", (f"안내-{sid[:8]}.md", doc.encode(), "text/markdown"))],
                    headers=H["admin"])
    assert r.status_code == 200, r.text

    stored, exported = everything_stored(kb), everything_exported(client, H, sid)
    for _, pii in cases:
        assert not any(survives(pii, s) for s in stored), (pii, [s for s in stored if survives(pii, s)][:2])
        assert not any(survives(pii, s) for s in exported), (pii, [s[:300] for s in exported if survives(pii, s)][:2])
