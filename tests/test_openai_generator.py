"""OpenAIGenerator against a real local HTTP server speaking the OpenAI protocol (tests/support/openai_stub.py)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from assistant.errors import GenerationError, ModelServerError
from assistant.generation.base import GenerationRequest, Generator
from assistant.generation.models import encode_prompt
from assistant.generation.openai import OpenAIGenerator, normalize_base_url, split_persona
from assistant.generation.token_estimate import estimate_tokens
from assistant.counselor.prompt import DEFAULT_PERSONA, EOS_MARKER, STOP_SEQUENCES, PromptParts, Turn, render_prompt
from tests.support.openai_stub import ANSWER, Drop, Fail, OpenAIStub, Raw, Stream, whole_completion
from tests.support.processes import free_port

API_KEY = "sk-test-123"
LONG_CHUNKS = ("학생의 고민을 잘 들었어요. 먼저 관심 분야를 정리해 보면 좋겠어요. ",
               "다음으로 관련 학과와 자격증을 찾아보고, ",
               "마지막으로 현직자 인터뷰를 읽어 보세요. ")


@pytest.fixture(scope="module")
def stub() -> Iterator[OpenAIStub]:
    with OpenAIStub(api_key=API_KEY) as server:
        yield server


@pytest.fixture()
def server(stub: OpenAIStub) -> OpenAIStub:
    stub.reset()
    stub.default = Stream()
    return stub


def make(server: OpenAIStub, **kwargs: Any) -> OpenAIGenerator:
    opts: dict[str, Any] = dict(model="counselor", api_key=API_KEY, backoff_s=0.01, max_backoff_s=0.5,
                                connect_timeout_s=1.0, read_timeout_s=2.0)
    opts.update(kwargs)
    return OpenAIGenerator(server.url, **opts)


def request_for(gen: Generator, question: str = "영상기자가 되려면 어떻게 해야 하나요?",
                max_new_tokens: int = 200) -> GenerationRequest:
    parts = PromptParts(persona=DEFAULT_PERSONA, profile_lines=("학년: 고2",),
                        history=(Turn("student", "안녕하세요"), Turn("counselor", "안녕하세요! 무엇이 궁금한가요?")),
                        question=question)
    rendered = render_prompt(parts, count_tokens=gen.count_tokens, max_context=gen.context_window,
                             reserve_for_answer=max_new_tokens)
    return GenerationRequest(rendered.text, rendered.parts, max_new_tokens, STOP_SEQUENCES)


def collect(gen: OpenAIGenerator, request: GenerationRequest) -> tuple[list[str], GenerationError | None]:
    pieces: list[str] = []
    try:
        for piece in gen.stream(request):
            pieces.append(piece)
    except GenerationError as exc:
        return pieces, exc
    return pieces, None


# ---------------------------------------------------------------- the happy path and the payload


def test_streams_a_korean_answer_in_pieces_and_sends_the_rendered_prompt(server: OpenAIStub) -> None:
    with make(server) as gen:
        assert isinstance(gen, Generator) and gen.name == "openai:counselor" and gen.context_window == 2048
        req = request_for(gen)
        pieces = list(gen.stream(req))
    assert "".join(pieces) == ANSWER
    assert len(pieces) > 1  # streamed, not buffered to the end
    (sent,) = server.posts()
    assert sent.path == "/v1/completions"
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"
    body = sent.body
    assert body["prompt"] == req.prompt and body["prompt"].endswith("### 답변\n")
    assert body["stop"] == list(STOP_SEQUENCES)
    assert body["max_tokens"] == 200 and body["model"] == "counselor" and body["stream"] is True
    assert body["temperature"] == 0.0 and "top_p" not in body  # greedy
    assert body["repetition_penalty"] == 1.1


def test_sampling_options_and_extra_body_are_sent(server: OpenAIStub) -> None:
    with make(server, temperature=0.7, top_p=0.8, repetition_penalty=None, extra_body={"seed": 7}) as gen:
        assert "".join(gen.stream(request_for(gen))) == ANSWER
    body = server.posts()[0].body
    assert body["temperature"] == 0.7 and body["top_p"] == 0.8 and body["seed"] == 7
    assert "repetition_penalty" not in body


def test_stop_sequence_split_across_chunks_is_cut_on_the_client(server: OpenAIStub) -> None:
    server.script(Stream(["진로 고민이 많으시군요. ", "정보를 함께 찾아볼게요.\n##", "# 질문\n가짜 질문입니다", " 더 많은 글"]))
    with make(server) as gen:
        pieces = list(gen.stream(request_for(gen)))
        assert "".join(pieces) == "진로 고민이 많으시군요. 정보를 함께 찾아볼게요."
        assert not any("#" in p or "가짜" in p for p in pieces)
        # the EOS marker is a stop too, even when the request does not list it
        server.script(Stream(["좋은 질문이에요. 자료를 보면", " 학력은 대졸이에요.", EOS_MARKER, "다음 글"]))
        req = GenerationRequest(request_for(gen).prompt, PromptParts(question="q"), 50, ("\n### ",))
        assert "".join(gen.stream(req)) == "좋은 질문이에요. 자료를 보면 학력은 대졸이에요."
        assert server.posts()[-1].body["stop"] == ["\n### "]
        # the connection closed at the stop does not break the next request
        assert "".join(gen.stream(request_for(gen))) == ANSWER


def test_consumer_may_stop_early(server: OpenAIStub) -> None:
    server.script(Stream(LONG_CHUNKS * 5, chunk_delay=0.01))
    with make(server) as gen:
        it = gen.stream(request_for(gen))
        first = next(it)
        it.close()
        assert first and LONG_CHUNKS[0].startswith(first)
        assert "".join(gen.stream(request_for(gen))) == ANSWER


def test_concurrent_streams_share_the_pooled_client(server: OpenAIStub) -> None:
    server.default = Stream(chunk_delay=0.02)
    results: list[str] = []
    with make(server, max_connections=4) as gen:
        req = request_for(gen)

        def run() -> None:
            results.append("".join(gen.stream(req)))

        threads = [threading.Thread(target=run) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=10)
    assert results == [ANSWER] * 6


# ---------------------------------------------------------------- retries (only before the first piece)


def test_500_then_success_is_retried(server: OpenAIStub) -> None:
    server.script(Fail(500, "engine restarting"))
    with make(server) as gen:
        assert "".join(gen.stream(request_for(gen))) == ANSWER
    assert len(server.posts()) == 2
    assert server.posts()[0].body == server.posts()[1].body


def test_429_is_retried_after_retry_after(server: OpenAIStub) -> None:
    server.script(Fail(429, "too many requests", headers={"Retry-After": "0.3"}))
    with make(server) as gen:
        start = time.monotonic()
        assert "".join(gen.stream(request_for(gen))) == ANSWER
        assert time.monotonic() - start >= 0.3
    assert len(server.posts()) == 2


def test_always_500_fails_after_the_retries(server: OpenAIStub) -> None:
    server.default = Fail(500, "CUDA out of memory")
    with make(server, max_retries=2) as gen:
        pieces, err = collect(gen, request_for(gen))
    assert pieces == [] and isinstance(err, ModelServerError)
    assert err.status == 500 and err.server_message == "CUDA out of memory"
    assert "HTTP 500" in str(err) and "CUDA out of memory" in str(err) and "3 attempts" in str(err)
    assert len(server.posts()) == 3


def test_client_errors_are_not_retried_and_carry_the_server_message(server: OpenAIStub) -> None:
    msg = "This model's maximum context length is 2048 tokens. However, you requested 2300 tokens."
    server.script(Fail(400, msg))
    with make(server) as gen:
        _, err = collect(gen, request_for(gen))
    assert isinstance(err, ModelServerError) and err.status == 400 and msg in str(err)
    assert len(server.posts()) == 1


def test_unknown_model_and_wrong_key_get_a_hint(server: OpenAIStub) -> None:
    with make(server, model="no-such-adapter") as gen:
        _, err = collect(gen, request_for(gen))
        assert err is not None and "HTTP 404" in str(err) and "does not exist" in str(err)
        assert "--lora-modules no-such-adapter=" in str(err)
        with pytest.raises(GenerationError, match="does not serve 'no-such-adapter'.*counselor"):
            gen.check()
    with make(server, api_key="wrong") as gen:
        _, err = collect(gen, request_for(gen))
        assert err is not None and "HTTP 401" in str(err) and "JINRO_OPENAI_API_KEY" in str(err)
    with make(server) as gen:
        assert gen.check() == ["counselor"]
    assert len(server.posts()) == 2  # neither was retried


def test_disconnect_before_any_text_is_retried(server: OpenAIStub) -> None:
    server.script(Drop(), Stream(cut_after=0), Stream(("안녕하세요",), cut_after=1))  # held back, not yielded
    with make(server, max_retries=3) as gen:
        assert "".join(gen.stream(request_for(gen))) == ANSWER
    assert len(server.posts()) == 4


# ---------------------------------------------------------------- failures that must raise


def test_slow_first_byte_times_out_without_retry(server: OpenAIStub) -> None:
    server.script(Stream(first_byte_delay=3.0))
    with make(server, read_timeout_s=0.3) as gen:
        start = time.monotonic()
        pieces, err = collect(gen, request_for(gen))
        assert time.monotonic() - start < 2.0
    assert pieces == [] and err is not None
    assert "timeout" in str(err) and "0.3s" in str(err)
    assert len(server.posts()) == 1


def test_silence_mid_stream_times_out(server: OpenAIStub) -> None:
    server.script(Stream(LONG_CHUNKS, stall_after=2, stall_s=3.0))
    with make(server, read_timeout_s=0.3) as gen:
        pieces, err = collect(gen, request_for(gen))
    assert pieces and err is not None
    assert "went silent mid-answer" in str(err) and "read timeout" in str(err) and "incomplete" in str(err)
    assert len(server.posts()) == 1


def test_disconnect_mid_stream_raises_instead_of_returning_a_truncated_answer(server: OpenAIStub) -> None:
    server.script(Stream(LONG_CHUNKS, cut_after=2))
    with make(server) as gen:
        pieces, err = collect(gen, request_for(gen))
    assert err is not None and "stopped mid-answer" in str(err) and "incomplete" in str(err)
    got = "".join(pieces)
    assert got and (LONG_CHUNKS[0] + LONG_CHUNKS[1]).startswith(got)
    assert len(server.posts()) == 1  # never retried once text was yielded: nothing is duplicated


def test_stream_that_ends_without_done_is_an_error(server: OpenAIStub) -> None:
    server.script(Stream(LONG_CHUNKS, finish_reason=None, done=False))
    with make(server) as gen:
        pieces, err = collect(gen, request_for(gen))
    assert pieces and err is not None and "without `data: [DONE]`" in str(err)
    assert len(server.posts()) == 1


def test_finish_reason_then_clean_end_without_done_is_accepted(server: OpenAIStub) -> None:
    server.script(Stream(finish_reason="length", done=False))
    with make(server) as gen:
        assert "".join(gen.stream(request_for(gen))) == ANSWER


def test_malformed_chunk_raises(server: OpenAIStub) -> None:
    good = '{"choices": [{"index": 0, "text": "안녕하세요, 진로 상담 선생님이에요. 반가워요!", "finish_reason": null}]}'
    server.script(Stream(raw=[good, '{"choices": [{"index": 0, "text": "잘린']))
    with make(server) as gen:
        pieces, err = collect(gen, request_for(gen))
        assert err is not None and "malformed stream chunk" in str(err) and "not JSON" in str(err)
        assert "".join(pieces) and "안녕하세요".startswith("".join(pieces)[:5])
        server.script(Stream(raw=['{"choices": [{"index": 0, "text": 42}]}']))
        _, err = collect(gen, request_for(gen))
        assert err is not None and "malformed stream chunk" in str(err)
        server.script(Stream(raw=[good, '{"error": {"message": "engine dead", "code": 500}}']))
        _, err = collect(gen, request_for(gen))
        assert err is not None and "engine dead" in str(err)


def test_non_streamed_json_and_html_answers(server: OpenAIStub) -> None:
    server.script(whole_completion("한 번에 온 답변이에요.\n### 질문\n더"))
    with make(server) as gen:
        assert "".join(gen.stream(request_for(gen))) == "한 번에 온 답변이에요."
        server.script(Raw("<html>login</html>", content_type="text/html"))
        _, err = collect(gen, request_for(gen))
        assert err is not None and "text/html" in str(err) and "/v1" in str(err)


def test_server_not_running_gives_a_clear_error() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    with OpenAIGenerator(url, backoff_s=0.01, connect_timeout_s=1.0) as gen:
        start = time.monotonic()
        _, err = collect(gen, request_for(gen))
        assert time.monotonic() - start < 3
        with pytest.raises(GenerationError, match="cannot reach"):
            gen.check()
    assert err is not None
    msg = str(err)
    assert f"cannot reach the model server at {url}" in msg
    assert "is vLLM running?" in msg and "JINRO_GENERATOR" in msg and "3 attempts" in msg


def test_prompt_longer_than_the_window_is_refused_before_any_request(server: OpenAIStub) -> None:
    with make(server, context_window=300) as gen:
        prompt = "가" * 300  # estimated 200 tokens: 100 left for the answer
        req = GenerationRequest(prompt, PromptParts(question="q"), 256, STOP_SEQUENCES)
        assert "".join(gen.stream(req)) == ANSWER
        assert server.posts()[-1].body["max_tokens"] == 100
        with pytest.raises(GenerationError, match="context window is 300"):
            list(gen.stream(GenerationRequest("가" * 600, PromptParts(question="q"), 10, STOP_SEQUENCES)))
    assert len(server.posts()) == 1


# ---------------------------------------------------------------- chat mode


def test_chat_mode_sends_persona_as_system_and_reads_deltas(server: OpenAIStub) -> None:
    with make(server, mode="chat") as gen:
        req = request_for(gen)
        pieces = list(gen.stream(req))
        assert "".join(pieces) == ANSWER
        server.script(whole_completion("챗 답변이에요.", chat=True))
        assert "".join(gen.stream(req)) == "챗 답변이에요."
    sent = server.posts()[0]
    assert sent.path == "/v1/chat/completions" and "prompt" not in sent.body
    system, user = sent.body["messages"]
    assert system == {"role": "system", "content": DEFAULT_PERSONA}
    assert user["role"] == "user" and user["content"].startswith("### 맥락\n")
    assert EOS_MARKER not in user["content"] and "안녕하세요! 무엇이 궁금한가요?\n### 질문" in user["content"]
    assert user["content"].endswith("### 답변\n")
    assert sent.body["stop"] == list(STOP_SEQUENCES) and sent.body["max_tokens"] == 200


def test_split_persona_without_a_matching_persona_keeps_everything_as_user() -> None:
    assert split_persona("다른 안내문\n\n### 맥락\n(제공된 자료 없음)", "페르소나") == (
        None, "다른 안내문\n\n### 맥락\n(제공된 자료 없음)")


# ---------------------------------------------------------------- tokens, URLs, runtime


def test_estimate_is_conservative_and_documented_rates() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("가나다") == 2  # 1 token per 1.5 Hangul characters
    assert estimate_tokens(EOS_MARKER) == 1
    assert estimate_tokens("abcd") == 2 and estimate_tokens("a\nb") == 2
    assert estimate_tokens("안녕하세요 반갑습니다") == 7  # spaces merge into the next word


def test_count_tokens_with_a_local_tokenizer(tmp_path: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator([DEFAULT_PERSONA, "진로 상담 선생님입니다"] * 10, trainers.BpeTrainer(
        vocab_size=400, special_tokens=[EOS_MARKER], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=EOS_MARKER).save_pretrained(tmp_path / "tok")
    gen = OpenAIGenerator("http://127.0.0.1:9/v1", tokenizer=str(tmp_path / "tok"))
    text = f"진로 상담{EOS_MARKER}\n### 질문\n안녕하세요"
    assert gen.count_tokens(text) == len(encode_prompt(gen.tokenizer, text))
    assert gen.count_tokens(EOS_MARKER) == 1
    with pytest.raises(GenerationError, match="no such tokenizer directory"):
        OpenAIGenerator("http://127.0.0.1:9/v1", tokenizer=str(tmp_path / "missing"))


def test_base_url_normalisation_and_runtime_wiring() -> None:
    from assistant.runtime import load_generator

    assert normalize_base_url("http://127.0.0.1:8000") == "http://127.0.0.1:8000/v1"
    assert normalize_base_url("http://127.0.0.1:8000/v1/") == "http://127.0.0.1:8000/v1"
    assert normalize_base_url("https://gw.example/openai/v1") == "https://gw.example/openai/v1"
    with pytest.raises(GenerationError, match="not an http"):
        normalize_base_url("127.0.0.1:8000")
    gen = load_generator("openai:http://127.0.0.1:8000", openai_model="counselor", openai_api_key="k")
    assert isinstance(gen, OpenAIGenerator) and gen.name == "openai:counselor"
    assert gen.base_url == "http://127.0.0.1:8000/v1"
