/* The counselor review console (/console): sign in with a reviewer key (kept for this tab only), the review queue
   (crisis first), one answer in its conversation with the facts and passages it used, approve / edit / reject
   with a note, and the approved data as JSONL files (fetched with the key, offered through a Blob link). */
"use strict";

(() => {
  const { api, apiJson, sourceText, el, when, showError, shortKey } = Jinro;
  const KEY = "jinro.reviewerKey";
  const REASONS = { crisis: "위기", concern: "마음 살피기", negative_feedback: "부정 피드백", fact_guard: "사실 점검", low_confidence: "낮은 확신",
    sample: "무작위 표본" };
  const STATUSES = { pending: "검토 대기", approved: "승인됨", edited: "수정됨", rejected: "반려됨" };
  const SLOTS = { school: "학교/학년", interests: "관심 분야", strengths: "강점", subjects: "좋아하는 과목",
    occupations: "생각 중인 직업", constraints: "고려할 점" };
  const FACT_LABELS = { education: "학력", certificates: "관련 자격증", related: "관련 직업", survey_year: "조사 연도" };
  const $ = (id) => document.getElementById(id);
  const ui = {
    signIn: $("sign-in"), signInForm: $("sign-in-form"), keyInput: $("reviewer-key"), signOut: $("sign-out"),
    error: $("error"), notice: $("notice"), workspace: $("workspace"), filter: $("status-filter"), refresh: $("refresh"),
    exportSft: $("export-sft"), exportPrefs: $("export-preferences"), exports: $("exports"), queue: $("queue"),
    count: $("queue-count"), title: $("detail-title"), body: $("detail-body"),
  };
  const state = { key: sessionStorage.getItem(KEY) || "", items: [], current: null, ticket: 0 };

  const notice = (text) => { ui.notice.textContent = text || ""; };
  const fail = (err) => showError(ui.error, err);
  const clearError = () => showError(ui.error, null);
  const badge = (reason) => el("span", { class: `badge ${reason}` }, REASONS[reason] || reason);

  // ------------------------------------------------------------------ sign in
  function showSignedIn() {
    const on = Boolean(state.key);
    ui.signIn.hidden = on;
    ui.workspace.hidden = !on;
    ui.signOut.hidden = !on;
    ui.signOut.title = on ? `키 ${shortKey(state.key)}` : "";
  }

  ui.signInForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    const key = ui.keyInput.value.trim();
    if (!key) return;
    clearError();
    try { await apiJson(key, "GET", "/v1/review/queue?limit=1"); } catch (err) { fail(err); ui.keyInput.focus(); return; }
    state.key = key;
    sessionStorage.setItem(KEY, key);
    ui.keyInput.value = "";
    showSignedIn();
    await loadQueue();
    ui.queue.focus();
  });

  ui.signOut.addEventListener("click", () => {
    state.key = "";
    sessionStorage.removeItem(KEY);
    ui.queue.replaceChildren();
    clearDetail();
    showSignedIn();
    notice("로그아웃했어요.");
    ui.keyInput.focus();
  });

  // ------------------------------------------------------------------ queue
  async function loadQueue(selectId) {
    clearError();
    let page;
    try {
      page = await apiJson(state.key, "GET", `/v1/review/queue?limit=200&status=${ui.filter.value}`);
    } catch (err) { fail(err); return; }
    state.items = page.items;
    ui.count.textContent = `(${page.total}건)`;
    ui.queue.replaceChildren(...page.items.map((item) => el("li", {},
      el("button", { type: "button", "data-id": item.id, "aria-current": String(item.id === selectId),
        onclick: () => select(item.id) },
        badge(item.reason),
        el("span", { class: "q" }, item.question ? `학생: ${item.question}` : "(질문 없음)"),
        el("span", { class: "meta" }, `#${item.id} · ${when(item.created_at)}`)))));
    if (!page.items.length) {
      ui.queue.append(el("li", { class: "muted" }, ui.filter.value === "pending" ? "검토할 답변이 없어요." : "해당 항목이 없어요."));
    }
  }

  ui.filter.addEventListener("change", async () => { clearDetail(); await loadQueue(); });
  ui.refresh.addEventListener("click", async () => {
    await loadQueue(state.current);
    notice("목록을 새로 불러왔어요.");
  });

  function clearDetail() {
    state.current = null;
    ui.title.textContent = "검토할 답변을 고르세요";
    ui.body.replaceChildren();
  }

  // ------------------------------------------------------------------ detail
  function messageView(m, reviewedId) {
    const reviewed = m.id === reviewedId;
    const node = el("article", { class: `msg ${m.role}${reviewed ? " reviewed" : ""}` },
      el("p", { class: reviewed ? "tag" : "who" }, m.role === "student" ? "학생" : reviewed ? "검토 대상 답변" : "상담 도우미"),
      el("p", { class: "text" }, m.text));
    if (m.role === "counselor" && m.citations && m.citations.length) {
      node.append(el("ul", { class: "sources" }, m.citations.map((c) => el("li", {}, `출처: ${sourceText(c)}`))));
    }
    if (m.safety && m.safety.crisis) node.append(el("p", {}, badge("crisis"), " 위기 신호가 감지된 대화예요."));
    return node;
  }

  function factView(f) {
    const rows = [];
    for (const [key, label] of Object.entries(FACT_LABELS)) {
      const v = f[key];
      if (v === null || v === undefined || (Array.isArray(v) && !v.length) || v === "") continue;
      rows.push(el("dt", {}, label), el("dd", {}, Array.isArray(v) ? v.join(", ") : String(v)));
    }
    return el("div", { class: "fact" }, el("h4", {}, f.name || f.external_id || "(이름 없음)"),
      el("dl", {}, rows));
  }

  function passageView(p) {
    const score = typeof p.score === "number" ? ` · 점수 ${p.score.toFixed(2)}` : "";
    return el("details", { class: "passage" },
      el("summary", {}, `${sourceText({ external_id: p.source_id, title: p.title, as_of: p.as_of })}${score}`),
      el("p", {}, p.text || ""));
  }

  function section(title, ...children) {
    return el("section", { class: "detail-section" }, el("h3", {}, title), ...children);
  }

  function decisionForm(d) {
    const note = el("textarea", { id: "review-note", rows: 2, maxlength: 2000, placeholder: "판단 이유를 적어 주세요 (선택)" },
      d.review.note || "");
    const editText = el("textarea", { id: "edit-text", rows: 8, maxlength: 8000 }, d.review.corrected_text || d.answer.text);
    const editArea = el("div", { id: "edit-area", class: "stack", hidden: true },
      el("label", { for: "edit-text" }, "고친 답변"), editText,
      el("div", { class: "actions" },
        el("button", { type: "button", id: "save-edit", onclick: () => decide(d, "edit", { text: editText.value.trim(), note: note.value }) },
          "수정본 저장"),
        el("button", { type: "button", class: "secondary", onclick: () => toggleEdit(false) }, "취소")));
    const editToggle = el("button", { type: "button", id: "edit", class: "secondary", "aria-expanded": "false",
      "aria-controls": "edit-area", onclick: () => toggleEdit(editArea.hidden) }, "수정");
    function toggleEdit(open) {
      editArea.hidden = !open;
      editToggle.setAttribute("aria-expanded", String(open));
      if (open) editText.focus(); else editToggle.focus();
    }
    const current = d.review.status === "pending" ? null
      : el("p", { class: "muted" }, `현재 상태: ${STATUSES[d.review.status] || d.review.status}`
        + (d.review.reviewer ? ` (${d.review.reviewer}, ${when(d.review.decided_at)})` : ""));
    return section("판단", current, el("div", { class: "decision" },
      el("label", { for: "review-note" }, "메모"), note,
      el("div", { class: "actions" },
        el("button", { type: "button", id: "approve", onclick: () => decide(d, "approve", { note: note.value }) }, "승인"),
        editToggle,
        el("button", { type: "button", id: "reject", class: "danger", onclick: () => decide(d, "reject", { note: note.value }) }, "반려")),
      editArea));
  }

  async function select(id) {
    clearError();
    const ticket = ++state.ticket; // a later selection wins over one still loading
    let d;
    try { d = await apiJson(state.key, "GET", `/v1/review/${id}`); } catch (err) { fail(err); return; }
    if (ticket !== state.ticket) return;
    state.current = id;
    for (const b of ui.queue.querySelectorAll("button[data-id]")) b.setAttribute("aria-current", String(Number(b.dataset.id) === id));
    ui.title.replaceChildren(`검토 #${d.review.id} `, badge(d.review.reason));
    const profile = Object.entries(d.session.profile || {}).map(([k, v]) => `${SLOTS[k] || k}: ${v.join(", ")}`).join(" · ");
    const feedback = d.feedback.map((f) => el("li", {}, `${f.rating === "up" ? "👍" : "👎"} ${when(f.created_at)}`
      + (f.comment ? ` — ${f.comment}` : "")));
    ui.body.replaceChildren(...[
      el("p", { class: "muted" }, `대화 ${d.session.id.slice(0, 8)}… · ${d.session.turns}번 이야기`
        + (d.session.urgent ? " · 상담 선생님 연락 필요" : "") + (profile ? ` · ${profile}` : "")),
      d.session.summary ? el("p", { class: "muted" }, `요약: ${d.session.summary}`) : null,
      section("대화", el("div", { class: "conversation" }, d.conversation.map((m) => messageView(m, d.answer.id)))),
      feedback.length ? section("학생 의견", el("ul", {}, feedback)) : null,
      section("사용한 직업 정보", d.facts_used.length ? d.facts_used.map(factView) : el("p", { class: "muted" }, "없음")),
      section("사용한 문서 구절", d.passages_used.length ? d.passages_used.map(passageView) : el("p", { class: "muted" }, "없음")),
      decisionForm(d)].filter(Boolean));
    ui.title.focus();
  }

  async function decide(d, action, body) {
    if (action === "edit" && !body.text) { fail(new Error("고친 답변이 비어 있어요.")); return; }
    clearError();
    try {
      await apiJson(state.key, "POST", `/v1/review/${d.review.id}/${action}`, { body });
    } catch (err) { fail(err); return; }
    const done = { approve: "승인했어요", edit: "수정본을 저장했어요", reject: "반려했어요" }[action];
    const index = state.items.findIndex((i) => i.id === d.review.id);
    await loadQueue();
    const next = state.items[Math.min(Math.max(index, 0), state.items.length - 1)];
    if (next && ui.filter.value === "pending") await select(next.id); else { clearDetail(); ui.queue.focus(); }
    notice(`검토 #${d.review.id}: ${done}.`);
  }

  // ------------------------------------------------------------------ exports
  async function download(path, fallbackName, label) {
    clearError();
    let response, blob;
    try {
      response = await api(state.key, "GET", path, { accept: "application/x-ndjson" });
      blob = await response.blob();
    } catch (err) { fail(err); return; }
    const match = /filename="?([^";]+)"?/.exec(response.headers.get("Content-Disposition") || "");
    const name = match ? match[1] : fallbackName;
    const lines = (await blob.text()).split("\n").filter((l) => l.trim()).length;
    const old = ui.exports.querySelector(`a[download="${name}"]`);
    if (old) { URL.revokeObjectURL(old.href); old.remove(); }
    const link = el("a", { href: URL.createObjectURL(blob), download: name }, `${label}: ${name} 저장 (${lines}건)`);
    ui.exports.append(link);
    link.click();
    notice(`${label} ${lines}건을 내려받았어요.`);
  }

  ui.exportSft.addEventListener("click", () => download("/v1/review/export/sft", "jinro-sft.jsonl", "SFT 데이터"));
  ui.exportPrefs.addEventListener("click", () => download("/v1/review/export/preferences", "jinro-preferences.jsonl",
    "선호 쌍"));

  // ------------------------------------------------------------------ start
  showSignedIn();
  if (state.key) loadQueue(); else ui.keyInput.focus();
})();
