// Production & maintenance planning: a line's plan in force as a Gantt chart (its machines × plant time: the
// planned operations coloured by order with their progress from the dispatcher, the maintenance work orders and
// the plan's downtimes, each machine's predicted failure band, the now line), optionally the plan it replaced as
// ghost bars; the KPIs of both plans with their deltas; and the latest decision on the line — its trigger, the
// options the what-if weighed, the choice and why — to approve, or to change on its work order's page.
// Work orders arrive over the change stream; plans, dispatch and decisions are read again every few seconds.

import { ApiError, getJSON, getTwin } from "./api.js";
import { actorName, setActorName } from "./alarms.js";
import { failureBands } from "./failure_bands.js";
import { duration, renderGantt, toMs } from "./gantt.js";
import { followWorkorders, listWorkorders, shortTime, stateBadge, windowText } from "./workorders.js";
import { coalesce, el, fmt, message, setChildren } from "./util.js";

const enc = encodeURIComponent;
const POLL_MS = 4000;
const PALETTE = 10;  // job colours by order: .pp-c0 … .pp-c9 in style.css
const LINE_RELS = ["hasMachine", "contains"];
const OPEN_DECISIONS = ["evaluating", "proposed", "approved"];
/** The KPIs compared, in order: name, label, unit, whether more is better. */
export const KPIS = [
  ["makespan_h", "Makespan", "h", false],
  ["total_tardiness_h", "Total tardiness", "h", false],
  ["weighted_tardiness_h", "Weighted tardiness", "h", false],
  ["late_orders", "Late orders", "", false],
  ["throughput_per_h", "Throughput", "parts/h", true],
  ["lost_production", "Lost production", "parts", false],
  ["downtime_h", "Downtime", "machine-h", false],
];

const num = (v, digits = 2) => (typeof v === "number" && Number.isFinite(v)
  ? v.toLocaleString("en-GB", { maximumFractionDigits: digits }) : "—");
const money = (v) => (typeof v === "number" ? v.toLocaleString("en-GB", { maximumFractionDigits: 0 }) : "—");
const pct = (p) => (typeof p === "number" ? `${(p * 100).toFixed(p > 0 && p < 0.1 ? 1 : 0)} %` : "—");
const opKey = (order, op) => `${order}\u0000${op}`;

/** A job's Gantt id: its colour, whether it runs late, then its order and step (CSS keys on the first two). */
const jobId = (colour, late, order, op) => `job|c${colour}|${late ? "late" : "ok"}|${order}|${op}`;

/** Lateness that counts: over half a minute and over 5 % of the operation's planned length. */
export function isLate(item) {
  if (!item || typeof item.lateness_s !== "number") return false;
  const span = (toMs(item.planned_end) - toMs(item.planned_start)) / 1000;
  return item.lateness_s > Math.max(30, 0.05 * (Number.isFinite(span) ? span : 0));
}

// -- the API ---------------------------------------------------------------------------------------
/** The value of a GET, or null when the server answers 404 (no plan yet, no such thing). */
async function maybe(url) {
  try {
    return await getJSON(url);
  } catch (e) {
    if (e.status === 404) return null;
    throw e;
  }
}

async function approveDecision(id) {
  const headers = { accept: "application/json", "content-type": "application/json" };
  const who = actorName();
  if (who) headers["x-tvilling-actor"] = who;
  const res = await fetch(`/api/decisions/${enc(id)}/approve`, { method: "POST", headers, body: "{}" });
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { detail: text }; }
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

/** The lines there is something to plan on: those of production orders and decisions, sorted. */
async function knownLines() {
  const [orders, decisions] = await Promise.all([
    getJSON("/api/production/orders?limit=1000").then((r) => r.items).catch(() => []),
    getJSON("/api/decisions?limit=200").then((r) => r.items).catch(() => []),
  ]);
  return [...new Set([...orders.map((o) => o.line), ...decisions.map((d) => d.line)].filter(Boolean))].sort();
}

/** The line's machines in station order, each with the twins it holds (bearings, spindle). */
async function lineMachines(line) {
  const twin = await getTwin(line);
  const rels = (twin.relationships || []).filter((r) => LINE_RELS.includes(r.name));
  const pos = (r) => (typeof r.properties?.position === "number" ? r.properties.position : Infinity);
  rels.sort((a, b) => pos(a) - pos(b) || a.target.localeCompare(b.target));
  const ids = [...new Set(rels.map((r) => r.target))];
  return Promise.all(ids.map(async (id) => {
    const m = await getTwin(id).catch(() => null);
    return { id, parts: (m?.relationships || []).map((r) => r.target), model: m?.model || "" };
  }));
}

// -- pieces of the page ----------------------------------------------------------------------------
/** The KPI table: each KPI before and after the re-plan with its delta, coloured by whether it got better. */
export function kpiTable(comparison, plan) {
  if (!comparison) {
    const k = plan?.kpis || {};
    return el("div", {},
      el("div", { class: "muted pp-note" }, plan ? "The first plan of this line: nothing to compare with yet." : "No plan."),
      plan ? el("table", { class: "grid compact pp-kpis" },
        el("thead", {}, el("tr", {}, el("th", {}, "KPI"), el("th", { class: "num" }, "Plan"))),
        el("tbody", {}, KPIS.map(([name, label, unit]) => el("tr", { dataset: { kpi: name } },
          el("td", {}, label, unit ? el("span", { class: "faint" }, ` ${unit}`) : null),
          el("td", { class: "num mono", dataset: { col: "after" } }, num(k[name])))))) : null);
  }
  const rows = KPIS.map(([name, label, unit, higherBetter]) => {
    const v = comparison.kpis?.[name];
    if (!v) return null;
    const d = v.delta;
    const better = Math.abs(d) < 1e-9 ? "same" : (d > 0) === higherBetter ? "good" : "bad";
    const sign = d > 0 ? "+" : d < 0 ? "−" : "±";
    return el("tr", { dataset: { kpi: name, trend: better } },
      el("td", {}, label, unit ? el("span", { class: "faint" }, ` ${unit}`) : null),
      el("td", { class: "num mono", dataset: { col: "before" } }, num(v.before)),
      el("td", { class: "num mono", dataset: { col: "after" } }, num(v.after)),
      el("td", { class: `num mono delta-${better}`, dataset: { col: "delta" } }, `${sign}${num(Math.abs(d))}`));
  });
  const moved = comparison.moved || [];
  return el("div", {},
    el("table", { class: "grid compact pp-kpis" },
      el("thead", {}, el("tr", {}, el("th", {}, "KPI"), el("th", { class: "num" }, "Before"), el("th", { class: "num" }, "After"),
        el("th", { class: "num" }, "Δ"))),
      el("tbody", {}, rows)),
    el("div", { class: "pp-facts" },
      el("span", {}, "downtime avoided ", el("b", { class: "mono", dataset: { fact: "avoided" } }, `${num(comparison.downtime_avoided_h)} machine-h`)),
      el("span", {}, "operations moved ", el("b", { class: "mono", dataset: { fact: "moved" } }, String(moved.length))),
      el("span", {}, "unchanged ", el("b", { class: "mono" }, `${num((comparison.stability ?? 1) * 100, 0)} %`))),
    moved.length ? el("ul", { class: "pp-moved" }, moved.slice(0, 6).map((m) => el("li", {},
      el("span", { class: "mono" }, `${m.order}/${m.op}`), " ",
      m.machine_before !== m.machine_after ? `${m.machine_before} → ${m.machine_after}, ` : "",
      `${m.shift_min > 0 ? "later" : "earlier"} by ${duration(Math.abs(m.shift_min) * 60_000)}`)),
    moved.length > 6 ? el("li", { class: "faint" }, `… and ${moved.length - 6} more`) : null) : null);
}

function decisionBadge(status) {
  return el("span", { class: `dec-state dec-${status}`, dataset: { status } }, String(status || "").replace("_", " "));
}

/** The failure probability an option's cost weighs: before the work for work, else over the horizon. */
function pFail(o) {
  const work = o.kind === "window" || o.kind === "preventive";
  if (work && typeof o.p_fail_before === "number") return [o.p_fail_before, "before the work starts, as planned"];
  if (typeof o.p_fail_horizon_planned === "number") return [o.p_fail_horizon_planned, "over the horizon, as planned"];
  if (typeof o.p_fail_horizon === "number") return [o.p_fail_horizon, "over the horizon, simulated"];
  return [null, ""];
}

function lost(o) {
  if (typeof o.lost_production === "number") return `${num(o.lost_production, 0)} parts`;
  if (typeof o.lost_production_h === "number") return `${num(o.lost_production_h, 1)} h`;
  return "—";
}

/** The options the decision weighed, the chosen one marked. */
export function optionsTable(decision) {
  const unit = decision.time_scale && decision.time_scale !== 1 ? "plant h" : "h";
  const rows = (decision.options || []).map((o) => {
    const [p, pNote] = pFail(o);
    return el("tr", { class: o.chosen ? "chosen" : "", dataset: { option: o.name, kind: o.kind || "", chosen: String(!!o.chosen) } },
      el("td", { title: o.note || null }, o.chosen ? el("span", { class: "pick", title: "chosen" }, "✓ ") : null, o.name),
      el("td", { class: "num mono", dataset: { col: "ttf" } }, typeof o.ttf_p50_h === "number"
        ? `${num(o.ttf_p50_h, 1)} / ${num(o.ttf_p10_h, 1)}` : "—"),
      el("td", { class: "num mono", dataset: { col: "pshift" } }, pct(o.p_fail_shift)),
      el("td", { class: "num mono", dataset: { col: "pfail" }, title: pNote }, pct(p)),
      el("td", { class: "num mono", dataset: { col: "lost" } }, lost(o)),
      el("td", { class: "num mono", dataset: { col: "cost" } }, money(o.expected_cost)));
  });
  return el("table", { class: "grid compact pp-options" },
    el("thead", {}, el("tr", {}, el("th", {}, "Option"),
      el("th", { class: "num", title: `simulated time to failure, median / 10th percentile (${unit})` }, "TTF p50 / p10"),
      el("th", { class: "num", title: "probability of failure within the shift, simulated" }, "P(fail) shift"),
      el("th", { class: "num", title: "probability of failure the cost weighs: over the planning horizon; for work, before it starts" }, "P(fail)"),
      el("th", { class: "num", title: "production lost to the option over the horizon" }, "Lost"),
      el("th", { class: "num" }, "Exp. cost"))),
    el("tbody", {}, rows.length ? rows : el("tr", {}, el("td", { colspan: 6, class: "muted" }, "No options recorded."))));
}

function triggerView(d) {
  const t = d.trigger || {};
  const asset = t.twin || d.asset;
  return el("dl", { class: "wo-facts pp-trigger" },
    el("dt", {}, "Trigger"),
    el("dd", {}, t.kind === "alarm"
      ? [el("a", { href: "#/alarms" }, `alarm ${t.rule || ""}`.trim()), t.severity ? el("span", { class: `sev sev-${t.severity} pp-sev` }, t.severity) : null,
        t.message ? el("div", { class: "muted" }, t.message) : null]
      : "asked by hand"),
    el("dt", {}, "Asset"),
    el("dd", {}, el("a", { class: "tid", href: `#/twin/${enc(asset)}` }, asset),
      d.machine && d.machine !== asset ? el("span", { class: "faint" }, " on ", el("a", { href: `#/twin/${enc(d.machine)}` }, d.machine)) : null),
    t.raised ? [el("dt", {}, "Raised"), el("dd", { title: t.raised }, shortTime(t.raised))] : null,
    el("dt", {}, "Failure from"),
    el("dd", {}, d.failure_source === "what-if" ? `the what-if (${d.whatif?.samples ?? "?"} runs)`
      : d.failure_source === "rul-analytic" ? `the remaining-life analytic${d.whatif?.ran ? ", the more cautious than the what-if" : ""}`
        : d.failure_source || "—"));
}

// -- the page --------------------------------------------------------------------------------------
export async function mount(view, { id } = {}) {
  let line = id || "";
  let showBefore = true;
  let machines = [];
  let plan = null;
  let previous = null;
  let comparison = null;
  let dispatch = null;
  let decision = null;
  let workorders = [];
  let bands = [];
  let flash = null;  // {kind, text}: the last approval's outcome
  let busy = false;
  let stopped = false;

  const lineSel = el("select", { name: "line", "aria-label": "line", onchange: () => {
    line = lineSel.value;
    history.replaceState(null, "", `#/production/${enc(line)}`);
    plan = previous = comparison = dispatch = decision = null;
    machines = [];
    load(true);
  } });
  const beforeBox = el("input", { type: "checkbox", name: "before", checked: showBefore, onchange: () => {
    showBefore = beforeBox.checked;
    drawGantt();
  } });
  const planInfo = el("span", { class: "muted", id: "pp-plan-info" });
  const errors = el("div", { id: "pp-errors" });
  const ganttHost = el("div", { class: "body flush", id: "pp-gantt" });
  const dispatchInfo = el("div", { class: "pp-dispatch", id: "pp-dispatch" });
  const kpiBody = el("div", { class: "body", id: "pp-kpi-body" });
  const decisionBody = el("div", { class: "body", id: "pp-decision" });
  view.append(
    el("div", { class: "page-head" }, el("h1", {}, "Production plan"),
      el("span", { class: "sub" }, "machines × plant time: jobs, maintenance and predicted failures; the re-plan and the decision behind it")),
    el("div", { class: "toolbar" }, lineSel,
      el("label", { class: "pp-toggle", title: "the plan this one replaced, as outlines under each row" }, beforeBox, " show the plan before the re-plan"),
      planInfo),
    errors,
    el("section", { class: "panel", id: "pp-plan" }, el("h2", {}, "Plan", el("span", { class: "right" }, dispatchInfo)), ganttHost),
    el("div", { class: "pp-grid" },
      el("section", { class: "panel", id: "pp-kpis" }, el("h2", {}, "KPIs before and after the re-plan"), kpiBody),
      el("section", { class: "panel", id: "pp-decision-panel" }, el("h2", {}, "Decision"), decisionBody)));

  const gantt = renderGantt(ganttHost, { rows: [], items: [], empty: "No plan to draw.", labelWidth: 120 });

  function plantNow() {
    const t = toMs(dispatch?.now);
    return Number.isFinite(t) ? t : Date.now();
  }

  function jobItems() {
    if (!plan) return [];
    const status = new Map((dispatch?.operations || []).map((o) => [opKey(o.order, o.op), o]));
    const orders = [...new Set(plan.operations.map((o) => o.order))].sort();
    const colour = new Map(orders.map((o, i) => [o, i % PALETTE]));
    return plan.operations.map((o) => {
      const s = status.get(opKey(o.order, o.op));
      const late = isLate(s);
      const state = s ? s.status : null;
      const progress = s && state === "running" ? ` ${Math.round((s.progress || 0) * 100)} %` : state === "done" ? " ✓" : "";
      return { id: jobId(colour.get(o.order), late, o.order, o.op), row: o.machine, kind: "job", state,
        start: o.start, end: o.end, label: `${late ? "⚠ " : ""}${o.order}/${o.op}${progress}`,
        detail: { order: o.order, step: o.op, quantity: o.quantity, speed: `${fmt(o.speed_rpm)} rpm`,
          progress: s ? `${Math.round((s.progress || 0) * 100)} % (${s.parts_done} parts)` : null,
          started: s?.started ? shortTime(s.started) : null, finished: s?.finished ? shortTime(s.finished) : null,
          "expected end": s?.expected_end && !s.finished ? shortTime(s.expected_end) : null,
          lateness: s && typeof s.lateness_s === "number" ? `${s.lateness_s >= 0 ? "+" : "−"}${duration(Math.abs(s.lateness_s) * 1000)}` : null,
          error: s?.error || null } };
    });
  }

  function drawGantt() {
    const machineOf = new Map();
    for (const m of machines) { machineOf.set(m.id, m.id); for (const p of m.parts) machineOf.set(p, m.id); }
    const rows = machines.map((m) => ({ id: m.id, href: `#/twin/${enc(m.id)}` }));
    const items = [...bands];
    items.push(...jobItems());
    for (const d of plan?.downtimes || []) {
      items.push({ row: d.machine, kind: "downtime", start: d.start, end: d.end, label: `planned stop: ${d.reason || "downtime"}`,
        detail: { reason: d.reason, "work order": d.work_order } });
    }
    for (const w of workorders) {
      const row = machineOf.get(w.asset);
      if (!row) continue;
      items.push({ id: w.id, row, kind: "maintenance", state: w.state, start: w.planned_start, end: w.planned_end,
        label: w.task, detail: { order: w.id, asset: w.asset, crew: (w.crew || []).join(", "), "expected cost": money(w.expected_cost) } });
    }
    if (showBefore && previous) {
      for (const o of previous.operations) {
        items.push({ id: `before|${o.order}|${o.op}`, row: o.machine, kind: "job", variant: "before", start: o.start, end: o.end,
          label: `${o.order}/${o.op}`, detail: { plan: previous.id } });
      }
    }
    const now = plantNow();
    // the range: the plan, its maintenance and now; a failure band beyond it shows up to as far again
    const core = items.filter((it) => it.kind !== "failure-band").flatMap((it) => [toMs(it.start), toMs(it.end)]).concat([now])
      .filter(Number.isFinite);
    let lo = Math.min(...core);
    let hi = Math.max(...core);
    const span = Math.max(hi - lo, 3_600_000 / 6);
    const bandEnd = Math.max(...bands.map((b) => toMs(b.end)).filter(Number.isFinite), -Infinity);
    hi = Math.max(hi, Math.min(bandEnd, hi + span));
    const pad = (hi - lo) * 0.03;
    lo -= pad;
    hi += pad;
    gantt.update({ rows, items, now, from: lo, to: hi });
    ganttHost.dataset.plan = plan?.id || "";
  }

  function renderDispatch() {
    if (!dispatch) { setChildren(dispatchInfo); return; }
    if (!dispatch.dispatching) {
      setChildren(dispatchInfo, el("span", { class: "faint", dataset: { dispatching: "false" }, title: dispatch.detail || "" },
        "not dispatched: planned times only"));
      return;
    }
    const c = dispatch.counts || {};
    const late = (dispatch.operations || []).filter(isLate).length;
    setChildren(dispatchInfo, el("span", { dataset: { dispatching: "true" } },
      ["done", "running", "dispatched", "pending", "failed"].filter((s) => c[s]).map((s) =>
        el("span", { class: `pp-count pp-${s}`, dataset: { count: s } }, `${c[s]} ${s}`)),
      late ? el("span", { class: "pp-count pp-late", dataset: { count: "late" } }, `${late} late`) : null));
  }

  function renderPlanInfo() {
    if (!plan) { planInfo.textContent = line ? `line ${line}: no plan yet` : ""; return; }
    setChildren(planInfo,
      el("span", { class: "mono" }, plan.id), ` · ${plan.reason || "plan"} · made ${shortTime(plan.created)}`,
      previous ? [" · replaced ", el("span", { class: "mono" }, previous.id)] : null,
      dispatch?.now ? el("span", { class: "faint" }, ` · plant time ${shortTime(dispatch.now)}`) : null);
  }

  function renderKpis() {
    setChildren(kpiBody, plan ? kpiTable(comparison, plan) : el("div", { class: "muted" }, "No plan on this line yet."));
  }

  let decisionKey = null;
  function renderDecision() {
    const wo = decision?.work_order ? workorders.find((w) => w.id === decision.work_order) : null;
    const key = JSON.stringify([decision?.id, decision?.status, decision?.updated, wo?.state, wo?.version, flash?.text, busy]);
    if (key === decisionKey) return;
    decisionKey = key;
    if (!decision) {
      setChildren(decisionBody, el("div", { class: "muted" }, "No decision on this line: a predictive alarm on one of its machines starts one."));
      return;
    }
    const d = decision;
    const who = el("input", { name: "actor", placeholder: "your name", "aria-label": "your name", maxlength: 128, value: actorName() || null });
    const approve = el("button", { class: "primary", dataset: { action: "approve" }, disabled: d.status !== "proposed" || busy, onclick: async () => {
      const name = who.value.trim();
      if (!name) { who.focus(); who.classList.add("invalid"); return; }
      if (name !== actorName()) setActorName(name);
      busy = true;
      flash = { kind: "wait", text: "Approving: the work order is approved and scheduled…" };
      renderDecision();
      try {
        decision = await approveDecision(d.id);
        flash = { kind: "ok", text: `Approved by ${name}: work order ${decision.work_order} is ${decision.work_order_state || "scheduled"}.` };
      } catch (err) {
        flash = { kind: "error", text: err.status === 409 ? `Cannot approve: ${err.message}` : `Could not approve: ${err.message}` };
      }
      busy = false;
      await load();
    } }, "Approve");
    const change = d.work_order ? el("a", { class: "btn", href: `#/workorders/${enc(d.work_order)}`, dataset: { action: "change" },
      title: "open the work order to reschedule it (another window, crew) or cancel it" }, "Change…") : null;
    const chosen = d.chosen || {};
    setChildren(decisionBody, el("div", { class: "pp-dec", dataset: { decision: d.id, status: d.status } },
      el("div", { class: "wo-title" }, el("h3", {}, chosen.name || "No choice yet"), decisionBadge(d.status),
        el("span", { class: "faint mono" }, d.id)),
      el("p", { class: "why", id: "pp-why" }, chosen.why || d.error || "—"),
      d.work_order ? el("div", { class: "pp-wo" }, "Work order ", el("a", { class: "mono", href: `#/workorders/${enc(d.work_order)}` }, d.work_order),
        " ", wo ? stateBadge(wo.state) : null, d.work_order_window ? el("span", { class: "muted" }, ` ${windowText(d.work_order_window.start, d.work_order_window.end)}`) : null) : null,
      d.production && d.production.replanned === false ? el("div", { class: "muted" }, `Production not re-planned: ${d.production.reason}`) : null,
      flash ? el("div", { class: `wo-msg ${flash.kind}`, role: "status" }, flash.text) : null,
      el("div", { class: "wo-actions" }, el("div", { class: "row" }, who, approve, change,
        d.status !== "proposed" ? el("span", { class: "faint" }, d.status === "approved" ? "approved" + (d.approved_by ? ` by ${d.approved_by}` : "") : `nothing to approve (${d.status})`) : null)),
      triggerView(d),
      el("h4", {}, "Options weighed"),
      optionsTable(d)));
  }

  function render() {
    renderPlanInfo();
    renderDispatch();
    drawGantt();
    renderKpis();
    renderDecision();
  }

  let loading = null;
  let bandsFor = "";
  async function load(full = false) {
    if (stopped) return;
    if (loading) { await loading; if (!full) return; }
    loading = (async () => {
      try {
        if (full || !lineSel.options.length) {
          const lines = await knownLines();
          if (line && !lines.includes(line)) lines.unshift(line);
          if (!line) line = lines[0] || "";
          setChildren(lineSel, lines.length ? lines.map((l) => el("option", { value: l, selected: l === line }, l))
            : el("option", { value: "" }, "no line has production orders"));
        }
        if (!line) {
          setChildren(errors, message("info", "No production orders yet: POST /api/production/orders, then POST /api/production/plans."));
          render();
          return;
        }
        if (full || !machines.length) machines = await lineMachines(line);
        const [current, disp, decisions, orders] = await Promise.all([
          maybe(`/api/production/plans/current?line=${enc(line)}`),
          maybe(`/api/production/dispatch?line=${enc(line)}`),
          getJSON("/api/decisions?limit=100").then((r) => r.items).catch(() => []),
          listWorkorders(),
        ]);
        const ids = new Set(machines.map((m) => m.id));
        const mine = decisions.filter((x) => x.line === line || ids.has(x.machine));
        decision = mine.find((x) => OPEN_DECISIONS.includes(x.status)) || mine[0] || null;
        dispatch = disp;
        workorders = orders.filter((w) => w.state !== "cancelled");
        if (current?.id !== plan?.id || (current && !previous && current.previous)) {
          previous = current?.previous ? await maybe(`/api/production/plans/${enc(current.previous)}`) : null;
          comparison = previous ? await maybe(`/api/production/compare?before=${enc(previous.id)}&after=${enc(current.id)}`) : null;
        }
        plan = current;
        const key = machines.map((m) => m.id).join("\n");
        if (key !== bandsFor || full) {
          bandsFor = key;
          bands = await failureBands(machines.map((m) => m.id));
        }
        setChildren(errors);
      } catch (e) {
        setChildren(errors, message("error", e.status === 404 ? `No line '${line}'.` : `Could not read the plan: ${e.message}`));
      }
      render();
    })();
    try { await loading; } finally { loading = null; }
  }

  await load(true);
  const later = coalesce(() => load(), 200);
  const stopStream = followWorkorders(later, later);
  const timer = setInterval(later, POLL_MS);
  const bandTimer = setInterval(() => { bandsFor = ""; }, 30_000);  // predictions move: read them again now and then
  return () => { stopped = true; stopStream(); clearInterval(timer); clearInterval(bandTimer); gantt.destroy(); };
}
