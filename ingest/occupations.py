"""Writing occupation facts (from `OccupationRecord`) into the facts tables."""

from __future__ import annotations

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from db.models import Occupation, OccupationAlias, OccupationCertificate, OccupationRelation
from ingest.jobs import OccupationRecord
from ingest.korean import compact

_SCALARS = (
    "name", "summary", "duties", "education_level", "skill_years", "work_strength", "work_place",
    "work_environment", "keco_code", "keco_name", "ksco_code", "ksco_name", "ksic_code", "ksic_name",
    "survey_year", "content_hash",
)


def upsert_occupation(session: Session, rec: OccupationRecord, document_id: int) -> Occupation:
    """Insert or replace one occupation and its certificates, aliases and related names."""
    occ = session.scalar(select(Occupation).where(Occupation.code == rec.code))
    if occ is None:
        occ = Occupation(code=rec.code)
        session.add(occ)
    elif occ.content_hash == rec.content_hash and occ.document_id == document_id:
        return occ
    for field in _SCALARS:
        setattr(occ, field, getattr(rec, field) if field != "content_hash" else rec.content_hash)
    occ.document_id = document_id
    session.flush()
    for table in (OccupationCertificate, OccupationAlias, OccupationRelation):
        session.execute(delete(table).where(table.occupation_id == occ.id))
    session.add_all(OccupationCertificate(occupation_id=occ.id, position=i, name=c) for i, c in enumerate(rec.certificates))
    names = [(rec.name, "name")] + [(n, "similar") for n in rec.similar_names]
    seen: set[str] = set()
    for alias, kind in names:
        key = compact(alias)
        if key and key not in seen:
            seen.add(key)
            session.add(OccupationAlias(occupation_id=occ.id, alias=alias, compact=key, kind=kind))
    session.add_all(
        OccupationRelation(occupation_id=occ.id, position=i, related_name=r) for i, r in enumerate(rec.related)
    )
    return occ


def resolve_relations(session: Session) -> int:
    """Point related names at the occupation of the same name, where there is exactly one. Returns links set."""
    by_name: dict[str, int | None] = {}
    for occ_id, name in session.execute(select(Occupation.id, Occupation.name)):
        key = compact(name)
        by_name[key] = None if key in by_name else occ_id  # ambiguous names stay unlinked
    linked = 0
    rows = session.execute(select(OccupationRelation.id, OccupationRelation.related_name, OccupationRelation.related_id))
    for rel_id, name, current in rows.all():
        target = by_name.get(compact(name))
        if target != current:
            session.execute(update(OccupationRelation).where(OccupationRelation.id == rel_id).values(related_id=target))
        linked += target is not None
    return linked
