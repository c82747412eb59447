"""Screenshots of the web pages for docs/web.md: python -m docs.screenshots.make (from the repository root)

Builds the tests' small knowledge DB (tests/support/knowledge_base.py) in a temporary folder, starts a real `jinro serve`,
drives /app and /console in headless Chromium (/usr/bin/chromium, Playwright) and writes chat-desktop.png,
chat-phone.png, console-desktop.png and console-phone.png next to this file. Needs a Korean font on the machine
(Debian: apt-get install fonts-nanum fonts-noto-color-emoji), or the Hangul comes out as empty boxes.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.support.api_client import new_key
from tests.support.embedders import disk_embedder
from tests.support.knowledge_base import api_lines, build_kb
from tests.support.processes import Server

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]
DESKTOP, PHONE = {"width": 1280, "height": 900}, {"width": 390, "height": 844}


def send(page, text: str) -> None:
    before = page.locator(".msg.counselor").count()
    page.fill("#message-input", text)
    page.press("#message-input", "Enter")
    page.locator(".msg.counselor").nth(before).locator(".feedback").wait_for()


def main() -> None:
    fonts = subprocess.run(["fc-list", ":lang=ko"], capture_output=True, text=True).stdout.strip()
    if not fonts:
        print("WARNING: no Korean font found (fc-list :lang=ko) — install fonts-nanum first", file=sys.stderr)
    from ingest.embedding import CachedEmbedder, UniversalSentenceEncoder
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="jinro-shots-"))
    try:
        cache = ROOT / ".pytest_cache" / "d" / "jinro-api-vectors"  # the tests' vectors, when they ran here
        embedder = disk_embedder(CachedEmbedder(UniversalSentenceEncoder()), cache if cache.exists() else tmp / "vectors")
        kb = build_kb(tmp / "kb", embedder, api_lines())
        client, reviewer = new_key(kb.url, "client", "screenshots"), new_key(kb.url, "reviewer", "screenshots")
        server = Server(kb, tmp / "logs").start()
        try:
            server.wait_ready(120)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS)
                shoot(browser, server.url, client, reviewer)
                browser.close()
        finally:
            server.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def shoot(browser, base: str, client: str, reviewer: str) -> None:
    page = browser.new_context(viewport=DESKTOP, locale="ko-KR").new_page()
    page.goto(base + "/app")
    page.fill("#key-input", client)
    page.press("#key-input", "Enter")
    page.wait_for_selector("#key-saved", state="visible")
    send(page, "간호사가 되고 싶어요")
    send(page, "그 직업은 자격증이 필요해?")
    page.locator(".msg.counselor").nth(0).get_by_role("button", name="도움이 됐어요").click()
    page.locator(".msg.counselor").nth(1).get_by_role("button", name="도움이 안 됐어요").click()
    send(page, "요즘 너무 힘들어서 죽고 싶어")
    page.wait_for_timeout(300)
    page.screenshot(path=HERE / "chat-desktop.png", full_page=True)

    phone = browser.new_context(viewport=PHONE, locale="ko-KR").new_page()
    phone.goto(base + "/app")
    phone.evaluate("([k, s]) => { localStorage.setItem('jinro.clientKey', k); localStorage.setItem('jinro.sessionId', s); }",
                   [client, page.evaluate("() => localStorage.getItem('jinro.sessionId')")])
    phone.reload()
    crisis = phone.locator(".msg.counselor").nth(2).locator(".crisis-help")
    crisis.wait_for()
    crisis.scroll_into_view_if_needed()
    phone.evaluate("() => window.scrollBy(0, 140)")
    phone.wait_for_timeout(300)
    phone.screenshot(path=HERE / "chat-phone.png")

    console = browser.new_context(viewport=DESKTOP, locale="ko-KR").new_page()
    console.goto(base + "/console")
    console.fill("#reviewer-key", reviewer)
    console.press("#reviewer-key", "Enter")
    console.locator("#queue button", has_text="자격증").first.click()
    console.wait_for_selector("#detail-body details.passage")
    console.locator("#detail-body details.passage").first.evaluate("d => d.open = true")
    console.click("#edit")
    console.evaluate("() => window.scrollTo(0, 0)")
    console.wait_for_timeout(300)
    console.screenshot(path=HERE / "console-desktop.png", full_page=True)

    mobile = browser.new_context(viewport=PHONE, locale="ko-KR").new_page()
    mobile.goto(base + "/console")
    mobile.fill("#reviewer-key", reviewer)
    mobile.press("#reviewer-key", "Enter")
    mobile.locator("#queue button").first.click()
    mobile.wait_for_selector("#detail-body .conversation")
    mobile.evaluate("() => window.scrollTo(0, 0)")
    mobile.wait_for_timeout(300)
    mobile.screenshot(path=HERE / "console-phone.png")
    print("wrote", ", ".join(p.name for p in sorted(HERE.glob("*.png"))))


if __name__ == "__main__":
    main()
