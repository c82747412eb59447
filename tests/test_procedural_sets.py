"""The evaluation sets made by procedure (`assistant.evaluation.procedural`): the files are exactly what the written
procedure makes (so a hand edit, or a changed procedure whose blind files were not left alone, fails here), the
split is by occupation, and the sizes are the ones the procedure promises."""

from __future__ import annotations

import json
from collections import Counter

from assistant.evaluation.procedural import OUT, main


def read(name: str) -> list[dict]:
    return [json.loads(line) for line in (OUT / f"{name}.jsonl").read_text(encoding="utf-8").splitlines() if line]


def test_the_files_are_what_the_procedure_makes() -> None:
    assert main(["check"]) == 0


def test_dev_and_blind_share_no_occupation_and_blind_is_about_a_third() -> None:
    for kind in ("single", "dialogue", "hard_single", "hard_dialogue"):
        dev = {g for item in read(f"procedural_{kind}_dev") for g in item["gold"]}
        blind = {g for item in read(f"procedural_{kind}_blind") for g in item["gold"]}
        assert dev and blind and not dev & blind, kind
        assert 0.25 < len(blind) / (len(dev) + len(blind)) < 0.42, kind


def test_sizes_types_and_expected_strings() -> None:
    single = read("procedural_single_dev") + read("procedural_single_blind")
    dialogue = read("procedural_dialogue_dev") + read("procedural_dialogue_blind")
    assert len(single) >= 600 and len(dialogue) >= 200
    assert len({item["gold"][0] for item in single}) >= 300
    assert Counter(item["popular"] for item in single)[True] >= 290  # half the occupations, two questions each
    assert set(Counter(item["type"] for item in single)) == {"certificate", "education", "duties", "related",
                                                               "how_to_become", "explore", "salary_outlook"}
    assert all(item["answer_any"] and all(isinstance(a, str) and a for a in item["answer_any"]) for item in single)
    assert all(2 <= len(item["turns"]) <= 3 for item in dialogue)


def test_the_paraphrase_sets_cover_the_same_occupations_split_the_same_way() -> None:
    from assistant.evaluation.procedural import in_blind_half

    dev, blind = read("paraphrase_dev"), read("paraphrase_blind")
    for items, want_blind in ((dev, False), (blind, True)):
        codes = Counter(item["gold"][0].removeprefix("job:") for item in items)
        assert set(codes.values()) == {2}  # two questions per occupation
        assert all(in_blind_half(code) == want_blind for code in codes)
        assert all(item["type"] == "description" and item["q"].strip() for item in items)
    occupations = {item["gold"][0] for item in read("procedural_single_dev") + read("procedural_single_blind")}
    assert {item["gold"][0] for item in dev + blind} == occupations
