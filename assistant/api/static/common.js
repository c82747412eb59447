/* Shared helpers of the jinro pages: API calls with the key, problem+json errors, a server-sent-events reader
   over fetch's ReadableStream, DOM building (text only: nothing from the server is ever parsed as HTML). */
"use strict";

const Jinro = (() => {
  const STATUS_TEXT = {
    401: "API 키가 맞지 않거나 더 이상 쓸 수 없는 키예요. 키를 확인해 주세요.",
    403: "이 키로는 할 수 없는 작업이에요.",
    404: "찾을 수 없어요. 이미 삭제되었거나 만료되었을 수 있어요.",
    409: "같은 대화에 다른 메시지가 동시에 저장됐어요. 다시 보내 주세요.",
    413: "내용이 너무 길어요. 조금 줄여서 보내 주세요.",
    422: "요청을 처리할 수 없어요.",
    429: "요청이 너무 많아요. 잠시 후 다시 시도해 주세요.",
  };

  /** An API failure: HTTP status, a Korean summary, and the server's problem `detail`. */
  class ApiError extends Error {
    constructor(status, detail, problem) {
      const summary = STATUS_TEXT[status] || (status >= 500 ? "서버에 문제가 생겼어요. 잠시 후 다시 시도해 주세요."
        : status === 0 ? "서버에 연결할 수 없어요. 연결을 확인하고 다시 시도해 주세요." : "요청이 실패했어요.");
      super(summary);
      this.status = status;
      this.detail = detail || "";
      this.problem = problem || null;
    }
  }

  function problemError(status, body) {
    const detail = body && typeof body === "object" ? body.detail || body.title || "" : String(body || "");
    return new ApiError(status, detail, body && typeof body === "object" ? body : null);
  }

  async function errorOf(response) {
    let body = null;
    try {
      const text = await response.text();
      try { body = JSON.parse(text); } catch { body = text.slice(0, 300); }
    } catch { /* no body */ }
    return problemError(response.status, body);
  }

  /** fetch with `Authorization: Bearer key`; JSON body in, Response out; throws ApiError unless 2xx. */
  async function api(key, method, path, { body, accept } = {}) {
    const headers = { Authorization: `Bearer ${key}`, Accept: accept || "application/json" };
    const init = { method, headers, cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (err) {
      throw new ApiError(0, String(err && err.message ? err.message : err));
    }
    if (!response.ok) throw await errorOf(response);
    return response;
  }

  async function apiJson(key, method, path, options) {
    const response = await api(key, method, path, options);
    return response.status === 204 ? null : response.json();
  }

  /** Server-sent events of a fetch Response, read as the WHATWG spec says: `event:`/`data:` fields, comments
      (`:`), dispatch on a blank line; CR, LF and CRLF line ends (also split across chunks). */
  async function* readSSE(response) {
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "", name = "", data = [];
    function* lines(text) {
      for (const line of text) {
        if (line === "") {
          if (data.length) yield { event: name || "message", data: data.join("\n") };
          name = ""; data = [];
          continue;
        }
        if (line.startsWith(":")) continue;
        const i = line.indexOf(":");
        const field = i < 0 ? line : line.slice(0, i);
        let value = i < 0 ? "" : line.slice(i + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (field === "event") name = value;
        else if (field === "data") data.push(value);
      }
    }
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      const cut = buf.endsWith("\r") ? buf.length - 1 : buf.length; // a CR may be half of a CRLF
      const parts = buf.slice(0, cut).split(/\r\n|\r|\n/);
      buf = parts.pop() + buf.slice(cut);
      yield* lines(parts);
    }
    yield* lines([buf.replace(/\r$/, ""), ""]);
  }

  /** "간호사 (한국직업사전, 2017년)" for a citation {external_id, title, as_of}. */
  function sourceText(c) {
    const extra = [];
    if (String(c.external_id || "").startsWith("job:")) extra.push("한국직업사전");
    if (c.as_of) extra.push(/^\d{4}$/.test(String(c.as_of)) ? `${c.as_of}년` : String(c.as_of));
    return extra.length ? `${c.title} (${extra.join(", ")})` : String(c.title || c.external_id || "");
  }

  /** el("p", {class: "x", "aria-label": "…"}, "text", child…); text children become text nodes. */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function when(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return String(iso);
    return d.toLocaleString("ko-KR", { month: "long", day: "numeric", hour: "2-digit", minute: "2-digit" });
  }

  /** Show an error (ApiError or any Error) in a role=alert box: the Korean summary, then the server's detail. */
  function showError(box, err) {
    box.replaceChildren();
    if (!err) { box.hidden = true; return; }
    box.append(el("strong", {}, err.message || "오류가 생겼어요."));
    if (err.detail) box.append(el("span", { class: "detail" }, ` ${err.status ? `(${err.status}) ` : ""}${err.detail}`));
    box.hidden = false;
  }

  function shortKey(key) {
    return key.length > 12 ? `${key.slice(0, 8)}…${key.slice(-4)}` : "…";
  }

  return { ApiError, api, apiJson, readSSE, problemError, sourceText, el, when, showError, shortKey };
})();
