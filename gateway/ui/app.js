// Lockgate's dashboard: held tool calls to approve, edit or deny; deployments' breakers and cooldowns;
// paused and stopped sessions and keys.
// It only calls the admin API with the master key the reviewer signs in with (kept in this tab's
// session storage). Everything the gateway returns is shown as text (textContent, never HTML): tool
// arguments are written by a model, and a model can be talked into writing markup.
"use strict";

const KEY_ITEM = "lockgate-master-key";
const REVIEWER_ITEM = "lockgate-reviewer";
const REFRESH_MS = 2000;
const $ = (id) => document.getElementById(id);

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (name === "text") node.textContent = value;
    else if (name === "onclick") node.addEventListener("click", value);
    else node.setAttribute(name, value);
  }
  node.append(...children);  // strings become text nodes
  return node;
}

function key() { return sessionStorage.getItem(KEY_ITEM) || ""; }
function reviewer() { return $("reviewer").value.trim() || "dashboard"; }
function when(seconds) { return new Date(seconds * 1000).toLocaleString(); }

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${key()}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method, headers, cache: "no-store", body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error((data.error && data.error.message) || `HTTP ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return data;
}

function show(signedIn) {
  $("sign-in").hidden = signedIn;
  $("board").hidden = !signedIn;
  $("sign-out").hidden = !signedIn;
}

function status(text, isError = false) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

// ---- held tool calls

const cards = new Map();  // approval id -> {signature, node}: a card is redrawn only when it changed,
                          // so a refresh never wipes a reviewer's half-written edit or reason

function signature(approval) {
  return JSON.stringify(approval.calls.map((call) => [call.id, call.decision && call.decision.action]));
}

function renderPending(approvals) {
  const list = $("pending");
  const seen = new Set();
  for (const approval of approvals) {
    seen.add(approval.id);
    const known = cards.get(approval.id);
    const sig = signature(approval);
    if (known && known.signature === sig) continue;
    const node = approvalCard(approval);
    if (known) known.node.replaceWith(node); else list.append(node);
    cards.set(approval.id, { signature: sig, node });
  }
  for (const [id, card] of cards) {
    if (!seen.has(id)) { card.node.remove(); cards.delete(id); }
  }
  $("pending-count").textContent = approvals.length ? `(${approvals.length})` : "";
  if (!approvals.length && !list.querySelector(".empty")) list.append(el("p", { class: "empty", text: "Nothing is waiting." }));
  if (approvals.length) list.querySelectorAll(".empty").forEach((node) => node.remove());
}

function approvalCard(approval) {
  const card = el("div", { class: "approval", "data-approval": approval.id },
    el("div", { class: "meta", text:
      `${approval.id} · session ${approval.session_id || "(none)"} · key ${approval.key} · model ${approval.model}` +
      ` · held ${when(approval.created_at)} · expires ${when(approval.expires_at)}` }));
  for (const call of approval.calls) card.append(callBlock(approval, call));
  return card;
}

function callBlock(approval, call) {
  const block = el("div", { class: "call", "data-call": call.id },
    el("strong", { text: call.name }), " ",
    el("span", { class: "rule", text: `${call.rule}: ${call.message || "needs a human"}` }),
    el("pre", { class: "arguments", text: pretty(call.arguments) }));
  if (call.decision) {
    block.append(el("p", { text: `Decided: ${call.decision.action} by ${call.decision.by}` +
      (call.decision.reason ? ` (${call.decision.reason})` : "") }));
    return block;
  }
  const reason = el("input", { class: "reason", placeholder: "reason (recorded in the audit log)" });
  const problem = el("p", { class: "error" });
  const editor = el("textarea", { class: "edit", hidden: "" });
  editor.value = pretty(call.arguments);
  const save = el("button", { class: "save", hidden: "", text: "Save the edit" });

  async function act(action, extra = {}) {
    problem.textContent = "";
    try {
      await api("POST", `/admin/approvals/${encodeURIComponent(approval.id)}/${action}`,
        { call_id: call.id, by: reviewer(), reason: reason.value, ...extra });
      await refresh();
    } catch (error) {
      problem.textContent = error.message;
    }
  }
  save.addEventListener("click", () => act("edit", { arguments: editor.value }));
  block.append(
    reason, el("br"),
    el("button", { class: "approve", text: "Approve", onclick: () => act("approve") }),
    el("button", { class: "deny", text: "Deny", onclick: () => act("deny") }),
    el("button", { class: "edit-open", text: "Edit the arguments", onclick: () => {
      editor.hidden = !editor.hidden; save.hidden = editor.hidden;
    } }),
    editor, save, problem);
  return block;
}

function pretty(text) {
  try { return JSON.stringify(JSON.parse(text), null, 2); } catch { return String(text); }
}

// ---- pauses

function renderPauses(states) {
  const body = $("pauses").querySelector("tbody");
  body.replaceChildren();
  if (!states.length) body.append(el("tr", {}, el("td", { colspan: "6", text: "Everything runs." })));
  for (const state of states) {
    const split = state.target.indexOf(":");
    const kind = state.target.slice(0, split), name = state.target.slice(split + 1);
    const actions = el("td");
    const act = (action) => async () => {
      try {
        await api("POST", `/admin/pauses/${kind}/${encodeURIComponent(name)}/${action}`, { by: reviewer() });
        await refresh();
      } catch (error) { status(error.message, true); }
    };
    actions.append(el("button", { class: "resume", text: "Resume", onclick: act("resume") }));
    if (state.state === "paused") actions.append(el("button", { class: "stop", text: "Stop", onclick: act("stop") }));
    body.append(el("tr", { "data-target": state.target },
      el("td", { text: state.target }), el("td", { text: state.state }), el("td", { text: String(state.waiting) }),
      el("td", { text: state.by || "" }), el("td", { text: state.reason || "" }), actions));
  }
}

async function pauseSubmitted(event) {
  event.preventDefault();
  const action = event.submitter ? event.submitter.value : "pause";
  const name = $("pause-name").value.trim();
  try {
    await api("POST", `/admin/pauses/${$("pause-kind").value}/${encodeURIComponent(name)}/${action}`,
      { by: reviewer(), reason: $("pause-reason").value });
    $("pause-name").value = $("pause-reason").value = "";
    await refresh();
  } catch (error) { status(error.message, true); }
}

// ---- deployments

function renderDeployments(deployments) {
  const now = Date.now() / 1000;
  $("deployments").querySelector("tbody").replaceChildren(...deployments.map((d) => {
    const cooling = d.cooling_until && d.cooling_until > now;
    const state = d.breaker !== "closed" ? d.breaker : cooling ? "cooling" : "ok";
    return el("tr", { class: state, "data-deployment": d.id },
      el("td", { text: d.id }), el("td", { text: d.group }), el("td", { text: `${d.provider} / ${d.model}` }),
      el("td", { text: d.server || "(provider default)" }), el("td", { class: "breaker", text: d.breaker }),
      el("td", { text: String(d.failures) }), el("td", { text: cooling ? when(d.cooling_until) : "" }));
  }));
}

// ---- decided

function renderDecided(approvals) {
  const rows = [];
  for (const approval of approvals) {
    for (const call of approval.calls) {
      if (call.decision) rows.push({ approval, call, at: call.decision.at || 0 });
    }
  }
  rows.sort((a, b) => b.at - a.at);
  const body = $("decided").querySelector("tbody");
  body.replaceChildren(...rows.slice(0, 20).map(({ approval, call }) => el("tr", {},
    el("td", { text: when(call.decision.at) }), el("td", { text: call.name }),
    el("td", { text: call.decision.action }), el("td", { text: call.decision.by }),
    el("td", { text: call.decision.reason || "" }), el("td", { text: approval.session_id || "" }),
    el("td", { text: approval.id }))));
}

// ---- the loop

let refreshing = null;
let rounds = 0;
// Listing approvals reads every one the store keeps (decided ones for a day): the decided list, which
// only looks back, is read every fifth round (and after each click) rather than every one.
const DECIDED_EVERY = 5;

async function refresh(decidedToo = true) {
  if (refreshing) return refreshing;  // one refresh at a time; a click during one waits for it
  refreshing = (async () => {
    try {
      const [pending, decided, pauses, deployments] = await Promise.all([
        api("GET", "/admin/approvals?status=pending"),
        decidedToo ? api("GET", "/admin/approvals?status=decided&order=newest") : null,
        api("GET", "/admin/pauses"),
        api("GET", "/admin/deployments"),
      ]);
      show(true);
      renderPending(pending.data);
      if (decided) renderDecided(decided.data);
      renderPauses(pauses.data);
      renderDeployments(deployments.data);
      status(`Refreshed ${new Date().toLocaleTimeString()}`);
    } catch (error) {
      if (error.status === 401 || error.status === 403) {
        sessionStorage.removeItem(KEY_ITEM);
        show(false);
        status("That key is not this gateway's master key.", true);
      } else {
        status(`Cannot reach the admin API: ${error.message}`, true);
      }
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

document.addEventListener("DOMContentLoaded", () => {
  $("reviewer").value = localStorage.getItem(REVIEWER_ITEM) || "";
  $("reviewer").addEventListener("change", () => localStorage.setItem(REVIEWER_ITEM, $("reviewer").value.trim()));
  $("sign-in").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY_ITEM, $("key").value.trim());
    $("key").value = "";
    refresh();
  });
  $("sign-out").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_ITEM);
    cards.forEach((card) => card.node.remove());
    cards.clear();
    show(false);
    status("");
  });
  $("pause-form").addEventListener("submit", pauseSubmitted);
  if (key()) refresh(); else show(false);
  setInterval(() => { if (key()) refresh(++rounds % DECIDED_EVERY === 0); }, REFRESH_MS);
});
