"""The fine-tuning pipeline end to end on a tiny Polyglot-shaped model, through the real `finetune` CLI:
prepare -> train -> (resume) -> eval -> TransformersGenerator with the adapter -> merge. Plus the pieces."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from assistant.errors import PromptError
from assistant.generation.base import GenerationRequest
from assistant.generation.transformers import TransformersGenerator
from assistant.counselor.fact_block import fact_block
from assistant.counselor.prompt import EOS_MARKER, PromptParts, Turn, render_prompt, render_training_segments
from finetune.cli import app
from finetune.config import load_config
from finetune.derive import MAX_ANSWER_CHARS, chitchat_conversations, derive_job_conversations, facts_of
from finetune.errors import ConfigError
from finetune.formats import ReviewExport, read_examples
from finetune.masking import IGNORE, batch_loss, collate, encode_segments, masked_loss
from finetune.prepare import split_sessions
from finetune.tiny import TinySpec, build_tiny_model
from finetune.train import lr_factor, micro_batches
from ingest.jobs import parse_record
from ingest.korean import polite

ROOT = Path(__file__).resolve().parent.parent
JOBS = ROOT / "data/job_dictionary/job_dictionary_work24.jsonl"
CHAT = ROOT / "data/chatbot_data/ChatbotData.csv"
EXAMPLES = ROOT / "data/sft/examples"
runner = CliRunner()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny-neox"), TinySpec(vocab_size=3000, corpus_lines=4000))


def cli(*args: str) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    return result.output


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def dataset(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("sft")
    cli("prepare", "--out", out, "--transcripts", EXAMPLES / "transcripts.sample.jsonl",
        "--koalpaca", EXAMPLES / "koalpaca.sample.json", "--reviews", EXAMPLES / "reviews.sample.jsonl",
        "--derive-jobs", JOBS, "--derive-limit", 90, "--chitchat", CHAT, "--chitchat-limit", 30,
        "--tokenizer", tiny, "--val-fraction", 0.15, "--max-tokens", 900)
    return out


def test_prepare_output(dataset):
    stats = json.loads((dataset / "stats.json").read_text())
    assert stats["token_unit"] == "tokens" and stats["tokens_max"] <= 900
    assert set(stats["by_source"]) == {"transcript", "koalpaca", "review:approved", "review:edited", "derived:job",
                                       "chitchat"}
    assert stats["format_errors"] == 3 and stats["redacted_texts"] >= 2  # 1 bad JSON, 1 no answer, 1 'rejected'
    train, val = read_examples(dataset / "train.jsonl"), read_examples(dataset / "val.jsonl")
    assert len(train) == stats["train_examples"] and len(val) == stats["val_examples"] > 0
    assert not {e.session_id for e in train} & {e.session_id for e in val}  # split by session
    blob = (dataset / "train.jsonl").read_text() + (dataset / "val.jsonl").read_text()
    assert "010-1234-5678" not in blob and "student@example.com" not in blob and "[전화번호]" in blob
    derived = [e for e in train + val if e.derived]
    assert all(e.provenance.get("generator") for e in derived)
    assert len({e.id for e in train + val}) == len(train + val)


def test_prepare_deduplicates_and_fits(tmp_path):
    line = (EXAMPLES / "transcripts.sample.jsonl").read_text().splitlines()[0]
    src = tmp_path / "dup.jsonl"
    src.write_text(line + "\n" + line.replace("demo-0001", "demo-0001b") + "\n")
    cli("prepare", "--out", tmp_path / "out", "--transcripts", src, "--max-tokens", 600)
    stats = json.loads((tmp_path / "out/stats.json").read_text())
    assert stats["duplicates"] == 1 and stats["examples"] == 1 and stats["token_unit"] == "chars"
    assert stats["truncated_turns"] + stats["context_cuts"] > 0 and stats["tokens_max"] <= 600


def test_loss_mask_covers_exactly_the_counselor_tokens(dataset, tiny):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny)
    for ex in read_examples(dataset / "train.jsonl")[:40]:
        enc = encode_segments(tok, ex.segments)
        runs, cur = [], []
        for i, label in enumerate(enc.labels):
            if label != IGNORE:
                assert label == enc.input_ids[i]
                cur.append(label)
            elif cur:
                runs.append(cur)
                cur = []
        if cur:
            runs.append(cur)
        expected = [s.text for s in ex.segments if s.trainable]
        assert [tok.decode(r) for r in runs] == [t.replace(EOS_MARKER, tok.eos_token) for t in expected]
        assert all(t.endswith(EOS_MARKER) for t in expected)


def test_batch_loss_projects_only_counselor_positions_and_equals_the_full_loss(dataset, tiny):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny)
    model = AutoModelForCausalLM.from_pretrained(tiny)
    seen: list[int] = []
    hook = model.get_output_embeddings().register_forward_hook(lambda m, i, o: seen.append(i[0].numel() // i[0].shape[-1]))
    encoded = [encode_segments(tok, ex.segments) for ex in read_examples(dataset / "train.jsonl")[:6]]
    batch = collate(encoded, tok.pad_token_id)  # right-padded, rows of different lengths
    with torch.no_grad():
        full, n_full = masked_loss(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits,
                                   batch["labels"])
        part, n_part = batch_loss(model, batch)
    hook.remove()
    assert int(n_part) == int(n_full) == sum(e.trainable_tokens for e in encoded)
    assert torch.allclose(part, full, rtol=1e-5)
    assert seen[0] == batch["input_ids"].numel() and seen[1] == int(n_part) < batch["input_ids"].numel() / 2


@pytest.fixture(scope="module")
def trained(tiny, dataset, tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    config = run / "tiny.yaml"
    config.write_text(yaml.safe_dump({
        "model": str(tiny), "data": {"train": str(dataset / "train.jsonl"), "val": str(dataset / "val.jsonl")},
        "output_dir": str(run / "out"), "seed": 0, "max_seq_len": 1024, "device": "cpu",
        "gradient_checkpointing": False,
        # the production GPT-NeoX targets, plus lm_head so a random 64-wide model can learn in seconds
        "lora": {"r": 8, "alpha": 16, "dropout": 0.0,
                 "target_modules": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h", "lm_head"]},
        "optim": {"lr": 1.0e-2, "warmup_steps": 3},
        "batch": {"micro_batch_size": 4, "grad_accum": 2, "max_steps": 20},
        "log_every": 5, "eval_every": 0, "save_every": 10}))
    base_hash = sha(tiny / "model.safetensors")
    output = cli("train", "--config", config)
    assert "validation loss before training" in output
    return run, config, base_hash


def test_train_changes_lora_weights_only_and_lowers_validation_loss(trained, tiny):
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    run, _, base_hash = trained
    adapter = run / "out/adapter"
    weights = load_file(adapter / "adapter_model.safetensors")
    assert weights and all("lora_" in k for k in weights)
    assert all(w.abs().sum() > 0 for k, w in weights.items() if "lora_B" in k)  # B starts at zero
    assert sha(tiny / "model.safetensors") == base_hash
    base = AutoModelForCausalLM.from_pretrained(tiny)
    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny), adapter)
    base_params = dict(base.named_parameters())
    for name, p in tuned.base_model.model.named_parameters():
        if "lora_" not in name:
            assert torch.equal(p, base_params[name.replace(".base_layer", "")]), name
    info = json.loads((adapter / "jinro_adapter.json").read_text())
    assert info["base_model"] == str(tiny) and info["prompt_format"] == "jinro-koalpaca-v1"
    assert info["data"]["stats"]["examples"] > 0 and info["training"]["steps"] == 20
    assert info["training"]["val_loss_after"] < info["training"]["val_loss_before"] - 0.3
    assert sorted(p.name for p in (run / "out/checkpoints").iterdir()) == ["step-000010", "step-000020"]


def test_resume_continues_from_the_last_checkpoint(trained):
    run, config, _ = trained
    output = cli("train", "--config", config, "--set", "batch.max_steps=22", "--set", "output_dir=" + str(run / "out"),
                 "--resume")
    assert "resumed from" in output and "step-000020" in output and "in 22 steps" in output


def test_eval_generator_and_merge(trained, tiny, dataset, tmp_path):
    from peft import PeftModel

    run, _, _ = trained
    adapter = run / "out/adapter"
    report = tmp_path / "eval.md"
    cli("eval", "--model", tiny, "--adapter", adapter, "--data", dataset / "val.jsonl", "--report", report,
        "--max-new-tokens", 12)
    numbers = json.loads(report.with_suffix(".json").read_text())
    assert numbers["adapter_loss"] < numbers["base_loss"] and len(numbers["samples"]) == 4
    assert "| base + adapter |" in report.read_text()

    gen = TransformersGenerator(str(tiny), adapter=str(adapter), device="cpu")
    assert isinstance(gen.model, PeftModel) and gen.adapter_info["prompt_format"] == "jinro-koalpaca-v1"
    rendered = render_prompt(PromptParts(question="간호사는 무슨 일을 해요?"), count_tokens=gen.count_tokens)
    answer = "".join(gen.stream(GenerationRequest(rendered.text, rendered.parts, max_new_tokens=16)))
    assert isinstance(answer, str) and "\n### " not in answer

    merged = tmp_path / "merged"
    cli("merge", "--model", tiny, "--adapter", adapter, "--out", merged)
    from transformers import AutoModelForCausalLM

    plain = AutoModelForCausalLM.from_pretrained(merged)
    ids = torch.tensor([gen.tokenizer(rendered.text)["input_ids"][:64]])
    with torch.no_grad():
        assert torch.allclose(plain(ids).logits, gen.model(ids).logits, atol=1e-4)


def test_derived_data_is_varied_grounded_and_bounded():
    convs = list(derive_job_conversations(JOBS, limit=400, seed=3))
    students = [t.text for c in convs for t in c.turns if t.role == "student"]
    answers = [(c, i, t.text) for c in convs for i, t in enumerate(c.turns) if t.role == "counselor"]
    templates = {t.text.replace(c.provenance["name"], "{직업}") for c in convs for t in c.turns if t.role == "student"}
    assert len(templates) > 60 and len(set(students)) > 0.6 * len(students)
    assert max(len(a) for _, _, a in answers) <= MAX_ANSWER_CHARS
    assert sum(len(c.turns) > 2 for c in convs) > 100  # follow-ups
    assert any(re.match(r"^(그|그럼|그거)", s) for s in students)  # ... that refer back without the name
    intents = [i for c in convs for i in c.provenance["intents"]]
    assert {"duties", "education", "certificate", "related", "fit", "unanswerable"} <= set(intents)
    no_cert = [(c, a) for c, i, a in answers if c.provenance["intents"][i // 2] == "certificate"
               and "관련 자격증: 등록된 자격증 없음" in c.parts.facts[-1].lines]
    assert len(no_cert) > 20 and all("등록된 자격증" in a and "정보 없음" not in a for _, a in no_cert)
    unknown = [a for c, i, a in answers if c.provenance["intents"][i // 2] == "unanswerable"]
    assert unknown and all("자료에 없" in a and ("커리어넷" in a or "고용24" in a) for a in unknown)
    assert sum(len(c.parts.facts) == 2 for c in convs) > 50  # a distractor first, the focus last
    # retrieved passages of OTHER occupations, as the counselor's prompt has them, mostly with their own 학력 line
    passages = [(c, p) for c in convs for p in c.parts.passages]
    assert sum(bool(c.parts.passages) for c in convs) > 250 and all(len(c.parts.passages) <= 4 for c in convs)
    assert all(p.source_id not in {b.source_id for b in c.parts.facts} for c, p in passages)
    assert sum("학력: " in p.text for _, p in passages) > 0.4 * len(passages)
    # facts in the prompt exactly as at inference: assistant.counselor.fact_block.fact_block of the same record
    first = convs[0]
    line = JOBS.read_text(encoding="utf-8").splitlines()[int(first.provenance["file"].rsplit(":", 1)[1]) - 1]
    assert first.parts.facts[-1] == fact_block(facts_of(parse_record(json.loads(line))))


def test_chitchat_and_polite_endings():
    pairs = list(chitchat_conversations(CHAT, limit=50))
    assert len(pairs) == 50 and all(c.derived and not c.parts.facts for c in pairs)
    assert polite("웹사이트를 관리한다.") == "웹사이트를 관리해요."
    assert polite("제품을 만든다.") == "제품을 만들어요."
    assert polite("규칙을 지킨다.") == "규칙을 지켜요."
    assert polite("이상한 문장") is None


def test_review_export_round_trip():
    line = (EXAMPLES / "reviews.sample.jsonl").read_text().splitlines()[0]
    review = ReviewExport.from_json(json.loads(line))
    assert review.source == "approved" and review.facts[0].source_id == "job:K000007494"
    assert ReviewExport.from_json(review.to_json()) == review
    with pytest.raises(ValueError, match="approved"):
        ReviewExport.from_json({**review.to_json(), "source": "pending"})


def test_config_overrides_and_errors(tmp_path):
    cfg = load_config(ROOT / "finetune/configs/polyglot-ko-5.8b.yaml", ["optim.lr=1e-5", "batch.max_steps=7"])
    assert cfg.optim.lr == 1e-5 and cfg.batch.max_steps == 7 and "dense_h_to_4h" in cfg.lora.target_modules
    assert load_config(ROOT / "finetune/configs/gemma3-270m-cpu.yaml").model == "gemma3-270m-gguf"
    assert load_config(ROOT / "finetune/configs/polyglot-ko-12.8b.yaml").quantization == "4bit"
    qwen = load_config(ROOT / "finetune/configs/qwen2.5-coder-1.5b-cpu.yaml")
    assert (qwen.model, qwen.dtype, qwen.device) == ("qwen2.5-coder-1.5b", "bf16", "cpu")
    assert {"q_proj", "o_proj", "gate_proj", "down_proj"} <= set(qwen.lora.target_modules)
    with pytest.raises(ConfigError, match="valid here: optim.lr"):
        load_config(None, ["optim.lrr=1"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["optim.lr"])
    with pytest.raises(ConfigError, match=r"quantization: input should be 'none' or '4bit', not '8bit'"):
        load_config(None, ["quantization=8bit"])
    with pytest.raises(ConfigError, match=r"batch\.max_steps: .*fractional part, not 1\.5"):
        load_config(None, ["batch.max_steps=1.5"])
    with pytest.raises(ConfigError, match="gradient_checkpointing must be true or false"):
        load_config(None, ["gradient_checkpointing=maybe"])
    assert load_config(None, ["optim.lr=1e-4"]).optim.lr == 1e-4  # YAML reads 1e-4 as a string


def test_batches_schedule_and_split_are_deterministic():
    a = list(zip(range(12), micro_batches(10, 2, 1, 0, seed=5)))
    b = list(zip(range(12), micro_batches(10, 2, 1, 0, seed=5, skip=4)))
    assert [x for _, x in a][4:12] == [x for _, x in b][:8]  # resume = skip the consumed batches
    ranks = [next(micro_batches(10, 2, 2, r, seed=5)) for r in (0, 1)]
    assert not set(ranks[0]) & set(ranks[1])
    assert lr_factor(0, 100, 10, "cosine", 0.1) == pytest.approx(0.1)
    assert lr_factor(99, 100, 10, "cosine", 0.1) == pytest.approx(0.1, abs=0.01)
    val = split_sessions([f"s{i}" for i in range(100)], 0.1, seed=1)
    assert len(val) == 10 and val == split_sessions([f"s{i}" for i in reversed(range(100))], 0.1, seed=1)


def test_a_training_conversation_must_end_with_the_counselor():
    with pytest.raises(PromptError):
        render_training_segments(PromptParts(), [Turn("student", "질문만")])
