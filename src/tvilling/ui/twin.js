// One twin: live charts of its telemetry, anomaly score with its threshold, RUL with its band,
// analytic outputs, reported vs desired, the model's commands, its alarms and its event log.

import {
  describeModel, getJSON, getTwin, history, listAlarms, live, twinEvents, unitSymbol,
} from "./api.js";
import { mountCommands } from "./commands.js";
import { alarmCard, sortAlarms } from "./alarms.js";
import { anomalyChart, extend as extendChart, purge, rulChart, signalChart } from "./charts.js";
import { healthCell, rulText, watchHealth } from "./health.js";
import { followWorkorders, maintenanceRecord, orderLink, shortTime, stateBadge } from "./workorders.js";
import {
  ANALYTIC_OUTPUTS, anomalyBadge, coalesce, el, flatten, fmt, fmtTime, mergePatch, message,
  shortModel, setChildren
} from "./util.js";

const WINDOWS = { "15m": 900, "1h": 3600, "6h": 21600, "24h": 86400, "7d": 604800 };
const NUMERIC = new Set(["double", "float", "integer", "long"]);
const MAX_SIGNALS = 8;
const MAX_LOG = 300;

/** Numeric signal paths to chart: declared numbers first (telemetry before properties), then others reported. */
function signalPaths(twin, desc) {
  const out = [];
  const declared = [...desc.props.entries()]
    .filter(([p, d]) => NUMERIC.has(d.schema) && !ANALYTIC_OUTPUTS.has(p.split(".")[0]) && !d.writable)
    .sort((a, b) => (a[1].kind === "telemetry" ? 0 : 1) - (b[1].kind === "telemetry" ? 0 : 1));
  for (const [p] of declared) out.push(p);
  for (const [p, v] of Object.entries(flatten(twin.reported, "", {}, ANALYTIC_OUTPUTS))) {
    if (typeof v === "number" && !out.includes(p) && !ANALYTIC_OUTPUTS.has(p.split(".")[0]) && !desc.props.get(p)?.writable) {
      out.push(p);
    }
  }
  return out.slice(0, MAX_SIGNALS);
}

/** Why the detector is not scoring now (a stopped machine, an operating point it never learned), or null. */
function scoringNote(r) {
  for (const a of Object.values(r.analytics || {})) {
    if (typeof a?.scoring === "string" && a.scoring.startsWith("suspended")) return `not scored: ${a.scoring.slice(11)}`;
  }
  return null;
}

async function series(id, path, windowS) {
  const from = new Date(Date.now() - windowS * 1000).toISOString();
  let res = await history(id, path, { from, limit: 5000 }).catch(() => ({ items: [] }));
  if (res.next) {  // more raw points than we want to draw: averages per bucket instead
    const every = `${Math.max(1, Math.ceil(windowS / 600))}s`;
    res = await history(id, path, { from, every, agg: "avg" }).catch(() => res);
  }
  const x = [];
  const y = [];
  for (const p of res.items) {
    if (typeof p.value !== "number") continue;
    x.push(new Date(p.ts));
    y.push(p.value);
  }
  return { x, y };
}

function summarise(item) {
  if (item.kind === "command") {
    return `${item.name}(${item.request === null || item.request === undefined ? "" : fmt(item.request)}) → ${item.status}`;
  }
  if (item.kind === "desired") return `desired ${Object.keys(item.properties || {}).join(", ")} → ${item.status}`;
  if (item.kind === "alarm") return `${item.alarm?.severity} ${item.alarm?.rule}: ${item.alarm?.message || ""}`;
  const p = item.payload || {};
  const parts = [];
  for (const part of ["reported", "desired", "attributes"]) {
    if (!p[part] || !Object.keys(p[part]).length) continue;
    const flat = flatten(p[part], "", {}, ANALYTIC_OUTPUTS);
    const text = Object.entries(flat).slice(0, 6).map(([k, v]) => `${k}=${fmt(v)}`).join(" ");
    parts.push(`${part === "reported" ? "" : `${part}: `}${text}`);
  }
  if (item.type === "RelationshipSet") {
    const props = Object.entries(p.properties || {}).map(([k, v]) => `${k}=${fmt(v)}`).join(" ");
    parts.push(`${p.name || ""} → ${p.target || "?"}${props ? ` (${props})` : ""} [${p.id || ""}]`);
  } else if (item.type === "RelationshipDeleted") {
    parts.push(`relationship ${p.id || p.relationship || JSON.stringify(p)} deleted`);
  }
  return parts.join(" · ");
}

export async function mount(view, { id }) {
  let twin;
  try {
    twin = await getTwin(id);
  } catch (e) {
    view.append(message("error", e.status === 404 ? `No twin '${id}'.` : `Could not load twin '${id}': ${e.message}`));
    return () => {};
  }
  const desc = await describeModel(twin.model);
  let windowS = WINDOWS["1h"];
  const divs = [];  // Plotly charts to purge on leave

  // -- layout ------------------------------------------------------------------------------
  const headEl = el("div", { class: "twin-head" });
  const crumbs = el("div", { class: "crumbs" }, el("a", { href: "#/" }, "Fleet"));
  const charts = el("div", { class: "charts" });
  const winSeg = el("div", { class: "seg" });
  const chartsPanel = el("section", { class: "panel", id: "charts" },
    el("h2", {}, "Live signals", el("span", { class: "right" }, winSeg)), el("div", { class: "body flush" }, charts));
  const propsBody = el("div", { class: "body flush scroll" });
  const propsPanel = el("section", { class: "panel", id: "properties" }, el("h2", {}, "Reported vs desired"), propsBody);
  const analyticsBody = el("div", { class: "body" });
  const analyticsPanel = el("section", { class: "panel", id: "analytics" }, el("h2", {}, "Analytics"), analyticsBody);
  const physicsBody = el("div", { class: "body" });
  const physicsPanel = el("section", { class: "panel", id: "physics", hidden: true }, el("h2", {}, "Physics model",
    el("span", { class: "right faint" }, "measured vs simulated")), physicsBody);
  const cmdBody = el("div", { class: "body" });
  const cmdPanel = el("section", { class: "panel", id: "commands" }, el("h2", {}, "Commands"), cmdBody);
  const alarmBody = el("div", { class: "body flush" });
  const alarmPanel = el("section", { class: "panel", id: "twin-alarms" }, el("h2", {}, "Open alarms"), alarmBody);
  const maintBody = el("div", { class: "body" });
  const maintPanel = el("section", { class: "panel", id: "maintenance" }, el("h2", {}, "Maintenance",
    el("span", { class: "right" }, el("a", { href: `#/workorders/asset=${encodeURIComponent(twin.id)}` }, "work orders →"))),
  maintBody);
  const relBody = el("div", { class: "body rels" });
  const relPanel = el("section", { class: "panel", id: "relations" }, el("h2", {}, "Structure"), relBody);
  const logBody = el("tbody");
  const logPanel = el("section", { class: "panel", id: "events" }, el("h2", {}, "Event log",
    el("span", { class: "right faint" }, "newest first")),
  el("div", { class: "body flush events" }, el("table", { class: "grid" },
    el("thead", {}, el("tr", {}, ["Time", "Rev", "Type", "Change"].map((c) => el("th", {}, c)))), logBody)));
  view.append(crumbs, headEl, el("div", { class: "twin-grid" },
    el("div", { class: "col" }, chartsPanel, propsPanel, logPanel),
    el("div", { class: "col" }, analyticsPanel, physicsPanel, cmdPanel, alarmPanel, maintPanel, relPanel)));

  let healthNow = null;  // this twin's entry of GET /api/health (the index rolled up from its parts)

  // -- header ------------------------------------------------------------------------------
  const renderHead = () => {
    const r = twin.reported || {};
    setChildren(headEl,
      el("h1", {}, twin.id),
      el("span", { class: "badge state", title: twin.model }, desc.name || shortModel(twin.model)),
      typeof r.state === "string" ? el("span", { class: `badge state state-${r.state}` }, r.state) : null,
      "anomaly_score" in r || "anomaly" in r ? anomalyBadge(r) : null,
      healthNow ? healthCell(healthNow, twin.id, { withReason: true }) : null,
      r.fault_family ? el("span", { class: "badge state delta" }, r.fault_family) : null,
      el("span", { class: "meta" }, `revision ${twin.revision} · updated ${fmtTime(twin.updated)}`),
    );
  };

  // -- charts ------------------------------------------------------------------------------
  const chartByPath = new Map();  // path → {div, trace}
  let anomalyDiv = null;
  let rulDiv = null;
  // the RUL's unit and clock come from its analytic's configuration (GET /api/health): "plant h" when the plant's
  // time runs faster than the wall clock (the demo's 60×), so a chart over wall-clock time says which is which
  const rulUnit = () => {
    const u = healthNow?.rul_unit;
    if (u) return `${u.clock === "plant" ? "plant " : ""}${u.symbol}`;
    return /engine|turbofan/i.test(twin.model) ? "cycles" : "h";
  };

  /** A series with no point in the window still shows the twin's current value, at its time. */
  function withCurrent(s, path) {
    if (s.x.length) return s;
    const v = path.split(".").reduce((o, k) => (o && typeof o === "object" ? o[k] : undefined), twin.reported);
    const md = twin.metadata?.reported || {};
    const t = (md[path] || md[path.split(".")[0]])?.time || twin.updated;
    return typeof v === "number" ? { x: [new Date(t)], y: [v] } : s;
  }

  async function drawCharts() {
    for (const d of divs) purge(d);
    divs.length = 0;
    pending.clear();
    chartByPath.clear();
    anomalyDiv = null;
    rulDiv = null;
    setChildren(winSeg, ...Object.keys(WINDOWS).map((w) => el("button", {
      class: WINDOWS[w] === windowS ? "on" : "", onclick: () => { windowS = WINDOWS[w]; drawCharts(); } }, w)));
    const r = twin.reported || {};
    const paths = signalPaths(twin, desc);
    const cells = [];
    const jobs = [];
    if ("anomaly_score" in r || "anomaly" in r) {
      anomalyDiv = el("div", { class: "chart", id: "chart-anomaly_score" });
      cells.push(anomalyDiv);
      jobs.push(series(twin.id, "anomaly_score", windowS).then((s) => anomalyChart(anomalyDiv, s)));
    }
    if ("rul" in r || healthNow?.rul_unit) {
      rulDiv = el("div", { class: "chart", id: "chart-rul" });
      cells.push(rulDiv);
      jobs.push(Promise.all(["rul", "rul_p10", "rul_p90"].map((p) => series(twin.id, p, windowS)))
        .then(([m, lo, hi]) => rulChart(rulDiv, rulUnit(), m, lo, hi)));
    }
    paths.forEach((path, i) => {
      const div = el("div", { class: "chart", id: `chart-${path}`, dataset: { path } });
      cells.push(div);
      chartByPath.set(path, div);
      const unit = unitSymbol(desc.props.get(path)?.unit);
      jobs.push(series(twin.id, path, windowS).then((s) => signalChart(div, path, unit, withCurrent(s, path), i)));
    });
    const cols = cells.length > 6 ? 3 : 2;  // many signals: smaller charts, more of the page above the fold
    charts.classList.toggle("three", cols === 3);
    const rest = cells.length % cols;
    if (rest) cells[cells.length - 1].style.gridColumn = `span ${cols - rest + 1}`;
    if (!cells.length) cells.push(el("div", { class: "chart wide" }, el("div", { class: "chart-empty" }, "No numeric signals yet.")));
    setChildren(charts, ...cells);
    divs.push(...cells);
    await Promise.all(jobs);
    charts.dataset.ready = "1";
  }

  // points arriving between two redraws are drawn together: one extendTraces per chart per burst
  const pending = new Map();  // div → {trace index → [[x, y], ...]}
  const flushPoints = coalesce(() => {
    for (const [div, perTrace] of pending) extendChart(div, perTrace);
    pending.clear();
  }, 200);
  function queuePoints(div, perTrace) {
    const cur = pending.get(div) || {};
    for (const [i, pts] of Object.entries(perTrace)) (cur[i] ||= []).push(...pts);
    pending.set(div, cur);
    flushPoints();
  }

  function chartLive(reported, metaTime, fallbackTime) {
    const flat = flatten(reported, "", {}, ANALYTIC_OUTPUTS);
    const extend = queuePoints;
    const timeOf = (path) => new Date((metaTime?.[path] || metaTime?.[path.split(".")[0]])?.time || fallbackTime);
    let redraw = false;
    for (const [path, v] of Object.entries(flat)) {
      if (typeof v !== "number") continue;
      const div = chartByPath.get(path);
      if (div?.data) extend(div, { 0: [[timeOf(path), v]] });
      else if (!div && chartByPath.size < MAX_SIGNALS && !desc.props.get(path)?.writable
               && !ANALYTIC_OUTPUTS.has(path.split(".")[0])) redraw = true;  // a new signal: chart it too
    }
    if (typeof reported.anomaly_score === "number") {
      if (anomalyDiv?.data) {
        const p = [[timeOf("anomaly_score"), reported.anomaly_score]];
        extend(anomalyDiv, reported.anomaly_score >= 1 ? { 0: p, 1: p } : { 0: p });
      } else if (!anomalyDiv) redraw = true;
    }
    if (typeof reported.rul === "number") {
      if (rulDiv?.data) {
        const t = timeOf("rul");
        const add = { 2: [[t, reported.rul]] };
        if (typeof reported.rul_p10 === "number") add[0] = [[t, reported.rul_p10]];
        if (typeof reported.rul_p90 === "number") add[1] = [[t, reported.rul_p90]];
        extend(rulDiv, add);
      } else if (!rulDiv) redraw = true;
    }
    if (redraw) drawCharts();
  }

  // -- analytics ---------------------------------------------------------------------------
  const renderAnalytics = () => {
    const r = twin.reported || {};
    const has = [...ANALYTIC_OUTPUTS].some((k) => k !== "simulation" && k in r);  // the physics panel shows simulation
    if (!has) {
      setChildren(analyticsBody, message("info", "No analytic outputs on this twin yet."));
      return;
    }
    const rul = rulText(r, healthNow?.rul_unit);
    const stat = (k, v, small, id) => el("div", { class: "stat", dataset: { output: id } }, el("div", { class: "k" }, k),
      el("div", { class: "v" }, v, small ? el("small", {}, ` ${small}`) : null));
    const contrib = r.contributions && typeof r.contributions === "object"
      ? Object.entries(r.contributions).filter(([, s]) => typeof s === "number").sort((a, b) => b[1] - a[1]) : [];
    setChildren(analyticsBody,
      el("div", { class: "stats" },
        stat("Health", healthNow ? healthCell(healthNow, twin.id) : "—",
          healthNow?.reason ? `${healthNow.status}: ${healthNow.reason}${healthNow.source && healthNow.source !== twin.id ? ` (${healthNow.source})` : ""}` : "",
          "health"),
        stat("Anomaly score", typeof r.anomaly_score === "number" ? r.anomaly_score.toFixed(2) : "—",
          scoringNote(r) || (r.anomaly_score >= 1 ? "anomalous" : r.anomaly === true ? "held: easing below 1.0" : "/ 1.0"),
          "anomaly_score"),
        stat("RUL", rul ? rul.value : "—", rul ? rul.sub : "", "rul"),
        stat("Fault family", r.fault_family ? el("span", { class: "delta" }, r.fault_family) : "—", "", "fault_family")),
      contrib.length ? el("div", { class: "contrib", dataset: { output: "contributions" } },
        el("div", { class: "faint", style: { gridColumn: "1 / -1" } }, "Contributing signals"),
        contrib.slice(0, 8).map(([path, share]) => [
          el("span", { class: "mono" }, path),
          el("span", { class: "bar" }, el("span", { style: { width: `${Math.max(0, Math.min(1, share)) * 100}%` } })),
          el("span", { class: "pct" }, `${Math.round(share * 100)}%`)])) : null,
      r.analytics && typeof r.analytics === "object" ? el("div", { class: "versions", dataset: { output: "analytics" } },
        "Produced by ", Object.entries(r.analytics).map(([name, v], i) => [i ? ", " : "",
          el("code", {}, `${name} v${v?.version ?? "?"}`), v?.time ? ` at ${fmtTime(v.time)}` : ""])) : null,
    );
  };

  // -- physics model: shadow-mode residuals (reported.simulation.<name>), only when present ----
  const renderPhysics = () => {
    const sims = twin.reported?.simulation;
    const entries = sims && typeof sims === "object"
      ? Object.entries(sims).filter(([, v]) => v && typeof v === "object" && typeof v.residual_norm === "number") : [];
    physicsPanel.hidden = entries.length === 0;
    if (!entries.length) { physicsBody.replaceChildren(); return; }
    const stat = (k, v, small) => el("div", { class: "stat" }, el("div", { class: "k" }, k),
      el("div", { class: "v" }, v, small ? el("small", {}, ` ${small}`) : null));
    setChildren(physicsBody, entries.map(([name, sim]) => {
      const scores = Object.entries(flatten(sim.score || {})).filter(([, v]) => typeof v === "number")
        .sort((a, b) => b[1] - a[1]);
      const top = Math.max(10, ...scores.map(([, v]) => v));
      return el("div", { class: "physics", dataset: { simulation: name } },
        el("div", { class: "stats" },
          stat("Residual norm", el("span", { dataset: { output: "residual_norm" } }, sim.residual_norm.toFixed(2)),
            sim.residual_norm >= 8 ? "diverged" : sim.residual_norm >= 3 ? "drifting" : "fits"),
          stat("Worst output", sim.worst ? el("span", { class: "mono", dataset: { output: "worst" } }, sim.worst) : "—",
            `model ${name}`)),
        scores.length ? el("div", { class: "contrib", dataset: { output: "scores" } },
          el("div", { class: "faint", style: { gridColumn: "1 / -1" } }, "Score per output (residual over its usual size)"),
          scores.slice(0, 10).map(([path, v]) => [
            el("span", { class: "mono", dataset: { score: path } }, path),
            el("span", { class: "bar" }, el("span", { class: v >= 8 ? "bad" : v >= 3 ? "warn" : "ok",
              style: { width: `${Math.max(0, Math.min(1, v / top)) * 100}%` } })),
            el("span", { class: "pct" }, v.toFixed(1))])) : null);
    }));
  };

  // -- reported vs desired -----------------------------------------------------------------
  const renderProps = () => {
    const rep = flatten(twin.reported, "", {}, ANALYTIC_OUTPUTS);
    const des = flatten(twin.desired, "", {}, ANALYTIC_OUTPUTS);
    const paths = [...new Set([...desc.props.keys(), ...Object.keys(rep), ...Object.keys(des)])]
      .filter((p) => !ANALYTIC_OUTPUTS.has(p.split(".")[0]) && (p in rep || p in des || desc.props.get(p)?.writable));
    const rows = paths.map((p) => {
      const d = desc.props.get(p);
      const r = rep[p];
      const w = des[p];
      const md = twin.metadata?.reported || {};
      const meta = md[p] || md[p.split(".")[0]];
      let delta = el("span", { class: "faint" }, "");
      if (w !== undefined) {
        if (JSON.stringify(r) === JSON.stringify(w)) delta = el("span", { class: "insync" }, "in sync");
        else if (typeof r === "number" && typeof w === "number") delta = el("span", { class: "delta" }, `${w - r > 0 ? "+" : ""}${fmt(w - r)}`);
        else delta = el("span", { class: "delta" }, r === undefined ? "not reported" : "pending");
      }
      return el("tr", { dataset: { prop: p } },
        el("td", { class: "mono" }, p),
        el("td", { class: "faint" }, d ? `${d.kind}${d.writable ? " · writable" : ""}` : "undeclared"),
        el("td", { class: "num mono", dataset: { col: "reported" } }, fmt(r)),
        el("td", { class: "num mono", dataset: { col: "desired" } }, w === undefined ? el("span", { class: "faint" }, "—") : fmt(w)),
        el("td", { class: "num", dataset: { col: "delta" } }, delta),
        el("td", { class: "muted" }, unitSymbol(d?.unit)),
        el("td", { class: "muted" }, meta?.time ? fmtTime(meta.time) : ""),
        el("td", { class: meta?.quality && meta.quality !== "good" ? "delta" : "faint" }, meta?.quality || ""));
    });
    setChildren(propsBody, el("table", { class: "grid" },
      el("thead", {}, el("tr", {}, ["Property", "Kind", "Reported", "Desired", "Delta", "Unit", "Time", "Quality"]
        .map((c, i) => el("th", { class: i >= 2 && i <= 4 ? "num" : "" }, c)))),
      el("tbody", {}, rows.length ? rows : el("tr", {}, el("td", { colspan: 8, class: "muted" }, "No properties.")))));
  };

  // -- commands (commands.js: confirmation of disruptive ones, the device's answer, the effect) ---
  const cmds = await mountCommands(cmdBody, { twin: () => twin, desc });

  // -- alarms ------------------------------------------------------------------------------
  let alarms = await listAlarms(["active", "acknowledged"], { twin: twin.id }).catch(() => null);
  const alarmMap = new Map((alarms || []).map((a) => [a.id, a]));
  const alarmErr = (text) => alarmBody.prepend(message("error", text));
  const renderAlarms = () => {
    if (alarms === null) {
      setChildren(alarmBody, el("div", { class: "body muted" }, "No alarm service on this server."));
      return;
    }
    const list = sortAlarms([...alarmMap.values()].filter((a) => a.state !== "cleared"));
    setChildren(alarmBody, list.length ? list.map((a) => alarmCard(a, alarmErr)) : el("div", { class: "body muted" }, "None."));
  };

  // -- maintenance record (GET /api/twins/{id}/maintenance), again on each of its work orders' changes --
  const renderMaintenance = (rec) => {
    if (!rec) {
      setChildren(maintBody, el("span", { class: "muted" }, "No maintenance record on this server."));
      return;
    }
    const stat = (k, v, small, key) => el("div", { class: "stat", dataset: { maint: key } }, el("div", { class: "k" }, k),
      el("div", { class: "v" }, v), small ? el("div", { class: "s" }, small) : null);
    const day = (v) => (typeof v === "string" && !Number.isNaN(Date.parse(v))
      ? new Date(v).toLocaleDateString("en-GB", { day: "2-digit", month: "short", year: "numeric" }) : fmt(v));
    const last = rec.last_maintenance;
    const hours = rec.operating_hours_since_maintenance;
    const source = String(rec.operating_hours_source || "");
    const sub = (title, ...rows) => [el("div", { class: "maint-sub" }, title), ...rows];
    setChildren(maintBody,
      el("div", { class: "stats" },
        stat("Last maintenance", last ? shortTime(last.done) : "—", last ? last.task : "none recorded", "last"),
        stat("Hours since", typeof hours === "number" ? `${fmt(hours)} h` : "—", typeof hours === "number"
          ? (source.startsWith("reported:") ? `running hours (${source.slice(9)})` : "since the last order") : "", "hours"),
        stat("Orders done", String(rec.workorders_done), "", "done"),
        stat("Open orders", String(rec.open_workorders.length), "", "open")),
      rec.open_workorders.length ? sub("Open work orders", el("table", { class: "grid compact", id: "maint-open" }, el("tbody", {},
        rec.open_workorders.map((o) => el("tr", { dataset: { workorder: o.id, state: o.state } },
          el("td", {}, stateBadge(o.state)), el("td", {}, orderLink(o.id, o.task)),
          el("td", { class: "muted nowrap", title: `${o.planned_start} → ${o.planned_end}` }, shortTime(o.planned_start))))))) : null,
      rec.parts_replaced.length ? sub("Parts replaced", el("table", { class: "grid compact", id: "maint-parts" }, el("tbody", {},
        rec.parts_replaced.map((p) => el("tr", { dataset: { part: p.part } }, el("td", { class: "mono" }, p.part),
          el("td", { class: "num" }, `×${p.quantity}`), el("td", { class: "muted" }, `last ${shortTime(p.last_replaced)}`)))))) : null,
      rec.installed.length ? sub("Installed", el("table", { class: "grid compact", id: "maint-installed" }, el("tbody", {},
        rec.installed.map((p) => el("tr", { dataset: { twin: p.twin } },
          el("td", { title: p.relationship || "" }, p.twin === twin.id ? el("span", { class: "faint" }, "this asset")
            : el("a", { class: "tid", href: `#/twin/${encodeURIComponent(p.twin)}` }, p.twin)),
          el("td", { class: "mono" }, p.part_number ?? "—"),
          el("td", { class: "muted nowrap" }, p.install_date ? day(p.install_date) : "")))))) : null,
      rec.history.length ? sub("Recent work", el("table", { class: "grid compact", id: "maint-history" }, el("tbody", {},
        rec.history.slice(0, 5).map((h) => el("tr", { dataset: { workorder: h.id } },
          el("td", { class: "muted nowrap", title: h.done }, shortTime(h.done)), el("td", {}, orderLink(h.id, h.task)),
          el("td", { class: "mono" }, Object.entries(h.parts || {}).map(([p, q]) => `${p} ×${q}`).join(", "))))))) : null);
  };
  const loadMaintenance = coalesce(async () => {
    renderMaintenance(await maintenanceRecord(twin.id).catch(() => null));
  }, 500);
  const hoursMoved = coalesce(loadMaintenance, 5000);  // the machine's running hours: at most every 5 s

  // -- structure ---------------------------------------------------------------------------
  const renderRelations = async () => {
    const incoming = await getJSON(`/api/twins/${encodeURIComponent(twin.id)}/relationships?incoming=true`)
      .then((r) => r.items).catch(() => []);
    const link = (tid) => el("a", { href: `#/twin/${encodeURIComponent(tid)}` }, tid);
    setChildren(crumbs, el("a", { href: "#/" }, "Fleet"), ...incoming.slice(0, 1).flatMap((r) => [" / ", link(r.source)]),
      " / ", el("span", {}, twin.id));
    const rows = [
      ...incoming.map((r) => el("div", { class: "rel" }, el("span", { class: "n" }, `↑ ${r.name}`), link(r.source))),
      ...(twin.relationships || []).map((r) => el("div", { class: "rel" }, el("span", { class: "n" }, `↓ ${r.name}`),
        link(r.target), r.properties && Object.keys(r.properties).length
          ? el("span", { class: "faint" }, Object.entries(r.properties).map(([k, v]) => `${k}=${fmt(v)}`).join(" ")) : null)),
    ];
    setChildren(relBody, ...(rows.length ? rows : [el("span", { class: "muted" }, "No relationships.")]));
  };

  // -- event log ---------------------------------------------------------------------------
  const logRow = (item) => el("tr", { dataset: { type: item.type || item.kind } },
    el("td", { class: "muted", title: item.time || item.updated || "" }, fmtTime(item.time || item.updated || item.alarm?.updated)),
    el("td", { class: "faint" }, item.revision ?? ""),
    el("td", {}, item.kind === "alarm" ? item.type : item.kind === "command" ? "command" : item.kind === "desired" ? "desired" : item.type),
    el("td", { class: "payload", title: summarise(item) }, summarise(item)));
  const logItem = (item) => {
    logBody.prepend(logRow(item));
    while (logBody.children.length > MAX_LOG) logBody.lastChild.remove();
  };
  const firstEvents = await twinEvents(twin.id, Math.max(0, twin.revision - 100)).catch(() => ({ items: [] }));
  for (const e of firstEvents.items) logItem({ ...e, kind: "event" });

  // -- first render, then live -------------------------------------------------------------
  renderHead();
  renderAnalytics();
  renderPhysics();
  renderProps();
  renderAlarms();
  loadMaintenance();
  renderRelations();
  const drawn = drawCharts();
  const refresh = coalesce(() => { renderHead(); renderAnalytics(); renderPhysics(); renderProps(); cmds.twinChanged(); });
  const healthWatch = watchHealth((items) => {
    const had = Boolean(healthNow?.rul_unit);
    healthNow = items[twin.id] || null;
    refresh();
    if (!had && healthNow?.rul_unit) drawCharts();  // the RUL chart again, now with its unit and clock
  });

  const stopMaintenance = followWorkorders((item) => { if (item.twin === twin.id) loadMaintenance(); }, loadMaintenance);
  const stop = live({ twins: twin.id }, async (item) => {
    healthWatch.kick();
    if (item.kind === "command") {
      cmds.update(item);
      logItem(item);
      return;
    }
    if (item.kind === "alarm") {
      if (alarms === null) alarms = [];
      alarmMap.set(item.alarm.id, item.alarm);
      renderAlarms();
      logItem(item);
      return;
    }
    if (item.kind === "desired") { logItem(item); return; }
    if (item.kind !== "event" || item.twin !== twin.id) return;
    logItem(item);
    if (item.type === "TwinPatched") {
      const p = item.payload || {};
      for (const part of ["reported", "desired", "attributes"]) if (p[part]) twin[part] = mergePatch(twin[part] || {}, p[part]);
      if (p.metadata) twin.metadata = mergePatch(twin.metadata || {}, p.metadata);
      twin.revision = item.revision;
      twin.updated = item.time;
      if (p.reported && "operatingHours" in p.reported) hoursMoved();
      if (p.reported) { await drawn; chartLive(p.reported, p.metadata?.reported, item.time); }
      refresh();
    } else if (item.type === "TwinDeleted") {
      view.prepend(message("error", "This twin was deleted."));
    } else {
      twin = await getTwin(twin.id).catch(() => twin);
      refresh();
      if (item.type.startsWith("Relationship")) renderRelations();
      else drawCharts();
    }
  });

  return () => {
    stop();
    cmds.stop();
    stopMaintenance();
    healthWatch.stop();
    for (const d of divs) purge(d);
  };
}
