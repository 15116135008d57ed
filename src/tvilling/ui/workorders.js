// Work orders: the list (state, task, asset, window, crew, parts, expected cost, failure probability),
// filtered by state and asset and kept live from the change stream (source `workorders`); a detail
// panel with the planner's rationale, the transition history and the legal next moves (sent with
// If-Match, so a stale page is told instead of overwriting); a Gantt of the orders per asset with the
// predicted failure bands; and the nav badge counting proposed orders waiting for approval.

import { ApiError, getJSON } from "./api.js";
import { actorName, setActorName } from "./alarms.js";
import { failureBands } from "./failure_bands.js";
import { renderGantt } from "./gantt.js";
import { coalesce, el, fmt, fmtTime, message, setChildren } from "./util.js";

const enc = encodeURIComponent;
export const STATES = ["proposed", "approved", "scheduled", "in_progress", "done", "cancelled"];
const OPEN = ["proposed", "approved", "scheduled", "in_progress"];
/** The moves each state allows (as planning/workorders.py TRANSITIONS), by their API verbs. */
export const NEXT = { proposed: ["approve", "cancel"], approved: ["schedule", "cancel"], scheduled: ["start", "cancel"],
  in_progress: ["done", "cancel"], done: [], cancelled: [] };
const ACTIONS = {
  approve: { label: "Approve", cls: "primary", done: "approved" },
  schedule: { label: "Schedule…", cls: "primary", done: "scheduled" },
  start: { label: "Start work", cls: "primary", done: "started" },
  done: { label: "Mark done", cls: "primary", done: "completed" },
  cancel: { label: "Cancel order…", cls: "danger", done: "cancelled" },
};
const TABS = { open: OPEN, proposed: ["proposed"], approved: ["approved"], scheduled: ["scheduled"],
  in_progress: ["in_progress"], done: ["done"], cancelled: ["cancelled"], all: STATES };
const RANGES = { fit: 0, "1d": 86_400_000, "3d": 3 * 86_400_000, "7d": 7 * 86_400_000, "30d": 30 * 86_400_000 };
const PAGE = 500;
const MAX_PAGES = 20;
const MAX_BANDS = 40;

export const stateText = (s) => String(s || "").replace("_", " ");

export function stateBadge(state) {
  return el("span", { class: `wo-state wo-${state}`, dataset: { state } }, stateText(state));
}

const money = (v) => (typeof v === "number" ? v.toLocaleString("en-GB", { maximumFractionDigits: 0 }) : "—");
const pct = (p) => (typeof p === "number" ? `${(p * 100).toFixed(p > 0 && p < 0.1 ? 1 : 0)} %` : "—");
const partsText = (parts) => Object.entries(parts || {}).map(([p, q]) => `${p} ×${q}`).join(", ");
/** A planned window, short: "08 Dec 01:33–03:33" within a day, else both ends with their dates. */
export function windowText(start, end) {
  const a = new Date(start);
  const b = new Date(end);
  if (Number.isNaN(a.getTime()) || Number.isNaN(b.getTime())) return `${start} → ${end}`;
  const day = (d) => d.toLocaleDateString("en-GB", { day: "2-digit", month: "short" });
  const hm = (d) => d.toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit" });
  const year = a.getFullYear() !== new Date().getFullYear() ? ` ${a.getFullYear()}` : "";
  return a.toDateString() === b.toDateString() ? `${day(a)}${year} ${hm(a)}–${hm(b)}` : `${day(a)}${year} ${hm(a)} → ${day(b)} ${hm(b)}`;
}
/** A time, short: "08 Dec 01:33" ("08 Dec 2027 01:33" in another year). */
export function shortTime(iso) {
  const d = new Date(iso);
  if (!iso || Number.isNaN(d.getTime())) return iso ? String(iso) : "—";
  const year = d.getFullYear() !== new Date().getFullYear() ? ` ${d.getFullYear()}` : "";
  return `${d.toLocaleDateString("en-GB", { day: "2-digit", month: "short" })}${year} `
    + d.toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit" });
}
const hours = (o) => (Date.parse(o.planned_end) - Date.parse(o.planned_start)) / 3_600_000;
const twinLink = (id) => el("a", { class: "tid", href: `#/twin/${enc(id)}` }, id);
export const orderLink = (id, text) => el("a", { class: "mono", href: `#/workorders/${enc(id)}` }, text ?? id);

// -- the API ---------------------------------------------------------------------------------------
/** Work orders (every state, or those given), all pages, by planned start. */
export async function listWorkorders(states = null, extra = {}) {
  const out = [];
  for (const state of states || [null]) {
    let after = null;
    for (let page = 0; page < MAX_PAGES; page++) {
      const q = new URLSearchParams({ limit: String(PAGE), ...extra });
      if (state) q.set("state", state);
      if (after) q.set("after", after);
      const res = await getJSON(`/api/workorders?${q}`);
      out.push(...res.items);
      if (!res.next) break;
      after = res.next;
    }
  }
  return out;
}

export const getWorkorder = (id) => getJSON(`/api/workorders/${enc(id)}`);
export const maintenanceRecord = (twin) => getJSON(`/api/twins/${enc(twin)}/maintenance`);

/** Move an order (approve, schedule, start, done, cancel) guarded by the version the page read. */
export async function moveWorkorder(id, action, version, body = {}) {
  const headers = { accept: "application/json", "content-type": "application/json", "if-match": `"${version}"` };
  const who = actorName();
  if (who) headers["x-tvilling-actor"] = who;
  const res = await fetch(`/api/workorders/${enc(id)}/${enc(action)}`, { method: "POST", headers, body: JSON.stringify(body) });
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { detail: text }; }
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

/** What the page says when a move is refused. */
export function refusal(order, action, err) {
  const p = err.problem || {};
  if (err.status === 412) {
    return `Work order ${order.id} changed since this page read it (it is at version ${p.version ?? "?"}, the page had `
      + `version ${order.version}); it has been reloaded: check it and ${action} again if it still applies.`;
  }
  if (err.status === 409) return `Cannot ${action} work order ${order.id}: ${err.message}`;
  if (err.status >= 400 && err.status < 500) return `The server refused to ${action} work order ${order.id}: ${err.message}`;
  return `Could not ${action} work order ${order.id}: ${err.message}`;
}

// -- the change stream: one EventSource for every listener on the page -----------------------------
const listeners = new Set();
let source = null;
let poll = null;

function openSource() {
  const es = new EventSource("/api/stream?types=workorder");
  es.addEventListener("workorder", (e) => {
    let item;
    try { item = JSON.parse(e.data); } catch { return; }
    for (const l of listeners) { try { l.onItem?.(item); } catch (err) { console.error("work order update failed", err); } }
  });
  // (re)connected: listeners read again what they show, so nothing missed before the stream began counts
  es.addEventListener("open", () => { for (const l of listeners) l.onOpen?.(); });
  es.addEventListener("error", () => {
    if (es.readyState === EventSource.CLOSED && !poll) {  // the server has no such stream: read every 15 s
      poll = setInterval(() => { for (const l of listeners) l.onOpen?.(); }, 15_000);
    }
  });
  return es;
}

/** Follow work order changes: `onItem(item)` per change, `onOpen()` whenever the stream (re)connects. */
export function followWorkorders(onItem, onOpen) {
  const l = { onItem, onOpen };
  listeners.add(l);
  if (!source) source = openSource();
  return () => {
    listeners.delete(l);
    if (listeners.size) return;
    source?.close();
    source = null;
    clearInterval(poll);
    poll = null;
  };
}

/** Keep `badge` showing how many proposed orders wait for approval (hidden at 0). */
export function watchProposedBadge(badge) {
  if (!badge) return () => {};
  let busy = false;
  const load = async () => {
    if (busy) return;
    busy = true;
    try {
      const res = await getJSON(`/api/workorders?state=proposed&limit=1000`);
      const n = res.items.length;
      badge.textContent = res.next ? `${n}+` : String(n);
      badge.hidden = n === 0;
      badge.title = `${badge.textContent} proposed work order${n === 1 ? "" : "s"} waiting for approval`;
    } catch {
      badge.hidden = true;  // no work order API on this server
    } finally {
      busy = false;
    }
  };
  const later = coalesce(load, 300);
  load();
  const stop = followWorkorders(later, later);
  const timer = setInterval(load, 60_000);
  return () => { stop(); clearInterval(timer); };
}

// -- the detail panel ------------------------------------------------------------------------------
function fact(k, ...v) {
  return [el("dt", {}, k), el("dd", {}, ...v)];
}

/** The planner's reasoning: `why` (or `summary`), the options with their expected costs, anything else. */
export function rationaleView(r) {
  if (!r || typeof r !== "object" || !Object.keys(r).length) return el("div", { class: "muted" }, "No rationale recorded.");
  const why = r.why ?? r.summary ?? r.reason;
  const options = Array.isArray(r.options) ? r.options : [];
  const chosenName = typeof r.chosen === "string" ? r.chosen : null;
  const rows = options.map((o, i) => {
    const opt = o && typeof o === "object" ? o : { name: String(o) };
    const name = opt.name ?? opt.label ?? opt.option ?? opt.window ?? `option ${i + 1}`;
    const chosen = opt.chosen === true || (chosenName !== null && name === chosenName);
    const p = opt.prob_fail_before ?? opt.failure_probability;
    return el("tr", { class: chosen ? "chosen" : "", dataset: { option: String(name) } },
      el("td", {}, chosen ? el("span", { class: "pick", title: "chosen" }, "✓ ") : null, String(name)),
      el("td", { class: "num mono" }, money(opt.expected_cost)),
      el("td", { class: "num mono" }, typeof p === "number" ? pct(p) : ""),
      el("td", { class: "muted" }, opt.note ?? opt.why ?? ""));
  });
  const known = new Set(["why", "summary", "reason", "options", "chosen"]);
  const rest = Object.entries(r).filter(([k]) => !known.has(k));
  return el("div", { class: "wo-rationale" },
    why ? el("p", { class: "why" }, String(why)) : null,
    rows.length ? el("table", { class: "grid compact" },
      el("thead", {}, el("tr", {}, el("th", {}, "Option considered"), el("th", { class: "num" }, "Exp. cost"),
        el("th", { class: "num" }, "P(fail)"), el("th", {}, ""))),
      el("tbody", {}, rows)) : null,
    rest.length ? el("dl", { class: "wo-facts" }, rest.map(([k, v]) => fact(k, typeof v === "object" ? el("code", {}, JSON.stringify(v)) : fmt(v)))) : null);
}

function historyView(order) {
  const items = [...(order.history || [])].reverse();
  if (!items.length) return el("div", { class: "muted" }, "No history.");
  return el("ol", { class: "wo-history" }, items.map((h) => el("li", { dataset: { to: h.to } },
    el("div", { class: "line" }, el("span", { class: "muted", title: h.at }, shortTime(h.at)),
      h.previous ? [stateBadge(h.previous), el("span", { class: "faint" }, "→")] : null, stateBadge(h.to),
      el("span", { class: "faint" }, "by"), el("b", {}, h.by)),
    h.note ? el("div", { class: "note-text" }, h.note) : null)));
}

/** What completing the order did: the maintenance command sent (and its answer), the analytics reset. */
function completionView(c) {
  const cmd = c?.command;
  const reset = c?.analytics_reset;
  const out = [];
  if (cmd) {
    const text = cmd.sent ? `${cmd.name} sent${cmd.status ? ` (${cmd.status})` : ""}` : `${cmd.name} not sent${cmd.reason ? `: ${cmd.reason}` : ""}`;
    out.push(fact("Maintenance command", el("span", { class: cmd.sent ? "" : "delta", dataset: { completion: "command" } }, text)));
  }
  if (reset && typeof reset === "object") {
    out.push(fact("Analytics", el("span", { class: reset.done ? "" : "muted", dataset: { completion: "analytics" } },
      reset.done ? "learning afresh after the work" : String(reset.reason || "not reset"))));
  }
  return out;
}

const localInput = (iso) => {
  const d = new Date(iso);
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
};

/** The moves of an order: who acts, a note, one button per legal move; schedule and cancel ask first. */
function actionsView(order, act) {
  const box = el("div", { class: "wo-actions" });
  const moves = NEXT[order.state] || [];
  if (!moves.length) return el("div", { class: "muted" }, `This work order is ${stateText(order.state)}: nothing more to do.`);
  const who = el("input", { name: "actor", placeholder: "your name", "aria-label": "your name", maxlength: 128, value: actorName() || null });
  const note = el("input", { name: "note", placeholder: "note (optional)", "aria-label": "note", maxlength: 4000 });
  const form = el("div", { class: "wo-form" });
  const run = async (action, body) => {
    const name = who.value.trim();
    if (!name) { who.focus(); who.classList.add("invalid"); return; }
    if (name !== actorName()) setActorName(name);
    const extra = note.value.trim() ? { note: note.value.trim() } : {};
    for (const b of box.querySelectorAll("button")) b.disabled = true;
    setChildren(form, el("div", { class: "wo-msg wait", role: "status" }, action === "done"
      ? "Completing: sending the maintenance command and waiting for the asset's answer…" : `${ACTIONS[action].label.replace("…", "")}…`));
    await act(order, action, { ...extra, ...body });
    for (const b of box.querySelectorAll("button")) b.disabled = false;
  };
  const button = (action) => el("button", { class: ACTIONS[action].cls, dataset: { action }, onclick: () => {
    if (action === "schedule") {
      const start = el("input", { type: "datetime-local", name: "planned_start", value: localInput(order.planned_start) });
      const end = el("input", { type: "datetime-local", name: "planned_end", value: localInput(order.planned_end) });
      const crew = el("input", { name: "crew", value: (order.crew || []).join(", "), placeholder: "technician ids, comma separated" });
      setChildren(form, el("div", { class: "row" }, el("label", {}, "start ", start), el("label", {}, "end ", end)),
        el("div", { class: "row" }, el("label", { class: "grow" }, "crew ", crew)),
        el("div", { class: "row" }, el("button", { class: "primary", dataset: { action: "confirm-schedule" }, onclick: () => {
          const body = {};
          const s = new Date(start.value);
          const e = new Date(end.value);
          if (start.value && s.toISOString() !== new Date(order.planned_start).toISOString()) body.planned_start = s.toISOString();
          if (end.value && e.toISOString() !== new Date(order.planned_end).toISOString()) body.planned_end = e.toISOString();
          const names = crew.value.split(",").map((c) => c.trim()).filter(Boolean);
          if (names.join(",") !== (order.crew || []).join(",")) body.crew = names;
          run("schedule", body);
        } }, "Schedule (firm)"), el("button", { onclick: () => setChildren(form) }, "Back")));
    } else if (action === "cancel") {
      setChildren(form, el("div", { class: "row" }, el("span", {}, `Cancel ${order.id}? It cannot be reopened.`),
        el("button", { class: "danger", dataset: { action: "confirm-cancel" }, onclick: () => run("cancel", {}) }, "Yes, cancel it"),
        el("button", { onclick: () => setChildren(form) }, "No")));
    } else {
      run(action, {});
    }
  } }, ACTIONS[action].label);
  setChildren(box, el("div", { class: "row" }, who, note), el("div", { class: "row" }, moves.map(button)), form);
  return box;
}

function detailView(order, act, flash) {
  return el("div", { class: "wo-detail", dataset: { workorder: order.id, state: order.state, version: String(order.version) } },
    el("div", { class: "wo-title" }, el("h3", {}, order.task), stateBadge(order.state),
      order.firm ? el("span", { class: "badge state", title: "a re-plan keeps it in place" }, "firm") : null,
      el("span", { class: "faint mono" }, `${order.id} · v${order.version}`)),
    flash,
    el("dl", { class: "wo-facts" },
      fact("Asset", twinLink(order.asset), order.model ? el("span", { class: "faint" }, ` ${order.model}`) : null),
      fact("Planned", windowText(order.planned_start, order.planned_end), el("span", { class: "faint" }, ` (${fmt(hours(order))} h)`)),
      order.actual_start ? fact("Actual", order.actual_end ? windowText(order.actual_start, order.actual_end) : `from ${fmtTime(order.actual_start)}`) : null,
      fact("Crew", order.crew?.length ? order.crew.join(", ") : el("span", { class: "muted" }, "—")),
      fact("Parts", partsText(order.parts) || el("span", { class: "muted" }, "—")),
      fact("Expected cost", money(order.expected_cost)),
      fact("P(fail before)", pct(order.failure_probability)),
      fact("Proposed by", order.created_by, el("span", { class: "faint" }, ` ${fmtTime(order.created)}`)),
      order.approved_by ? fact("Approved by", order.approved_by) : null,
      completionView(order.completion)),
    el("h4", {}, "Next step"),
    actionsView(order, act),
    el("h4", {}, "Rationale"),
    rationaleView(order.rationale),
    order.notes?.length ? [el("h4", {}, "Notes"), el("ul", { class: "wo-notes" }, order.notes.map((n) =>
      el("li", {}, el("span", { class: "faint" }, `${fmtTime(n.at)} ${n.by}: `), n.text)))] : null,
    el("h4", {}, "History"),
    historyView(order));
}

// -- the page --------------------------------------------------------------------------------------
export async function mount(view, { id } = {}) {
  let tab = "open";
  let asset = "";
  let selected = null;
  let range = "fit";
  if (id && id.startsWith("asset=")) { asset = id.slice(6); id = undefined; tab = "all"; }
  if (id) selected = id;
  const orders = new Map();
  let bands = [];
  let flash = null;  // {kind, text, id}: the last move's outcome, shown in the detail panel

  const seg = el("div", { class: "seg", id: "wo-tabs" });
  const assetSel = el("select", { "aria-label": "asset", name: "asset", onchange: () => { asset = assetSel.value; render(); } });
  const status = el("span", { class: "muted", id: "wo-count" });
  const errors = el("div");
  const tableBody = el("tbody");
  const table = el("table", { class: "grid wo-table" }, el("thead", {}, el("tr", {},
    ["State", "Task", "Asset", "Planned", "Crew", "Parts", "Exp. cost", "P(fail)"]
      .map((c, i) => el("th", { class: i >= 6 ? "num" : "", title: i === 7 ? "probability that the asset fails before the work" : null }, c)))),
  tableBody);
  const rangeSeg = el("div", { class: "seg", id: "wo-range" });
  const ganttHost = el("div", { class: "body flush", id: "wo-gantt" });
  const detailBody = el("div", { class: "body", id: "wo-detail" });
  view.append(
    el("div", { class: "page-head" }, el("h1", {}, "Work orders"),
      el("span", { class: "sub" }, "maintenance from proposal to done: approve, schedule, start and complete, each step recorded")),
    el("div", { class: "toolbar" }, seg, assetSel, status),
    errors,
    el("div", { class: "wo-grid" },
      el("div", { class: "col" },
        el("section", { class: "panel", id: "wo-list" }, el("div", { class: "body flush scroll wo-scroll" }, table)),
        el("section", { class: "panel" }, el("h2", {}, "Orders over time", el("span", { class: "right" }, rangeSeg)), ganttHost)),
      el("div", { class: "col" }, el("section", { class: "panel", id: "wo-side" }, el("h2", {}, "Work order"), detailBody))));

  const gantt = renderGantt(ganttHost, { rows: [], items: [], now: Date.now(), empty: "No work orders to draw.",
    onSelect: (it) => { if (orders.has(it.id)) select(it.id); } });

  const shown = () => [...orders.values()].filter((o) => TABS[tab].includes(o.state) && (!asset || o.asset === asset))
    .sort((a, b) => a.planned_start.localeCompare(b.planned_start) || a.id.localeCompare(b.id));

  function select(oid) {
    selected = oid;
    flash = null;
    history.replaceState(null, "", `#/workorders/${enc(oid)}`);
    render();
    if (!orders.has(oid)) loadOne(oid);
  }

  /** A move of `order` as the detail panel showed it (its version is the If-Match). */
  async function act(order, action, body) {
    try {
      const moved = await moveWorkorder(order.id, action, order.version, body);
      orders.set(moved.id, moved);
      flash = { kind: "ok", id: moved.id, text: `Work order ${ACTIONS[action].done} by ${actorName() || "you"}.` };
    } catch (err) {
      flash = { kind: "error", id: order.id, text: err instanceof ApiError ? refusal(order, action, err) : `Could not ${action}: ${err.message}` };
      await loadOne(order.id);
    }
    render();
  }

  let bandsFor = "";
  function render() {
    setChildren(seg, ...Object.keys(TABS).map((t) => el("button", { class: t === tab ? "on" : "", dataset: { tab: t },
      onclick: () => { tab = t; render(); } }, stateText(t))));
    const assets = [...new Set([...orders.values()].map((o) => o.asset).concat(asset ? [asset] : []))].sort();
    setChildren(assetSel, el("option", { value: "" }, "all assets"),
      assets.map((a) => el("option", { value: a, selected: a === asset }, a)));
    const list = shown();
    const waiting = [...orders.values()].filter((o) => o.state === "proposed").length;
    status.textContent = `${list.length} work order${list.length === 1 ? "" : "s"}${waiting ? ` · ${waiting} waiting for approval` : ""}`;
    setChildren(tableBody, list.length ? list.map((o) => el("tr", {
      class: o.id === selected ? "on" : "", tabindex: 0, dataset: { workorder: o.id, state: o.state, asset: o.asset },
      onclick: (e) => { if (!e.target.closest("a")) select(o.id); },
      onkeydown: (e) => { if (e.key === "Enter" && !e.target.closest("a")) select(o.id); } },
    el("td", {}, stateBadge(o.state), o.firm ? el("span", { class: "faint", title: "firm" }, " ◆") : null),
    el("td", {}, el("div", {}, o.task), el("div", { class: "faint mono" }, o.id)),
    el("td", {}, twinLink(o.asset)),
    el("td", { class: "when", title: `${o.planned_start} → ${o.planned_end}` }, windowText(o.planned_start, o.planned_end),
      el("span", { class: "faint" }, ` ${fmt(hours(o))} h`)),
    el("td", { class: "crew" }, (o.crew || []).join(", ")),
    el("td", { class: "mono parts" }, partsText(o.parts)),
    el("td", { class: "num mono" }, money(o.expected_cost)),
    el("td", { class: "num mono", dataset: { col: "pfail" } }, pct(o.failure_probability))))
      : el("tr", {}, el("td", { colspan: 8, class: "muted" }, `No ${tab === "all" ? "" : `${stateText(tab)} `}work orders${asset ? ` on ${asset}` : ""}.`)));

    const rows = [...new Set(list.map((o) => o.asset))].sort();
    const key = rows.join("\n");
    if (key !== bandsFor) {
      bandsFor = key;
      failureBands(rows, MAX_BANDS).then((b) => { if (bandsFor === key) { bands = b; drawGantt(list, rows); } });
    }
    drawGantt(list, rows);

    renderDetail();
  }

  // the detail is drawn again only when its order or the last move's outcome changed; while a form is
  // open (schedule, cancel) it stays, with a word that the order changed: the move then meets If-Match
  let detailKey = null;
  function renderDetail() {
    const order = selected ? orders.get(selected) : null;
    const key = order ? `${order.id}\n${order.version}\n${flash?.text ?? ""}` : `none\n${selected}`;
    if (key === detailKey) return;
    const form = detailBody.querySelector(".wo-form");
    const shownId = detailBody.querySelector(".wo-detail")?.dataset.workorder;
    if (order && form?.childElementCount && shownId === order.id && !(flash && flash.id === order.id)) {
      const warn = detailBody.querySelector(".wo-stale") || el("div", { class: "wo-msg warn wo-stale", role: "status" });
      warn.textContent = `This work order changed meanwhile: it is now ${stateText(order.state)} (version ${order.version}).`;
      form.before(warn);
      return;
    }
    detailKey = key;
    if (!order) {
      setChildren(detailBody, el("div", { class: "muted" }, selected ? `Loading ${selected}…` : "Select a work order to see its rationale, history and next step."));
      return;
    }
    const note = flash && flash.id === order.id ? el("div", { class: `wo-msg ${flash.kind}`, role: "status" }, flash.text) : null;
    setChildren(detailBody, detailView(order, act, note));
  }

  function drawGantt(list, rows) {
    const now = Date.now();
    const span = RANGES[range];
    // "fit": the orders and now (a failure band beyond them is clipped; a longer range shows it)
    const times = list.flatMap((o) => [Date.parse(o.planned_start), Date.parse(o.planned_end)]).concat([now]);
    const lo = Math.min(...times);
    const hi = Math.max(...times, lo + 86_400_000 * 0.75);
    const pad = (hi - lo) * 0.05;
    setChildren(rangeSeg, ...Object.keys(RANGES).map((r) => el("button", { class: r === range ? "on" : "", dataset: { range: r },
      onclick: () => { range = r; render(); } }, r)));
    gantt.update({
      rows: rows.map((a) => ({ id: a, href: `#/twin/${enc(a)}` })),
      items: [...bands.filter((b) => rows.includes(b.row)), ...list.map((o) => ({
        id: o.id, row: o.asset, kind: "maintenance", state: o.state, start: o.planned_start, end: o.planned_end,
        label: o.task, detail: { order: o.id, crew: (o.crew || []).join(", "), parts: partsText(o.parts),
          "expected cost": money(o.expected_cost), "P(fail before)": pct(o.failure_probability) } }))],
      from: span ? now - span * 0.1 : lo - pad, to: span ? now + span * 0.9 : hi + pad, now, selected,
    });
  }

  async function loadOne(oid) {
    try {
      const o = await getWorkorder(oid);
      orders.set(o.id, o);
    } catch (e) {
      if (e.status === 404) {
        orders.delete(oid);
        if (selected === oid) { selected = null; setChildren(errors, message("error", `No work order '${oid}'.`)); }
      }
    }
    later();
  }

  let loading = null;
  async function load() {
    if (loading) return loading;
    loading = (async () => {
      try {
        const got = await listWorkorders();
        orders.clear();
        for (const o of got) orders.set(o.id, o);
        if (selected && !orders.has(selected)) await loadOne(selected);
        setChildren(errors);
      } catch (e) {
        setChildren(errors, message("error", e.status === 404 ? "This server has no work order API (GET /api/workorders)." : `Could not list work orders: ${e.message}`));
      }
      render();
    })();
    try { await loading; } finally { loading = null; }
  }
  const later = coalesce(render, 150);

  await load();
  const stop = followWorkorders((item) => {
    if (item.kind !== "workorder" || !item.id) return;
    const cur = orders.get(item.id);
    if (cur && cur.version >= item.version) return;  // this page made the change, or already has it
    loadOne(item.id);
  }, () => load());
  const tick = setInterval(() => gantt.update({ now: Date.now() }), 60_000);
  return () => { stop(); clearInterval(tick); gantt.destroy(); };
}
