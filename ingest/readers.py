"""Readers behind `ingest docs PATH...`: files (txt, md, html, pdf, csv/tsv, jsonl) to `SourceDocument`s.

Contract for callers: a file-level problem is raised by the `read_file` call itself, before any item:
UnsupportedSource (suffix, binary, damaged/encrypted PDF) and EmptySource are meant to be skipped with
a message; a plain SourceError (the file cannot be read, e.g. permission denied) is for the operator to fix.
The returned iterator never raises: record-level problems of .csv/.tsv/.jsonl (a CSV header without the
id/text column included, reported at line 1) are yielded as `RecordError`s.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from bs4 import BeautifulSoup, Comment, Declaration, Doctype, MarkupResemblesLocatorWarning, ProcessingInstruction

from ingest.documents import SourceDocument, nfc, tidy
from ingest.errors import EmptySource, RecordError, SourceError, UnsupportedSource

_FORMATS = {".txt": "txt", ".md": "md", ".markdown": "md", ".html": "html", ".htm": "html", ".pdf": "pdf",
            ".csv": "csv", ".tsv": "csv", ".jsonl": "jsonl"}
SUPPORTED_FORMATS = "ingest docs reads .txt .md .markdown .html .htm .pdf .csv .tsv .jsonl"
Item = SourceDocument | RecordError


@dataclass(frozen=True)
class ReaderOptions:
    """Field names for record formats (.jsonl/.csv/.tsv; whole-file formats ignore them), and the most characters one
    document may hold after extraction (None: no limit), so a small compressed file cannot expand without bound."""

    id_field: str = "id"
    text_field: str = "text"
    title_field: str = "title"
    as_of_field: str = "as_of"
    max_chars: int | None = None


def _too_long(where: str, chars: int, limit: int) -> str:
    return (f"{where}: {chars:,} characters after extraction, more than the limit of {limit:,} per document "
            "(JINRO_MAX_DOCUMENT_CHARS) — split it into smaller documents or raise the limit")


def iter_sources(paths: Sequence[Path]) -> Iterator[tuple[Path, Path]]:
    """(file, root) pairs, root being the directory passed or a passed file's parent; each file once."""
    for path in paths:
        if not path.exists():
            raise SourceError(f"{path}: no such file or directory — check the path")
    seen: set[str] = set()
    for path in paths:
        found = _walk(path, set()) if path.is_dir() else iter([path])
        root = path if path.is_dir() else path.parent
        for file in found:
            key = os.path.abspath(file)
            if key not in seen:
                seen.add(key)
                yield file, root


def iter_files(paths: Sequence[Path]) -> Iterator[Path]:
    """Expand directories recursively (sorted, hidden entries skipped) and yield files."""
    return (file for file, _root in iter_sources(paths))


def _walk(directory: Path, visited: set[str]) -> Iterator[Path]:
    if (real := os.path.realpath(directory)) in visited:  # a symlink loop
        return
    visited.add(real)
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError as exc:
        raise SourceError(f"{directory}: cannot list directory — {exc.strerror or exc}") from exc
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            yield from _walk(Path(entry.path), visited)
        elif entry.is_file():
            yield Path(entry.path)


def read_file(path: Path, options: ReaderOptions = ReaderOptions(), *, root: Path | None = None) -> Iterator[Item]:
    """One document for txt/md/html/pdf; per record a document or a RecordError for csv/tsv/jsonl."""
    suffix = path.suffix.lower()
    fmt = _FORMATS.get(suffix)
    if fmt is None:
        hint = " (JSON: write one object per line as .jsonl)" if suffix == ".json" else ""
        shown = f"'{suffix}'" if suffix else "(no suffix)"
        raise UnsupportedSource(f"{path}: unsupported format {shown}{hint} — {SUPPORTED_FORMATS}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SourceError(f"{path}: cannot read — {exc.strerror or exc}") from exc
    if fmt == "pdf":
        return iter([_read_pdf(path, data, root, options.max_chars)])
    text = _decode(path, data)
    if not tidy(text):
        raise EmptySource(f"{path}: empty file — nothing to ingest")
    if fmt == "jsonl":
        return _read_records(path, _jsonl_rows(path, text), options)
    if fmt == "csv":
        return _read_records(path, _csv_rows(path, text, tab=suffix == ".tsv", options=options), options)
    if fmt == "md":
        title, body = _strip_markdown(text)
    elif fmt == "html":
        title, body = _strip_html(text)
    else:
        body = tidy(text)
        title = next((line[:80].strip() for line in body.split("\n") if line), None)
    body = tidy(body)
    if not body:
        raise EmptySource(f"{path}: no text left after removing markup — nothing to ingest")
    if options.max_chars and len(body) > options.max_chars:
        raise SourceError(_too_long(str(path), len(body), options.max_chars))
    return iter([_whole_document(path, root, fmt, title, body)])


def _decode(path: Path, data: bytes) -> str:
    """UTF-16 (with BOM), UTF-8 (BOM stripped), then CP949 (a superset of EUC-KR)."""
    utf16 = data.startswith((b"\xff\xfe", b"\xfe\xff"))
    if not utf16 and b"\x00" in data:
        raise UnsupportedSource(f"{path}: looks like a binary file (NUL bytes), not text — {SUPPORTED_FORMATS}")
    text: str | None = None
    for encoding in ("utf-16",) if utf16 else ("utf-8-sig", "cp949"):
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    if text is None:
        raise UnsupportedSource(f"{path}: not UTF-8 or CP949/EUC-KR text — save it as UTF-8; {SUPPORTED_FORMATS}")
    controls = sum(1 for ch in text if ord(ch) < 32 and ch not in "\t\n\r\f\v\x1a")
    if controls * 100 > len(text):
        raise UnsupportedSource(f"{path}: looks like a binary file (control bytes), not text — {SUPPORTED_FORMATS}")
    return text.lstrip("\ufeff")


def _one_line(text: str) -> str:
    return " ".join(nfc(text).split())


def _whole_document(path: Path, root: Path | None, fmt: str, title: str | None, text: str,
                    extra: dict[str, Any] | None = None) -> SourceDocument:
    title = _one_line(title or "") or nfc(path.stem)
    as_of = date.fromtimestamp(path.stat().st_mtime).isoformat()
    metadata = {"format": fmt, **(extra or {})}
    return SourceDocument("file:" + _relative_id(path, root), title, text, str(path), as_of, metadata)


def _relative_id(path: Path, root: Path | None) -> str:
    """Posix path relative to root (the file's parent by default), NFC so macOS names stay stable."""
    absolute, base = os.path.abspath(path), os.path.abspath(path.parent if root is None or root.is_file() else root)
    relative = os.path.relpath(absolute, base) if absolute.startswith(base.rstrip(os.sep) + os.sep) else absolute
    return nfc(Path(relative).as_posix())


_FENCE = re.compile(r"^\s*(```|~~~)")
_ATX = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)(\s+#+)?\s*$")
_RULE = re.compile(r"^\s*([-=*_]\s*){3,}$")
_REF_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*\S+")
_INLINE = [
    (re.compile(r"!\[([^\]]*)\]\([^)]*\)"), r"\1"),  # images -> alt text
    (re.compile(r"\[([^\]]+)\]\([^)]*\)"), r"\1"),  # links -> link text
    (re.compile(r"\[([^\]]+)\]\[[^\]]*\]"), r"\1"),  # reference links
    (re.compile(r"<(https?://[^>\s]+)>"), r"\1"),  # autolinks
    (re.compile(r"</?[A-Za-z][^>\n]*>"), ""),  # inline HTML tags
    (re.compile(r"`([^`\n]+)`"), r"\1"),
    (re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1"), r"\2"),
    (re.compile(r"(?<![\w*])\*(?=\S)(.+?)(?<=\S)\*(?![\w*])"), r"\1"),
    (re.compile(r"(?<![\w])_(?=\S)(.+?)(?<=\S)_(?![\w])"), r"\1"),
    (re.compile(r"~~(.+?)~~"), r"\1"),
]


def _md_inline(line: str) -> str:
    for pattern, repl in _INLINE:
        line = pattern.sub(repl, line)
    return line


def _strip_markdown(text: str) -> tuple[str | None, str]:
    """Return (first `# heading` or front-matter title, text with markup syntax lightly removed)."""
    lines = text.replace("\r\n", "\n").split("\n")
    title: str | None = None
    end = next((i for i in range(1, len(lines)) if lines[i].strip() == "---"), 0) if lines[0].strip() == "---" else 0
    for key, _, value in (meta.partition(":") for meta in lines[1:end]):  # YAML front matter
        if key.strip().lower() == "title" and value.strip():
            title = value.strip().strip("'\"")
    lines = lines[end + 1:] if end else lines
    out: list[str] = []
    in_fence = False
    for line in lines:
        if _FENCE.match(line):
            in_fence = not in_fence
            continue
        if in_fence:
            out.append(line)
            continue
        heading = _ATX.match(line)
        if heading:
            line = _md_inline(heading.group(2))
            if title is None and len(heading.group(1)) == 1:
                title = line
        elif _RULE.match(line):
            if title is None and line.strip().startswith("=") and out and out[-1].strip():
                title = out[-1]  # setext heading: "Title\n====="
            continue
        elif _REF_DEF.match(line):
            continue
        else:
            line = _md_inline(re.sub(r"^\s*(>\s?)+", "", line))
        out.append(line)
    return title, "\n".join(out)


_MARKUP_NODES = (Comment, Declaration, Doctype, ProcessingInstruction)  # comments, <!DOCTYPE>, <?xml?>
_DROP_TAGS = ["script", "style", "nav", "footer", "noscript", "template", "head", "svg", "iframe"]
_BLOCK_TAGS = ("p div section article main header aside blockquote pre ul ol li dl dt dd table tr h1 h2 h3 h4 h5 "
               "h6 figure figcaption hr address details summary form fieldset").split()


def _strip_html(text: str) -> tuple[str | None, str]:
    """Return (<title> or first <h1>, visible text with paragraph breaks)."""
    with warnings.catch_warnings():  # a page whose text looks like a URL or file name is fine here
        warnings.simplefilter("ignore", MarkupResemblesLocatorWarning)
        soup = BeautifulSoup(text, "html.parser")
    for node in soup.find_all(string=lambda s: isinstance(s, _MARKUP_NODES)):
        node.extract()
    title = soup.title.get_text(" ") if soup.title else None
    for tag in soup.find_all(_DROP_TAGS):
        tag.decompose()
    if not (title and title.strip()):
        h1 = soup.find("h1")
        title = h1.get_text(" ") if h1 else None
    for node in soup.find_all(string=True):
        if node.find_parent("pre") is None:
            node.replace_with(re.sub(r"\s+", " ", str(node)))
    for br in soup.find_all("br"):
        br.replace_with("\n")
    for tag in soup.find_all(_BLOCK_TAGS):
        tag.insert_before("\n\n")
        tag.append("\n\n")
    for cell in soup.find_all(["td", "th"]):
        cell.append(" ")
    return title, soup.get_text()


def _read_pdf(path: Path, data: bytes, root: Path | None, max_chars: int | None = None) -> SourceDocument:
    """One document from a PDF's page texts (joined with blank lines); metadata has the page count. Extraction stops
    as soon as the text passes `max_chars`."""
    from pypdf import PdfReader  # imported lazily: only PDF ingestion needs it

    if not data.strip():
        raise EmptySource(f"{path}: empty file — nothing to ingest")
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise UnsupportedSource(f"{path}: encrypted PDF — save an unencrypted copy and ingest that")
        pages, chars = [], 0
        for page in reader.pages:
            pages.append(tidy(page.extract_text() or ""))
            chars += len(pages[-1]) + 2
            if max_chars and chars > max_chars:
                raise SourceError(_too_long(f"{path} (page {len(pages)} of {len(reader.pages)})", chars, max_chars))
        meta_title = reader.metadata.title if reader.metadata else None
    except SourceError:
        raise
    except Exception as exc:  # pypdf raises many types for damaged files
        raise UnsupportedSource(f"{path}: cannot read PDF ({type(exc).__name__}: {exc}) — damaged file?") from exc
    text = tidy("\n\n".join(page for page in pages if page))
    if not text:
        raise EmptySource(f"{path}: no extractable text in {len(pages)} page(s) — scanned PDF? run OCR first")
    title = re.sub(r"^Microsoft \w+ - ", "", str(meta_title)) if meta_title else None
    return _whole_document(path, root, "pdf", title, text, {"pages": len(pages)})


Row = tuple[int, "dict[str, Any] | RecordError"]


def _jsonl_rows(path: Path, text: str) -> Iterator[Row]:
    # split on "\n" only: JSON strings may hold U+2028, which str.splitlines() would split on
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        location = f"{path}:{number}"
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, RecordError(location, f"invalid JSON ({exc.msg} at column {exc.colno})")
            continue
        if not isinstance(value, dict):
            yield number, RecordError(location, f"expected a JSON object, got {type(value).__name__}")
            continue
        yield number, value


def _csv_rows(path: Path, text: str, *, tab: bool, options: ReaderOptions) -> Iterator[Row]:
    """Read the header now (EmptySource when no row follows it); return a generator of (physical line, row)."""
    first_line = text.split("\n", 1)[0]
    delimiter = "\t" if tab or first_line.count("\t") > first_line.count(",") else ","
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 26))  # long documents in one cell
    stream = io.StringIO(text, newline="")
    reader = csv.reader(stream, delimiter=delimiter, strict=True)
    try:
        header: list[str] | str = [nfc(name).strip() for name in next(reader)]
    except csv.Error as exc:
        header = f"bad CSV header ({exc}) — the first row must name the columns"
    if not text[stream.tell():].strip():
        raise EmptySource(f"{path}: only a header row, no records — nothing to ingest")
    for field, flag in ((options.id_field, "--id-field"), (options.text_field, "--text-field")):
        if isinstance(header, list) and field not in header:
            columns = ", ".join(repr(name) for name in header)
            header = f"no column '{field}' in the header (columns: {columns}) — set {flag}"
    if isinstance(header, str):
        return iter([(1, RecordError(f"{path}:1", header))])
    return _csv_body(path, reader, header, delimiter)


def _csv_body(path: Path, reader: Any, header: list[str], delimiter: str) -> Iterator[Row]:
    """(start line, row dict) per data row; malformed rows become RecordErrors and reading goes on."""
    previous = reader.line_num
    while True:
        start = previous + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            reason = str(exc)
            if "unexpected end of data" in reason:
                reason = f"unclosed quote runs to the end of the file (line {reader.line_num}) — close the quote"
            yield start, RecordError(f"{path}:{start}", f"bad CSV row: {reason}")
            if reader.line_num == previous:
                return
            previous = reader.line_num
            continue
        previous = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) > len(header):
            reason = f"row has {len(row)} fields, the header {len(header)} — quote values containing {delimiter!r}"
            yield start, RecordError(f"{path}:{start}", reason)
            continue
        row = row + [""] * (len(header) - len(row))  # short rows: missing trailing cells are empty
        yield start, {name: value for name, value in zip(header, row) if name}


def _read_records(path: Path, rows: Iterable[Row], options: ReaderOptions) -> Iterator[Item]:
    """Turn rows into documents; duplicate ids within the file become RecordErrors."""
    first_line: dict[str, int] = {}
    for number, row in rows:
        item = row if isinstance(row, RecordError) else _record(path, number, row, options)
        if isinstance(item, SourceDocument) and options.max_chars and len(item.text) > options.max_chars:
            item = RecordError(f"{path}:{number}", _too_long("record", len(item.text), options.max_chars))
        if isinstance(item, SourceDocument):
            first = first_line.setdefault(item.external_id, number)
            if first != number:
                item = RecordError(f"{path}:{number}", f"duplicate id '{item.external_id}' (first at line {first})")
        yield item


def _record(path: Path, number: int, row: dict[str, Any], options: ReaderOptions) -> Item:
    location = f"{path}:{number}"
    raw_id = row.get(options.id_field)
    if raw_id is None:
        return RecordError(location, f"missing field '{options.id_field}' — set --id-field")
    if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)):
        kind = type(raw_id).__name__
        return RecordError(location, f"field '{options.id_field}' must be a string or integer, got {kind}")
    external_id = nfc(str(raw_id)).strip()
    if not external_id:
        return RecordError(location, f"empty id in field '{options.id_field}' — every record needs a stable id")
    raw_text = row.get(options.text_field)
    if raw_text is None:
        return RecordError(location, f"missing field '{options.text_field}' — set --text-field")
    if not isinstance(raw_text, str):
        return RecordError(location, f"field '{options.text_field}' must be a string, got {type(raw_text).__name__}")
    text = tidy(raw_text)
    if not text:
        return RecordError(location, "empty text — nothing to ingest")
    title = _scalar(row.get(options.title_field))
    as_of = _scalar(row.get(options.as_of_field))
    used = {options.id_field, options.text_field, options.title_field, options.as_of_field}
    scalars = {nfc(str(k)): tidy(v) if isinstance(v, str) else v for k, v in row.items()
               if k not in used and isinstance(v, (str, int, float, bool))}
    metadata = {key: value for key, value in scalars.items() if value != ""}
    return SourceDocument(external_id, title or external_id, text, str(path), as_of or None, metadata)


def _scalar(value: Any) -> str:
    """A title/as_of value as one tidy line; '' for missing, null or non-scalar values."""
    return "" if value is None or isinstance(value, (bool, dict, list)) else _one_line(str(value))
