"""The two browser pages, driven in headless Chromium (Playwright, sync API) against a real `jinro serve` process on
127.0.0.1 with a small real knowledge DB (tests.support.knowledge_base): the student chat (/app) and the review console (/console).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from tests.support.api_client import bearer, new_key
from tests.support.knowledge_base import KB, clone_kb, template_kb
from tests.support.processes import Server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
TIMEOUT_MS = 20_000


def _why_no_browser() -> str | None:
    if not CHROMIUM.exists():
        return f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        return f"the Python playwright package is missing ({exc}; pip install -e .[dev])"
    return None


NO_BROWSER = _why_no_browser()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(NO_BROWSER is not None,
                       reason=f"!!!!! WEB UI TESTS SKIPPED — THE PAGES WERE NOT TESTED: {NO_BROWSER} !!!!!"),
]


# ------------------------------------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def kb(api_embedder, tmp_path_factory) -> KB:
    return clone_kb(template_kb(tmp_path_factory.getbasetemp(), api_embedder), tmp_path_factory.mktemp("web-kb"))


@pytest.fixture(scope="module")
def keys(kb: KB) -> dict[str, str]:
    return {"client": new_key(kb.url, "client", "web student"), "reviewer": new_key(kb.url, "reviewer", "web counselor")}


@pytest.fixture(scope="module")
def server(kb: KB, tmp_path_factory) -> Iterator[Server]:
    s = Server(kb, tmp_path_factory.mktemp("web-logs")).start()
    try:
        yield s.wait_ready(120)
    finally:
        s.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


class Pages:
    """New browser contexts on the server; JS errors on any page fail the test."""

    def __init__(self, browser: Any, base: str) -> None:
        self.browser, self.base, self.contexts, self.errors = browser, base, [], []

    def open(self, path: str, viewport: dict = DESKTOP) -> Any:
        context = self.browser.new_context(viewport=viewport, locale="ko-KR", accept_downloads=True)
        context.set_default_timeout(TIMEOUT_MS)
        self.contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.goto(self.base + path)
        return page

    def close(self) -> None:
        for c in self.contexts:
            c.close()


@pytest.fixture
def pages(browser, server: Server) -> Iterator[Pages]:
    p = Pages(browser, server.url)
    yield p
    p.close()
    assert not p.errors, f"JavaScript errors on the page: {p.errors}"


# ------------------------------------------------------------------------------------------------ helpers

def sign_in_chat(page: Any, key: str) -> None:
    page.fill("#key-input", key)
    page.press("#key-input", "Enter")
    page.wait_for_selector("#key-saved", state="visible")
    expect(page.locator("#key-form")).to_be_hidden()


def count_streamed_pieces(page: Any) -> None:
    """From now on, count the text pieces appended to answers while they stream (the final sets the text once)."""
    page.evaluate("""() => { window.__pieces = 0;
      new MutationObserver(ms => ms.forEach(m => { if (m.target.closest && m.target.closest('.msg.counselor .text'))
        window.__pieces += [...m.addedNodes].filter(n => n.nodeType === Node.TEXT_NODE).length; }))
      .observe(document.getElementById('log'), {subtree: true, childList: true}); }""")


def send(page: Any, text: str) -> Any:
    """Send a message with the button; returns the finished answer's element."""
    before = page.locator(".msg.counselor").count()
    page.fill("#message-input", text)
    page.click("#send")
    answer = page.locator(".msg.counselor").nth(before)
    answer.locator(".feedback").wait_for()  # the final event arrived
    assert page.locator("#error").is_hidden(), page.locator("#error").inner_text()
    return answer


def no_horizontal_scroll(page: Any) -> None:
    widths = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"the page scrolls sideways: content {widths[0]} px in a {widths[1]} px viewport"


def review_button(page: Any, question: str) -> Any:
    return page.locator("#queue button", has_text=question).first


def expect(target: Any) -> Any:
    """Playwright's retrying assertions (imported here: the module must load without playwright, to skip)."""
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


def read_jsonl(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


# ------------------------------------------------------------------------------------------------ student chat

def test_chat_conversation_memory_sources_crisis_feedback_delete(pages: Pages, keys: dict, server: Server) -> None:
    page = pages.open("/app")
    assert page.title().startswith("진로 상담")
    page.fill("#key-input", "jnr_" + "x" * 43)  # a wrong key: the problem's detail is shown, nothing is stored
    page.press("#key-input", "Enter")
    page.wait_for_selector("#error:not([hidden])")
    assert "API 키" in page.inner_text("#error") and "unknown or revoked" in page.inner_text("#error")
    sign_in_chat(page, keys["client"])
    assert page.evaluate("() => localStorage.getItem('jinro.clientKey')") == keys["client"]

    count_streamed_pieces(page)
    first = send(page, "간호사가 되고 싶어요")
    assert page.evaluate("() => window.__pieces") > 3  # streamed token by token, then the final text
    assert "간호사" in first.locator(".text").inner_text()
    assert re.fullmatch(r"출처: 간호사 \(한국직업사전, \d{4}년\)", first.locator(".sources li").first.inner_text())
    sid = page.evaluate("() => localStorage.getItem('jinro.sessionId')")
    assert sid

    second = send(page, "그 직업은 자격증이 필요해?")  # needs the session's memory: 그 직업 = 간호사
    assert "간호사" in second.locator(".text").inner_text() and "자격증" in second.locator(".text").inner_text()
    assert "출처: 간호사" in second.locator(".sources").inner_text()

    first.get_by_role("button", name="도움이 됐어요").click()
    second.get_by_role("button", name="도움이 안 됐어요").click()
    expect(second.locator(".fb-status")).to_contain_text("상담 선생님")
    expect(second.get_by_role("button", name="도움이 안 됐어요")).to_have_attribute("aria-pressed", "true")
    expect(first.get_by_role("button", name="도움이 안 됐어요")).to_be_disabled()

    crisis = send(page, "요즘 너무 힘들어서 죽고 싶어")
    panel = crisis.locator(".crisis-help")
    assert panel.is_visible() and "지금 바로 이야기할 수 있는 곳" in panel.inner_text()
    for number in ("109", "1388"):
        link = panel.locator(f'a[href="tel:{number}"]')
        assert link.is_visible() and number in link.inner_text()
    assert not crisis.locator(".sources").count()

    page.reload()  # the session id in localStorage: the conversation comes back
    page.locator(".msg.counselor").nth(2).locator(".crisis-help").wait_for()
    assert page.locator(".msg.student").count() == 3 and page.locator(".msg.counselor").count() == 3
    assert page.locator("#session-select").input_value() == sid

    page.click("#new-session")  # a second conversation, erased with 대화 삭제 after a confirm
    page.wait_for_function("sid => localStorage.getItem('jinro.sessionId') && localStorage.getItem('jinro.sessionId') !== sid",
                           arg=sid)
    send(page, "웹디자이너는 어떤 일을 해요?")
    other = page.evaluate("() => localStorage.getItem('jinro.sessionId')")
    dialogs: list[str] = []
    page.once("dialog", lambda d: (dialogs.append(d.message), d.accept()))
    page.click("#delete-session")
    page.wait_for_selector("#notice:has-text('대화를 삭제했어요')")
    assert dialogs and "삭제" in dialogs[0]
    assert page.locator(".msg").count() == 0 and page.evaluate("() => localStorage.getItem('jinro.sessionId')") is None
    with httpx.Client(base_url=server.url, headers=bearer(keys["client"]), timeout=10) as http:
        assert http.get(f"/v1/sessions/{other}").status_code == 404
        assert http.get(f"/v1/sessions/{sid}").json()["turns"] == 3  # the first conversation is kept
    assert page.locator(f'#session-select option[value="{sid}"]').count() == 1


def test_keyboard_only_send_on_a_phone(pages: Pages, keys: dict) -> None:
    page = pages.open("/app", PHONE)
    assert page.evaluate("() => document.activeElement.id") == "key-input"  # focus starts where it is needed
    page.keyboard.type(keys["client"])
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.activeElement.id === 'message-input'")  # focus moves on by itself
    page.keyboard.type("간호사는 무슨 일을 해요?")
    page.keyboard.press("Enter")
    answer = page.locator(".msg.counselor").first
    answer.locator(".feedback").wait_for()
    assert "간호사" in answer.locator(".text").inner_text()
    assert page.input_value("#message-input") == ""
    page.keyboard.press("Shift+Enter")  # a new line, not a send
    assert page.input_value("#message-input") == "\n" and page.locator(".msg.counselor").count() == 1
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.id") == "send"
    outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"  # the keyboard focus is visible
    labels = page.evaluate("() => [...document.querySelectorAll('input, select, textarea')].every(e => e.labels.length)")
    assert labels
    no_horizontal_scroll(page)


# ------------------------------------------------------------------------------------------------ review console

def test_console_queue_decisions_and_exports(pages: Pages, keys: dict, server: Server) -> None:
    with httpx.Client(base_url=server.url, headers=bearer(keys["client"]), timeout=30) as http:
        sid = http.post("/v1/sessions", json={}).json()["id"]
        turns = {}
        for text in ("수의사가 되고 싶어요", "웹디자이너가 되려면 어떤 공부를 해야 해요?", "요즘 너무 힘들어서 죽고 싶어"):
            turns[text] = http.post(f"/v1/sessions/{sid}/messages", json={"text": text}).json()
        for text in ("수의사가 되고 싶어요", "웹디자이너가 되려면 어떤 공부를 해야 해요?"):
            http.post(f"/v1/messages/{turns[text]['message_id']}/feedback", json={"rating": "down"})

    page = pages.open("/console")
    page.fill("#reviewer-key", keys["client"])  # a client key is refused with the problem's detail
    page.press("#reviewer-key", "Enter")
    page.wait_for_selector("#error:not([hidden])")
    assert "reviewer" in page.inner_text("#error")
    page.fill("#reviewer-key", keys["reviewer"])
    page.press("#reviewer-key", "Enter")
    page.locator("#queue button").first.wait_for()
    expect(page.locator("#sign-in")).to_be_hidden()
    first = page.locator("#queue button").first
    assert first.locator(".badge").inner_text() == "위기"  # crisis first
    first.click()
    page.wait_for_selector("#detail-body .conversation")
    assert "죽고 싶어" in page.inner_text("#detail-body .conversation")

    vet = review_button(page, "수의사가 되고 싶어요")
    vet_id = int(vet.get_attribute("data-id"))
    assert vet.locator(".badge").inner_text() == "부정 피드백"
    vet.click()
    page.wait_for_selector("#detail-title:has-text('#%d')" % vet_id)
    assert "수의사(일반)" in page.inner_text("#detail-body .fact")  # the facts the answer used
    assert page.locator("#detail-body details.passage").count() >= 1  # and the passages
    page.fill("#review-note", "정확해요")
    page.click("#approve")
    page.wait_for_selector(f"#notice:has-text('검토 #{vet_id}: 승인했어요')")

    web = review_button(page, "웹디자이너가 되려면")
    web_id = int(web.get_attribute("data-id"))
    web.click()
    page.wait_for_selector("#detail-title:has-text('#%d')" % web_id)
    page.click("#edit")
    original = turns["웹디자이너가 되려면 어떤 공부를 해야 해요?"]["answer"]
    assert page.input_value("#edit-text") == original  # prefilled with the answer
    corrected = "웹디자이너가 되려면 시각디자인이나 웹 기술을 공부하고, 작업을 모은 포트폴리오를 준비하면 좋아요."
    page.fill("#edit-text", corrected)
    page.click("#save-edit")
    page.wait_for_selector(f"#notice:has-text('검토 #{web_id}: 수정본을 저장했어요')")
    assert review_button(page, "웹디자이너가 되려면").count() == 0  # decided: no longer pending

    with page.expect_download() as download:
        page.click("#export-sft")
    assert download.value.suggested_filename == "jinro-sft.jsonl"
    rows = {r["review_id"]: r for r in read_jsonl(download.value.path())}
    assert rows[vet_id]["source"] == "approved" and rows[vet_id]["session_id"] == sid
    assert rows[web_id]["source"] == "edited" and rows[web_id]["messages"][-1]["content"] == corrected
    with page.expect_download() as download:
        page.click("#export-preferences")
    pair = next(p for p in read_jsonl(download.value.path()) if p["review_id"] == web_id)
    assert pair["chosen"] == corrected and pair["rejected"] == original
    assert page.locator("#exports a[download='jinro-sft.jsonl']").is_visible()

    page.select_option("#status-filter", "edited")
    review_button(page, "웹디자이너가 되려면").wait_for()

    phone = pages.open("/console", PHONE)  # the same tab's key is not shared with a new context: sign in again
    phone.fill("#reviewer-key", keys["reviewer"])
    phone.press("#reviewer-key", "Enter")
    phone.locator("#queue button").first.click()
    phone.wait_for_selector("#detail-body .conversation")
    no_horizontal_scroll(phone)
