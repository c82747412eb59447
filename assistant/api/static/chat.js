/* The student chat page (/app): an API key in localStorage, sessions (new, resume, delete), answers streamed
   token by token over SSE, sources with their year, crisis help lines, 👍/👎 feedback. */
"use strict";

(() => {
  const { api, apiJson, readSSE, problemError, sourceText, el, when, showError, shortKey } = Jinro;
  const KEY = "jinro.clientKey", SESSION = "jinro.sessionId";
  const $ = (id) => document.getElementById(id);
  const ui = {
    keyForm: $("key-form"), keyInput: $("key-input"), keySaved: $("key-saved"), keyLabel: $("key-label"),
    keyChange: $("key-change"), sessionPanel: $("session-panel"), select: $("session-select"),
    newSession: $("new-session"), deleteSession: $("delete-session"), error: $("error"), notice: $("notice"),
    log: $("log"), empty: $("empty"), composer: $("composer"), input: $("message-input"), send: $("send"),
  };
  const state = { key: localStorage.getItem(KEY) || "", sid: localStorage.getItem(SESSION) || "", busy: false };

  function notice(text) { ui.notice.textContent = text || ""; }
  function fail(err) { showError(ui.error, err); }
  function clearError() { showError(ui.error, null); }

  function setSession(sid) {
    state.sid = sid || "";
    if (sid) localStorage.setItem(SESSION, sid); else localStorage.removeItem(SESSION);
    ui.deleteSession.disabled = !sid;
  }

  // ------------------------------------------------------------------ key
  function showKey() {
    const has = Boolean(state.key);
    ui.keyForm.hidden = has;
    ui.keySaved.hidden = !has;
    ui.sessionPanel.hidden = !has;
    ui.keyLabel.textContent = has ? `저장된 키: ${shortKey(state.key)}` : "";
  }

  ui.keyForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    const key = ui.keyInput.value.trim();
    if (!key) return;
    clearError();
    try {
      await apiJson(key, "GET", "/v1/sessions?limit=1"); // check the key before keeping it
    } catch (err) { fail(err); ui.keyInput.focus(); return; }
    state.key = key;
    localStorage.setItem(KEY, key);
    ui.keyInput.value = "";
    showKey();
    ui.input.focus();
    notice("키를 저장했어요.");
    await loadSessions();
    if (state.sid) await resume(state.sid);
  });

  ui.keyChange.addEventListener("click", () => {
    state.key = "";
    localStorage.removeItem(KEY);
    setSession("");
    clearLog();
    showKey();
    ui.keyInput.focus();
  });

  // ------------------------------------------------------------------ sessions
  function sessionLabel(s) {
    const topic = s.facts && s.facts.length ? ` · ${s.facts[s.facts.length - 1].name}` : "";
    return `${when(s.last_active_at)} · ${s.turns}번 이야기${topic}`;
  }

  async function loadSessions() {
    let page;
    try { page = await apiJson(state.key, "GET", "/v1/sessions?limit=50"); } catch (err) { fail(err); return; }
    const options = page.items.map((s) => el("option", { value: s.id, selected: s.id === state.sid }, sessionLabel(s)));
    const known = page.items.some((s) => s.id === state.sid);
    ui.select.replaceChildren(el("option", { value: "", selected: !known }, page.items.length
      ? "대화를 골라 이어서 하기" : "저장된 대화 없음"), ...options);
  }

  async function newSession() {
    const s = await apiJson(state.key, "POST", "/v1/sessions", { body: {} });
    setSession(s.id);
    clearLog();
    await loadSessions();
    return s.id;
  }

  async function resume(sid) {
    clearError();
    let page;
    try { page = await apiJson(state.key, "GET", `/v1/sessions/${encodeURIComponent(sid)}/messages?limit=200`); } catch (err) {
      if (err.status === 404) {
        setSession("");
        clearLog();
        notice("이전 대화를 찾을 수 없어요(기간이 지나 지워졌거나 삭제됨). 새 대화를 시작해 주세요.");
        await loadSessions();
        return;
      }
      fail(err);
      return;
    }
    setSession(sid);
    clearLog();
    for (const m of page.items) {
      if (m.role === "student") addStudent(m.text);
      else finishAnswer(addCounselor(), { message_id: m.id, answer: m.text, citations: m.citations, safety: m.safety });
    }
    notice(page.items.length ? "이전 대화를 불러왔어요." : "");
    scrollDown();
  }

  ui.select.addEventListener("change", async () => {
    if (ui.select.value) await resume(ui.select.value);
  });

  ui.newSession.addEventListener("click", async () => {
    clearError();
    try { await newSession(); } catch (err) { fail(err); return; }
    notice("새 대화를 시작했어요.");
    ui.input.focus();
  });

  ui.deleteSession.addEventListener("click", async () => {
    if (!state.sid) return;
    if (!window.confirm("이 대화를 삭제할까요? 주고받은 메시지와 의견이 모두 지워지고 되돌릴 수 없어요.")) return;
    clearError();
    try {
      await api(state.key, "DELETE", `/v1/sessions/${encodeURIComponent(state.sid)}`);
    } catch (err) { if (err.status !== 404) { fail(err); return; } }
    setSession("");
    clearLog();
    await loadSessions();
    notice("대화를 삭제했어요.");
    ui.input.focus();
  });

  // ------------------------------------------------------------------ messages
  function clearLog() { ui.log.replaceChildren(ui.empty); ui.empty.hidden = false; }

  function scrollDown() { window.scrollTo({ top: document.body.scrollHeight }); }

  function addStudent(text) {
    ui.empty.hidden = true;
    ui.log.append(el("article", { class: "msg student" }, el("h3", { class: "sr-only" }, "나"),
      el("p", { class: "text" }, text)));
  }

  function addCounselor() {
    ui.empty.hidden = true;
    const text = el("p", { class: "text" });
    const node = el("article", { class: "msg counselor", "aria-busy": "true" },
      el("h3", { class: "who" }, "상담 도우미"), text);
    ui.log.append(node);
    return { node, text };
  }

  function crisisPanel(lines) {
    return el("section", { class: "crisis-help", "aria-label": "도움을 받을 수 있는 곳" },
      el("h4", {}, "지금 바로 이야기할 수 있는 곳이 있어요"),
      el("p", {}, "혼자 견디지 않아도 괜찮아요. 번호를 누르면 바로 전화할 수 있어요."),
      el("ul", { class: "lines" }, lines.map((h) => el("li", {},
        el("a", { class: "call", href: `tel:${String(h.number).replace(/[^\d]/g, "")}` },
          el("span", { class: "num" }, h.number), el("span", { class: "name" }, h.name)),
        el("span", { class: "desc" }, h.description)))));
  }

  function feedbackButtons(messageId) {
    const status = el("span", { class: "fb-status", role: "status" });
    const group = el("div", { class: "feedback", role: "group", "aria-label": "이 답변이 도움이 됐나요?" });
    const send = async (rating, button) => {
      try {
        await apiJson(state.key, "POST", `/v1/messages/${messageId}/feedback`, { body: { rating } });
      } catch (err) { fail(err); return; }
      for (const b of group.querySelectorAll("button")) { b.disabled = true; b.setAttribute("aria-pressed", String(b === button)); }
      status.textContent = rating === "up" ? "고마워요! 의견을 보냈어요."
        : "의견 고마워요. 상담 선생님이 이 답변을 다시 살펴볼게요.";
    };
    const up = el("button", { type: "button", class: "fb up", "aria-pressed": "false", title: "도움이 됐어요",
      onclick: () => send("up", up) }, "👍", el("span", { class: "sr-only" }, " 도움이 됐어요"));
    const down = el("button", { type: "button", class: "fb down", "aria-pressed": "false", title: "도움이 안 됐어요",
      onclick: () => send("down", down) }, "👎", el("span", { class: "sr-only" }, " 도움이 안 됐어요"));
    group.append(up, down, status);
    return group;
  }

  /** The final answer: authoritative text, sources, crisis help lines, feedback buttons. */
  function finishAnswer({ node, text }, result) {
    node.removeAttribute("aria-busy");
    node.dataset.messageId = result.message_id;
    text.textContent = result.answer;
    const safety = result.safety || {};
    if ((safety.crisis || safety.level === "concern") && safety.help_lines && safety.help_lines.length) {
      if (safety.crisis) node.classList.add("has-crisis");
      node.append(crisisPanel(safety.help_lines));
    }
    const sources = result.citations || [];
    if (sources.length) {
      node.append(el("ul", { class: "sources", "aria-label": "출처" },
        sources.map((c) => el("li", {}, `출처: ${sourceText(c)}`))));
    }
    if (result.message_id) node.append(feedbackButtons(result.message_id));
  }

  function failAnswer({ node, text }, err) {
    node.removeAttribute("aria-busy");
    node.classList.add("failed");
    if (!text.textContent) text.textContent = "답변을 받지 못했어요.";
    fail(err);
  }

  async function send(message) {
    state.busy = true;
    ui.send.disabled = true;
    clearError();
    notice("답변을 쓰는 중이에요…");
    try {
      const sid = state.sid || await newSession();
      addStudent(message);
      const answer = addCounselor();
      scrollDown();
      let response;
      try {
        response = await api(state.key, "POST", `/v1/sessions/${encodeURIComponent(sid)}/messages`,
          { body: { text: message }, accept: "text/event-stream" });
      } catch (err) {
        failAnswer(answer, err);
        if (err.status === 404) { setSession(""); await loadSessions(); }
        return;
      }
      let done = false;
      for await (const ev of readSSE(response)) {
        if (ev.event === "token") {
          answer.text.append(JSON.parse(ev.data).text);
          scrollDown();
        } else if (ev.event === "final") {
          finishAnswer(answer, JSON.parse(ev.data));
          done = true;
        } else if (ev.event === "error") {
          const problem = JSON.parse(ev.data);
          failAnswer(answer, problemError(problem.status || 500, problem));
          done = true;
        }
      }
      if (!done) failAnswer(answer, new Jinro.ApiError(0, "the answer stream ended early — send the message again"));
      scrollDown();
      loadSessions();
    } catch (err) {
      fail(err);
    } finally {
      state.busy = false;
      ui.send.disabled = false;
      notice("");
    }
  }

  ui.composer.addEventListener("submit", (e) => {
    e.preventDefault();
    const message = ui.input.value.trim();
    if (!message || state.busy) return;
    if (!state.key) { fail(new Error("먼저 API 키를 저장해 주세요.")); ui.keyInput.focus(); return; }
    ui.input.value = "";
    send(message);
  });

  ui.input.addEventListener("keydown", (e) => {
    // Enter sends, Shift+Enter is a new line; never while a Korean IME is still composing a syllable
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
      e.preventDefault();
      ui.composer.requestSubmit();
    }
  });

  // ------------------------------------------------------------------ start
  setSession(state.sid);
  showKey();
  if (state.key) {
    loadSessions().then(() => (state.sid ? resume(state.sid) : null));
    ui.input.focus();
  } else {
    ui.keyInput.focus();
  }
})();
