"""`finetune prepare`: every source -> one multi-turn SFT dataset in the ONE prompt format.

Per conversation: redact personal data in turns, profile and summary (`ingest.redaction.redact`); render with
`assistant.counselor.prompt.render_training_segments` (loss on counselor turns only); fit `max_tokens` (oldest turn pairs
go first, then the context is cut exactly as `render_prompt` cuts it at inference); drop duplicates (sha256 of
the rendered text); split train/validation BY SESSION with a seeded shuffle; write train.jsonl, val.jsonl and
stats.json.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from assistant.errors import PromptBudgetError
from assistant.generation.models import encode_prompt, load_tokenizer
from assistant.counselor.prompt import EOS_MARKER, PromptParts, Segment, Turn, escape_data, normalize_turns, render_prompt, \
    render_training_segments
from ingest.redaction import redact
from finetune.derive import chitchat_conversations, derive_job_conversations
from finetune.errors import DataFormatError, FinetuneError
from finetune.formats import Conversation, SftExample, read_koalpaca, read_reviews, read_transcripts
from finetune.masking import encode_segments


@dataclass(frozen=True)
class PrepareOptions:
    out: Path
    transcripts: Path | None = None
    koalpaca: Path | None = None
    reviews: Path | None = None
    derive_jobs: Path | None = None
    chitchat: Path | None = None
    tokenizer: str | None = None  # a model dir / hub id whose tokenizer counts tokens; characters when None
    max_tokens: int = 2048  # per example, in tokens (or characters without a tokenizer)
    val_fraction: float = 0.05
    seed: int = 42
    derive_limit: int | None = None  # occupations to derive conversations from (None: all)
    chitchat_limit: int | None = 1000
    koalpaca_limit: int | None = None


@dataclass
class PrepareStats:
    token_unit: str = "chars"
    examples: int = 0
    train_examples: int = 0
    val_examples: int = 0
    sessions: int = 0
    train_sessions: int = 0
    val_sessions: int = 0
    by_source: dict[str, int] = field(default_factory=dict)
    derived_examples: int = 0
    tokens_total: int = 0
    tokens_trainable: int = 0
    tokens_max: int = 0
    truncated_turns: int = 0  # turns dropped (oldest first) to fit max_tokens
    context_cuts: int = 0  # examples whose context was cut to fit
    too_long: int = 0  # examples dropped: even the last exchange alone does not fit
    duplicates: int = 0
    redacted_texts: int = 0
    format_errors: int = 0
    error_samples: list[str] = field(default_factory=list)

    @property
    def tokens_mean(self) -> float:
        return self.tokens_total / self.examples if self.examples else 0.0

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "tokens_mean": round(self.tokens_mean, 1)}


def _counter(tokenizer: Any | None) -> Callable[[str], int]:
    return (lambda text: len(encode_prompt(tokenizer, text))) if tokenizer is not None else len


def _redact(conv: Conversation, stats: PrepareStats) -> Conversation:
    def r(text: str) -> str:
        out = redact(text)
        stats.redacted_texts += out != text
        return out

    parts = replace(conv.parts, profile_lines=tuple(r(x) for x in conv.parts.profile_lines), summary=r(conv.parts.summary))
    return replace(conv, parts=parts, turns=tuple(Turn(t.role, r(t.text)) for t in conv.turns))


def _pairs(turns: list[Turn]) -> list[list[Turn]]:
    units: list[list[Turn]] = []
    for t in turns:
        if t.role == "counselor" and units and units[-1][-1].role == "student":
            units[-1].append(t)
        else:
            units.append([t])
    return units


def fit_example(parts: PromptParts, turns: Iterable[Turn], count: Callable[[str], int],
                max_tokens: int) -> tuple[list[Segment], int, bool] | None:
    """(segments, turns dropped, context cut) within `max_tokens`, or None when even one exchange does not fit."""
    units = _pairs(normalize_turns(list(turns)))
    dropped = 0
    while units:
        segs = render_training_segments(parts, [t for u in units for t in u])
        if count("".join(s.text for s in segs)) <= max_tokens:
            return segs, dropped, False
        if len(units) == 1:
            break
        dropped += len(units[0])
        units = units[1:]
    if not units or len(units[0]) != 2:
        return None
    student, counselor = units[0]
    answer_tokens = count(escape_data(counselor.text) + EOS_MARKER) + 2
    try:
        rp = render_prompt(replace(parts, history=(), question=student.text), count_tokens=count,
                           max_context=max_tokens, reserve_for_answer=answer_tokens)
    except PromptBudgetError:
        return None
    segs = render_training_segments(replace(rp.parts, question=""), [Turn("student", rp.parts.question), counselor])
    return (segs, dropped, True) if count("".join(s.text for s in segs)) <= max_tokens else None


def _sources(opts: PrepareOptions) -> Iterator[tuple[str, Iterable[Conversation | DataFormatError]]]:
    if opts.transcripts:
        yield "transcripts", read_transcripts(opts.transcripts)
    if opts.koalpaca:
        yield "koalpaca", read_koalpaca(opts.koalpaca, opts.koalpaca_limit)
    if opts.reviews:
        yield "reviews", read_reviews(opts.reviews)
    if opts.derive_jobs:
        yield "derived jobs", derive_job_conversations(opts.derive_jobs, limit=opts.derive_limit, seed=opts.seed)
    if opts.chitchat:
        yield "chitchat", chitchat_conversations(opts.chitchat, limit=opts.chitchat_limit, seed=opts.seed)


def split_sessions(sessions: Iterable[str], val_fraction: float, seed: int) -> set[str]:
    """The validation sessions: a seeded shuffle of the sorted session ids, the first `val_fraction` of them."""
    ids = sorted(set(sessions))
    random.Random(seed).shuffle(ids)
    n = round(len(ids) * val_fraction)
    if val_fraction > 0 and len(ids) > 1:
        n = min(max(n, 1), len(ids) - 1)
    return set(ids[:n])


def prepare(opts: PrepareOptions, *, progress: Callable[[str, int], None] | None = None) -> PrepareStats:
    """Build the dataset into `opts.out`; `progress(source, n)` is told after each conversation."""
    if not any((opts.transcripts, opts.koalpaca, opts.reviews, opts.derive_jobs, opts.chitchat)):
        raise FinetuneError("no input given: pass at least one of --transcripts, --koalpaca, --reviews, "
                            "--derive-jobs, --chitchat")
    tokenizer = load_tokenizer(opts.tokenizer) if opts.tokenizer else None
    count = _counter(tokenizer)
    stats = PrepareStats(token_unit="tokens" if tokenizer is not None else "chars")
    seen: set[str] = set()
    examples: list[SftExample] = []
    for name, items in _sources(opts):
        for item in items:
            if isinstance(item, DataFormatError):
                stats.format_errors += 1
                if len(stats.error_samples) < 20:
                    stats.error_samples.append(str(item))
                continue
            conv = _redact(item, stats)
            fitted = fit_example(conv.parts, conv.turns, count, opts.max_tokens)
            if progress:
                progress(name, 1)
            if fitted is None:
                stats.too_long += 1
                continue
            segs, dropped, cut = fitted
            text = "".join(s.text for s in segs)
            digest = SftExample.hash_text(text)
            if digest in seen:
                stats.duplicates += 1
                continue
            seen.add(digest)
            stats.truncated_turns += dropped
            stats.context_cuts += cut
            examples.append(SftExample(digest[:16], conv.session_id, conv.source, conv.derived, conv.provenance,
                                       tuple(segs), count(text), dropped))
    if not examples:
        raise FinetuneError("no example survived (see format_errors / too_long in the stats): check the inputs")
    val_sessions = split_sessions((e.session_id for e in examples), opts.val_fraction, opts.seed)
    opts.out.mkdir(parents=True, exist_ok=True)
    with (opts.out / "train.jsonl").open("w", encoding="utf-8") as tr, (opts.out / "val.jsonl").open("w", encoding="utf-8") as va:
        for e in examples:
            (va if e.session_id in val_sessions else tr).write(json.dumps(e.to_json(), ensure_ascii=False) + "\n")
            _tally(stats, e, e.session_id in val_sessions, tokenizer)
    stats.sessions = len({e.session_id for e in examples})
    stats.val_sessions = len(val_sessions)
    stats.train_sessions = stats.sessions - stats.val_sessions
    (opts.out / "stats.json").write_text(json.dumps({"options": {k: str(v) if isinstance(v, Path) else v
                                                                 for k, v in asdict(opts).items()},
                                                     **stats.to_json()}, ensure_ascii=False, indent=2) + "\n",
                                         encoding="utf-8")
    return stats


def _tally(stats: PrepareStats, e: SftExample, is_val: bool, tokenizer: Any | None) -> None:
    stats.examples += 1
    stats.val_examples += is_val
    stats.train_examples += not is_val
    stats.by_source[e.source] = stats.by_source.get(e.source, 0) + 1
    stats.derived_examples += e.derived
    stats.tokens_total += e.tokens
    stats.tokens_max = max(stats.tokens_max, e.tokens)
    if tokenizer is not None:
        stats.tokens_trainable += encode_segments(tokenizer, e.segments).trainable_tokens
    else:
        stats.tokens_trainable += sum(len(s.text) for s in e.segments if s.trainable)
