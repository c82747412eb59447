"""Prometheus metrics of the API: requests by route and status, latency histograms, turns, crisis flags and
fact-guard replacements, retrieval snapshot builds.

Each app has its own registry (several apps may live in one test process). With `--workers N`, `jinro serve`
sets PROMETHEUS_MULTIPROC_DIR so every worker writes its samples there and /metrics adds them up.
"""

from __future__ import annotations

import os
import time
from abc import ABC, abstractmethod

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        r = self.registry
        self.requests = Counter("jinro_http_requests", "HTTP requests by method, route template and status.",
                                ["method", "route", "status"], registry=r)
        self.latency = Histogram("jinro_http_request_duration_seconds", "Time to the end of the response body.",
                                 ["method", "route"], buckets=LATENCY_BUCKETS, registry=r)
        self.turns = Counter("jinro_turns", "Counselor turns stored, by API surface.", ["surface"], registry=r)
        self.turn_latency = Histogram("jinro_turn_duration_seconds", "Counselor turn time, safety to storage.",
                                      ["surface"], buckets=LATENCY_BUCKETS, registry=r)
        self.crisis = Counter("jinro_crisis_turns", "Turns flagged as a crisis (answered with the safety script).",
                              registry=r)
        self.fact_guard = Counter("jinro_fact_guard_replacements",
                                  "LLM answers replaced by the grounded answer because they failed the fact guard.",
                                  registry=r)
        self.rate_limited = Counter("jinro_rate_limited", "Requests refused by the per-key rate limit.", registry=r)
        self.feedback = Counter("jinro_feedback", "Feedback on answers, by rating.", ["rating"], registry=r)

    def watch_snapshots(self, corpus) -> None:
        """Expose the retriever's snapshot builds (`assistant.retrieval.corpus.Corpus`): how many, and the last one's
        seconds, read at scrape time (this process's only: not added up across `--workers`)."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        class _Snapshots:
            def collect(self):
                yield CounterMetricFamily("jinro_retrieval_snapshot_builds", "Retrieval snapshots built (each swapped "
                                          "in whole after an ingest changed the knowledge DB).", value=corpus.refreshes)
                yield GaugeMetricFamily("jinro_retrieval_snapshot_build_seconds", "How long the last snapshot build took.",
                                        value=corpus.last_build_s)

        self.registry.register(_Snapshots())

    # the Counselor's hooks
    def turn(self, crisis: bool) -> None:
        if crisis:
            self.crisis.inc()

    def fact_guard_replaced(self) -> None:
        self.fact_guard.inc()

    def observe_turn(self, surface: str, seconds: float) -> None:
        self.turns.labels(surface).inc()
        self.turn_latency.labels(surface).observe(seconds)

    def exposition(self) -> tuple[bytes, str]:
        if self.multiprocess:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class ResponseObserver(ABC):
    """ASGI middleware base: runs the app, then `observe(scope, status, seconds)` once per HTTP request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), {"code": 500}

        async def _send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, _send)
        finally:
            self.observe(scope, status["code"], time.perf_counter() - start)

    @abstractmethod
    def observe(self, scope: Scope, status: int, seconds: float) -> None:
        """Called once per HTTP response, after it was sent (or failed: status 500)."""


class MetricsMiddleware(ResponseObserver):
    """Counts every response by its route *template* (`/v1/sessions/{session_id}`), never the raw path."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        super().__init__(app)
        self.metrics = metrics

    def observe(self, scope: Scope, status: int, seconds: float) -> None:
        template = getattr(scope.get("route"), "path", None) or "<unmatched>"
        method = scope.get("method", "")
        self.metrics.requests.labels(method, template, str(status)).inc()
        self.metrics.latency.labels(method, template).observe(seconds)
