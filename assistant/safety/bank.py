"""The crisis bank and the other labelled messages the crisis classifier is trained and measured on.

The bank (data/safety/README.md says how it was written) is kept as two files made once by `split_sources`:
data/safety/bank_dev.jsonl (training and tuning) and data/safety/bank_blind.jsonl (frozen; only aggregates are ever
printed).  An item is one message (`text`) or a window of consecutive student turns (`turns`), with its `group` (one
situation written in several wordings: the unit of the split, so no wording of a blind situation is trained on),
`level` (crisis | concern | none), `category` (a crisis category, else null) and `sub` (the situation type).

Non-crisis sources beside the bank:
- ChatbotData questions (data/chatbot_data, MIT): the dev half by the same hash is trained on, except lines the rule
  layer flags or reads as distress (their true label is unknown); every line is measured for false positives;
- career questions made from fixed templates over a seeded sample of dictionary occupations (trained on);
- the career questions of data/eval/ (retrieval and dialogue sets): never trained on, measured for false positives;
- data/eval/safety_dev.jsonl (the older hand-written dev set) is trained on; safety_test.jsonl never is.
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

from assistant.errors import EvalDataError
from assistant.safety.rules import CATEGORIES

ROOT = Path(__file__).resolve().parents[2]
SAFETY_DIR = ROOT / "data" / "safety"
BANK_FILES = {"dev": SAFETY_DIR / "bank_dev.jsonl", "blind": SAFETY_DIR / "bank_blind.jsonl"}
CHATBOT_DATA = ROOT / "data" / "chatbot_data" / "ChatbotData.csv"
DICTIONARY = ROOT / "data" / "job_dictionary" / "job_dictionary_work24.jsonl"
EVAL_DIR = ROOT / "data" / "eval"
OLD_DEV = EVAL_DIR / "safety_dev.jsonl"
LEVELS = ("crisis", "concern", "none")
BLIND_SHARE = 3  # one group in BLIND_SHARE goes to blind


@dataclass(frozen=True)
class BankItem:
    group: str
    level: str
    category: str | None
    sub: str
    turns: tuple[str, ...]  # one message, or consecutive student turns (the last is the one being screened)

    @property
    def label(self) -> str:
        """The classifier's label: none, concern or the crisis category."""
        return self.category if self.level == "crisis" else self.level

    @property
    def text(self) -> str:
        return self.turns[-1]


def split_of(key: str) -> str:
    """dev or blind, by a hash of the group id (or of the text, for sources without groups)."""
    return "blind" if int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:8], 16) % BLIND_SHARE == 0 else "dev"


def parse_item(obj: object, where: str) -> BankItem:
    """One labelled line: a bank item (`level`, `category`, `group`, `text` or `turns`) or the older
    `{"text", "crisis", "category"}` form (its group is `where`).  Raises EvalDataError naming `where`."""
    if not isinstance(obj, dict):
        raise EvalDataError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    if "level" not in obj:
        missing = [k for k in ("text", "crisis", "category") if k not in obj]
        if missing:
            raise EvalDataError(f"{where}: missing field(s) {', '.join(missing)}")
        if not isinstance(obj["crisis"], bool):
            raise EvalDataError(f"{where}: 'crisis' must be true or false, got {obj['crisis']!r}")
        if obj["category"] is not None and obj["category"] not in CATEGORIES:
            raise EvalDataError(f"{where}: unknown category {obj['category']!r}; expected one of {CATEGORIES} or null")
        if obj["crisis"] and obj["category"] is None:
            raise EvalDataError(f"{where}: a crisis example needs a category")
        if not obj["crisis"] and obj["category"] is not None:
            raise EvalDataError(f"{where}: a non-crisis example must have category null")
        obj = {"group": where, "level": "crisis" if obj["crisis"] else "none", "category": obj["category"],
               "text": obj["text"]}
    level, category = obj.get("level"), obj.get("category")
    turns = obj.get("turns", [obj.get("text")])
    if level not in LEVELS:
        raise EvalDataError(f"{where}: level must be one of {LEVELS}, got {level!r}")
    if category is not None and category not in CATEGORIES:
        raise EvalDataError(f"{where}: unknown category {category!r}; expected one of {CATEGORIES} or null")
    if (level == "crisis") != (category in CATEGORIES):
        raise EvalDataError(f"{where}: a crisis item needs a category of {CATEGORIES}, others need null")
    if not isinstance(turns, list) or not turns or not all(isinstance(t, str) and t.strip() for t in turns):
        raise EvalDataError(f"{where}: 'text' (or every one of 'turns') must be a non-empty string")
    if not isinstance(obj.get("group"), str) or not obj["group"]:
        raise EvalDataError(f"{where}: 'group' must name the situation the wording belongs to")
    return BankItem(obj["group"], level, category, str(obj.get("sub") or ""), tuple(turns))


def read_items(path: Path) -> list[BankItem]:
    """Every labelled line of a JSONL file (either form of `parse_item`); errors name the file and line."""
    if not path.is_file():
        raise EvalDataError(f"{path}: labelled file not found")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise EvalDataError(f"{path}: cannot read as UTF-8 text ({exc})") from exc
    items = []
    for no, line in enumerate(lines, start=1):
        if line.strip():
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise EvalDataError(f"{path}:{no}: invalid JSON ({exc.msg})") from exc
            items.append(parse_item(obj, f"{path}:{no}"))
    if not items:
        raise EvalDataError(f"{path}: no examples in file")
    return items


def load_bank(split: str) -> list[BankItem]:
    if split not in BANK_FILES:
        raise EvalDataError(f"unknown bank split {split!r}; expected dev or blind")
    return read_items(BANK_FILES[split])


def split_sources(sources: list[Path]) -> dict[str, int]:
    """Write bank_dev.jsonl and bank_blind.jsonl from the writers' files (once: an existing blind file is frozen)."""
    if BANK_FILES["blind"].exists():
        raise EvalDataError(f"{BANK_FILES['blind']} exists and is frozen; add new items to bank_dev.jsonl only")
    out: dict[str, list[str]] = {"dev": [], "blind": []}
    seen: set[tuple[str, ...]] = set()
    for path in sources:
        for item in read_items(path):
            if item.turns in seen:
                continue
            seen.add(item.turns)
            record = {"group": item.group, "level": item.level, "category": item.category, "sub": item.sub}
            record.update({"text": item.text} if len(item.turns) == 1 else {"turns": list(item.turns)})
            out[split_of(item.group)].append(json.dumps(record, ensure_ascii=False))
    for split, lines in out.items():
        BANK_FILES[split].write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {split: len(lines) for split, lines in out.items()}


def chatbot_questions() -> list[str]:
    """Every question of ChatbotData (11,823 lines)."""
    with CHATBOT_DATA.open(encoding="utf-8", newline="") as fh:
        return [row["Q"].strip() for row in csv.DictReader(fh) if row["Q"].strip()]


def eval_career_questions() -> list[str]:
    """Every student question and turn of the retrieval and dialogue sets in data/eval/ (never trained on)."""
    out: list[str] = []
    for path in sorted(EVAL_DIR.glob("retrieval_*.jsonl")) + sorted(EVAL_DIR.glob("dialogue_*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                obj = json.loads(line)
                out += [obj["q"]] if "q" in obj else list(obj.get("turns", []))
    return list(dict.fromkeys(out))


_CAREER_TEMPLATES = (
    "{job} 되려면 뭐 해야 돼?", "{job}가 되고 싶은데 어떤 공부를 해야 하나요?", "{job}는 무슨 일을 해요?",
    "{job} 하려면 자격증 필요해요?", "{job} 연봉 어느 정도예요", "{job}랑 비슷한 직업 뭐 있어", "{job}되는법 알려줘",
    "{job} 전망 어때요?", "저 {job}에 관심 있는데 대학 꼭 가야 돼요?", "{job} 일하면 힘든 점은 뭐예요?",
    "고등학생인데 {job} 준비는 언제부터 해야 할까요", "{job}는 어떤 사람한테 잘 맞아요?", "{job} 학과 추천해줘",
    "{job}가 하는 일 중에 위험한 것도 있어요?", "{job} 하루 일과가 궁금해요", "{job} 되기 어려워?",
)


_DESCRIPTION_TEMPLATES = (
    "{duty} 일을 하고 싶은데 어떤 직업이 있어요?", "{duty} 사람 되려면 뭐 공부해야 돼?", "{duty} 직업 이름이 뭐야",
    "저는 고등학생인데 {duty} 일에 관심 있어요", "{duty} 일 하면 연봉 얼마나 받아요?", "{duty} 일은 자격증 필요해?",
)
_OPENERS = ("안녕하세요! 진로 상담 좀 받고 싶어요", "진로 고민이 있어서 왔어요", "진로 상담 받을 수 있나요?",
            "진로 때문에 고민이에요 도와주세요", "안녕 진로 얘기 좀 하자", "선생님 진로 상담 부탁드려요",
            "저 진로 상담하고 싶은데요", "처음인데 진로 상담 어떻게 해요?", "안녕하세요 고1인데 진로 상담 받고 싶어요",
            "진로상담 가능해요?", "상담 시작할게요", "하이 진로 고민 들어줄 수 있어?")
_WHEN = ("대학 가면", "졸업하면", "스무 살 되면", "취업하면", "성인 되면", "나중에", "군대 다녀와서", "돈 모으면")
_MOVE = ("집 나가서 자취할 거야", "독립해서 혼자 살 거예요", "기숙사 들어갈 거야", "집 떠나서 서울 가서 살래",
         "집에서 나와서 살고 싶어", "원룸 구해서 나갈 거야", "부모님 집에서 나와서 독립하고 싶어요", "집 나가서 살 거임")


def _dictionary() -> list[dict]:
    return [json.loads(line) for line in DICTIONARY.read_text(encoding="utf-8").splitlines() if line.strip()]


def career_questions(n: int = 800, seed: int = 15) -> list[str]:
    """Career talk labelled none, made by procedure: the fixed templates over `n` dictionary occupation names and
    over the first clause of `n` more occupations' duty summaries (seeded samples; each also alone, "…하는 일"), every
    combination of a time ("대학 가면") with a plan to move out ("집 나가서 자취할 거야"), and the openers of a
    counselling chat ("진로 상담 좀 받고 싶어요")."""
    records = _dictionary()
    rng = random.Random(seed)
    names = rng.sample(sorted({r["dJobNm"] for r in records}), n)
    out = [rng.choice(_CAREER_TEMPLATES).format(job=job) for job in names]
    for r in rng.sample(records, n):
        duty = re.sub(r"(?:한다|하다|된다|이다|하며|하고|하거나)$", "", re.split(r"[,.]", r.get("workSum") or "")[0].strip())
        duty = duty[:50].rstrip("하고며 ")
        if len(duty) >= 6:
            out.append(rng.choice(_DESCRIPTION_TEMPLATES).format(duty=duty + "하는"))
            out.append(f"{duty}하는 일")  # a description alone, as students type it
    out += [f"{when} {move}" for when in _WHEN for move in _MOVE]
    out += list(_OPENERS)
    return out
