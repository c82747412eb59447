"""What the tests and the benchmarks (`bench/`) share: real parts set up small, and stand-ins that implement our
interfaces. One module per concept:

- `dictionary`      the bundled job dictionary as tests pick from it (lines by position or by occupation)
- `knowledge_base`  ONE knowledge-DB builder (real ingest into SQLite/FAISS or PostgreSQL), copies of it, a runtime
- `embedders`       the disk-cached real embedder, and `HashEmbedder`, a fake `Embedder` with another model id
- `generators`      fake `Generator`s: a scripted LLM stand-in, a grounded generator that records its requests
- `openai_stub`     a real OpenAI-compatible HTTP server whose replies a test scripts
- `processes`       our console scripts (`jinro`, `ingest`) and a real `jinro serve` process (`Server`)
- `api_client`      what a client of our API does: keys, bearer headers, reading server-sent events
- `postgres`        the PostgreSQL test server (fresh databases, skip-with-a-banner) and throwaway pgserver instances

Import from the module: `from tests.support.knowledge_base import build_kb`. `bench/` scripts run as modules from
the repository root (`python -m bench.api_bench`), so they import this package without touching `sys.path`.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository root
