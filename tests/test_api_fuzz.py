"""Schemathesis against the app's own OpenAPI schema: generated requests for every operation, authenticated
with an admin key (so every route is reachable), must never get a 5xx. Bounded: a few examples per operation.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from tests.support.api_client import bearer, new_key
from tests.support.knowledge_base import clone_kb, make_runtime, template_kb
from assistant.api import create_app

EXAMPLES = 8  # per operation and mode; the whole run stays well under a minute
BUDGET_S = 60


@pytest.fixture(scope="module")
def fuzz_app(api_embedder, tmp_path_factory):
    emb = api_embedder
    kb = clone_kb(template_kb(tmp_path_factory.getbasetemp(), emb), tmp_path_factory.mktemp("fuzz-kb"))
    rt = make_runtime(kb, emb, review_sample_rate=0.5)  # reviews exist for the review operations to find
    rt.counselor.warm()
    app = create_app(kb.settings(max_upload_bytes=256 * 1024), runtime=rt)
    admin = new_key(kb.url, "admin", "fuzzer")
    with TestClient(app) as c:  # real ids, so that generated requests also reach existing rows
        sid = c.post("/v1/sessions", json={}, headers=bearer(admin)).json()["id"]
        answers = [c.post(f"/v1/sessions/{sid}/messages", json={"text": text}, headers=bearer(admin)).json()
                   for text in ("간호사는 무슨 일을 해요?", "요즘 너무 힘들어서 죽고 싶어요")]
        review = c.get("/v1/review/queue", headers=bearer(admin)).json()["items"][0]["id"]
        known = {"session_id": sid, "message_id": answers[0]["message_id"], "review_id": review}
        yield app, admin, known
    rt.knowledge.engine.dispose()


def test_no_server_errors_on_generated_requests(fuzz_app) -> None:
    app, admin, known = fuzz_app
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 19
    plans = []  # (operation, generation mode, fixed path parameters)
    for operation in operations:
        plans += [(operation, GenerationMode.POSITIVE, None), (operation, GenerationMode.NEGATIVE, None)]
        names = {p for p in known if "{" + p + "}" in operation.path}
        if names and operation.method.upper() != "DELETE":  # the same operation on rows that exist
            plans.append((operation, GenerationMode.POSITIVE, {n: known[n] for n in names}))
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    start = time.monotonic()
    for operation, mode, path_parameters in plans:
        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(mode, path_parameters=path_parameters))
        def run(case) -> None:
            response = case.call(headers=bearer(admin))
            statuses[response.status_code] += 1
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}")
            try:
                case.validate_response(response, checks=[not_a_server_error], headers=bearer(admin))
            except Exception as exc:
                failures.append(f"{case.method} {case.formatted_path}: {exc}")

        try:
            run()
        except Unsatisfiable:  # nothing to make invalid (an operation without parameters or body)
            assert mode is GenerationMode.NEGATIVE
    elapsed = time.monotonic() - start
    assert not failures, "\n".join(failures[:20])
    assert {200, 201, 404, 422} <= set(statuses), statuses  # valid, created, unknown ids and invalid input were all hit
    print(f"{sum(statuses.values())} requests in {elapsed:.1f} s: {dict(sorted(statuses.items()))}")
    assert elapsed < BUDGET_S * 2, f"fuzzing took {elapsed:.0f} s"
