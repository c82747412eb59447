"""The 한국직업사전 (Korean Dictionary of Occupations) JSONL format: one occupation per line.

Each record becomes structured facts (`OccupationRecord`) and one text document (`job:<dJobCd>`) that carries
the name, summary, duties and the facts as sentences (written by `ingest.occupation_text`), so both retrieval and
the fact lookup can find it.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

from ingest.documents import SourceDocument, nfc
from ingest.errors import EmptySource, RecordError, SourceError
from ingest.occupation_text import OccupationFields, document_text, education_short, split_items

_CODE_NAME = re.compile(r"^\[(?P<code>[^\]]*)\]\s*(?P<name>.*)$")


@dataclass(frozen=True)
class OccupationRecord:
    code: str
    name: str
    summary: str
    duties: str
    education_level: str | None
    skill_years: str | None
    work_strength: str | None
    work_place: str | None
    work_environment: str | None
    keco_code: str | None
    keco_name: str | None
    ksco_code: str | None
    ksco_name: str | None
    ksic_code: str | None
    ksic_name: str | None
    survey_year: int | None
    certificates: tuple[str, ...]
    similar_names: tuple[str, ...]
    related: tuple[str, ...]

    @property
    def external_id(self) -> str:
        return f"job:{self.code}"

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), ensure_ascii=False, sort_keys=True).encode()).hexdigest()

    @property
    def fields(self) -> OccupationFields:
        """What the document text says about this occupation."""
        return OccupationFields(
            name=self.name, summary=self.summary or None, duties=self.duties or None,
            education=education_short(self.education_level), skill=self.skill_years, certificates=self.certificates,
            similar=self.similar_names, related=self.related, classification=self.keco_name, industry=self.ksic_name)


def split_list(value: str | None) -> tuple[str, ...]:
    """Split a dictionary comma list, keeping commas inside parentheses, dropping blanks and duplicates."""
    if not value:
        return ()
    return tuple(dict.fromkeys(" ".join(item.split()) for item in split_items(nfc(value))))


def _code_name(value: str | None) -> tuple[str | None, str | None]:
    if not value:
        return None, None
    m = _CODE_NAME.match(nfc(value).strip())
    return (m.group("code") or None, m.group("name").strip() or None) if m else (None, value.strip())


def _text(value: object) -> str | None:
    if value is None:
        return None
    s = " ".join(nfc(str(value)).split())
    return s or None


def parse_record(obj: dict) -> OccupationRecord:
    """Raises KeyError/ValueError/TypeError on a malformed record (the caller turns it into a RecordError)."""
    code, name = _text(obj["dJobCd"]), _text(obj["dJobNm"])
    if not code or not name:
        raise ValueError("empty dJobCd or dJobNm")
    info = obj.get("optionJobInfo") or {}
    if not isinstance(info, dict):
        raise TypeError("optionJobInfo is not an object")
    _, keco = _code_name(info.get("dJobECdNm"))
    _, ksco = _code_name(info.get("dJobJCdNm"))
    _, ksic = _code_name(info.get("dJobICdNm"))
    year = _text(info.get("inqYear"))
    return OccupationRecord(
        code=code,
        name=name,
        summary=_text(obj.get("workSum")) or "",
        duties=_text(obj.get("doWork")) or "",
        education_level=_text(info.get("eduLevel")),
        skill_years=_text(info.get("skillYear")),
        work_strength=_text(info.get("workStrong")),
        work_place=_text(info.get("workPlace")),
        work_environment=_text(info.get("workEnv")),
        keco_code=_text(info.get("dJobECd")),
        keco_name=keco,
        ksco_code=_text(info.get("dJobJCd")),
        ksco_name=ksco,
        ksic_code=_text(info.get("dJobICd")),
        ksic_name=ksic,
        survey_year=int(year) if year and year.isdigit() else None,
        certificates=split_list(info.get("certLic")),
        similar_names=tuple(n for n in split_list(info.get("similarNm")) if n != name),
        related=split_list(info.get("connectJob")),
    )


def render_document(rec: OccupationRecord, source_path: str) -> SourceDocument:
    """The document of an occupation: its text (`ingest.occupation_text.document_text`), title and date."""
    return SourceDocument(
        external_id=rec.external_id,
        title=rec.name,
        text=document_text(rec.fields),
        source_path=source_path,
        as_of=str(rec.survey_year) if rec.survey_year else None,
        metadata={"kind": "job", "code": rec.code, "facts_hash": rec.content_hash},
    )


def read_jobs(path: Path) -> Iterator[tuple[SourceDocument, OccupationRecord] | RecordError]:
    """Records of a job-dictionary JSONL file; malformed lines come out as RecordError and reading goes on."""
    if not path.exists():
        raise SourceError(f"{path}: no such file — give the job dictionary JSONL (data/job_dictionary/*.jsonl)")
    if path.is_dir():
        files = sorted(p for p in path.glob("*.jsonl"))
        if not files:
            raise SourceError(f"{path}: no .jsonl file in this directory")
    else:
        files = [path]
    for file in files:
        seen = 0
        with file.open(encoding="utf-8-sig") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                seen += 1
                loc = f"{file}:{lineno}"
                try:
                    obj = json.loads(line)
                    if not isinstance(obj, dict):
                        raise TypeError("line is not a JSON object")
                    rec = parse_record(obj)
                except json.JSONDecodeError as exc:
                    yield RecordError(loc, f"invalid JSON ({exc.msg} at column {exc.colno})")
                    continue
                except KeyError as exc:
                    yield RecordError(loc, f"missing field {exc.args[0]!r}")
                    continue
                except (TypeError, ValueError) as exc:
                    yield RecordError(loc, str(exc))
                    continue
                yield render_document(rec, str(file)), rec
        if seen == 0:
            raise EmptySource(f"{file}: empty file — nothing to ingest")
