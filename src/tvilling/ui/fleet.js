// Fleet overview: every twin with its health, key values, anomaly state and open alarms,
// grouped by the twin hierarchy (line → machines → components), updated live.

import { listAlarms, listTwins, live, describeModel, unitSymbol } from "./api.js";
import { healthCell, watchHealth } from "./health.js";
import {
  ANALYTIC_OUTPUTS, anomalyBadge, ago, coalesce, el, flatten, fmt, mergePatch, message, sevPill,
  sevRank, shortModel, setChildren
} from "./util.js";

/** Parent/child structure from the twins' relationships: {roots, children: Map(id → [{id, rel}])}. */
export function hierarchy(twins) {
  const byId = new Map(twins.map((t) => [t.id, t]));
  const children = new Map();
  const hasParent = new Set();
  for (const t of twins) {
    const rels = [...(t.relationships || [])].sort((a, b) =>
      (a.properties?.position ?? 1e9) - (b.properties?.position ?? 1e9) || a.name.localeCompare(b.name)
      || a.target.localeCompare(b.target));
    for (const r of rels) {
      if (!byId.has(r.target) || hasParent.has(r.target) || r.target === t.id) continue;
      hasParent.add(r.target);
      if (!children.has(t.id)) children.set(t.id, []);
      children.get(t.id).push({ id: r.target, rel: r });
    }
  }
  const roots = twins.filter((t) => !hasParent.has(t.id)).map((t) => t.id).sort();
  return { roots, children };
}

/** Depth-first order of the hierarchy: [{id, depth, last, rel, trail}]. */
export function walk(h) {
  const out = [];
  const seen = new Set();
  const visit = (id, depth, rel, trail, last) => {
    if (seen.has(id)) return;
    seen.add(id);
    out.push({ id, depth, rel, trail, last });
    const kids = h.children.get(id) || [];
    kids.forEach((k, i) => visit(k.id, depth + 1, k.rel, [...trail, last], i === kids.length - 1));
  };
  h.roots.forEach((id, i) => visit(id, 0, null, [], i === h.roots.length - 1));
  return out;
}

/** Open alarms per twin: {count, worst}. */
export function alarmsByTwin(alarms) {
  const out = new Map();
  for (const a of alarms || []) {
    if (a.state === "cleared" || a.shelved || a.source) continue;  // copies count at their origin, via `affected`
    for (const twin of [a.twin, ...(a.affected || [])]) {
      const cur = out.get(twin) || { count: 0, worst: null, unacked: 0 };
      cur.count++;
      if (a.state === "active") cur.unacked++;
      if (sevRank(a.severity) < sevRank(cur.worst)) cur.worst = a.severity;
      out.set(twin, cur);
    }
  }
  return out;
}

/** Up to three numeric readings: declared telemetry first (in model order), then other numbers. */
function keyValues(twin, desc) {
  const flat = flatten(twin.reported, "", {}, ANALYTIC_OUTPUTS);
  const numeric = Object.keys(flat).filter((p) => typeof flat[p] === "number" && !ANALYTIC_OUTPUTS.has(p.split(".")[0])
    && !desc?.props.get(p)?.writable);
  const declared = desc ? [...desc.props.keys()] : [];
  const rank = (p) => {
    const d = desc?.props.get(p);
    return (d?.kind === "telemetry" ? 0 : d ? 1000 : 2000) + (d ? declared.indexOf(p) : 0);
  };
  return numeric.sort((a, b) => rank(a) - rank(b)).slice(0, 3).map((path) => {
    const unit = unitSymbol(desc?.props.get(path)?.unit);
    return el("span", { class: "kv", dataset: { path } }, el("span", { class: "k" }, path),
      el("span", { class: "v" }, fmt(flat[path])), unit ? el("span", { class: "u" }, unit) : null);
  });
}

function twig(entry) {
  if (entry.depth === 0) return "";
  const lead = entry.trail.slice(1).map((last) => (last ? "   " : "│  ")).join("");
  return `${lead}${entry.last ? "└─ " : "├─ "}`;
}

export async function mount(view) {
  view.append(el("div", { class: "page-head" }, el("h1", {}, "Fleet"),
    el("span", { class: "sub" }, "every twin, its health, key values and open alarms — live")));
  const tiles = el("div", { class: "tiles" });
  const table = el("div", { class: "panel" });
  view.append(tiles, table);

  let twins;
  try {
    twins = await listTwins();
  } catch (e) {
    view.append(message("error", `Could not list twins: ${e.message}`));
    return () => {};
  }
  const state = new Map(twins.map((t) => [t.id, t]));
  const descs = new Map();
  await Promise.all([...new Set(twins.map((t) => t.model))].map(async (m) => descs.set(m, await describeModel(m))));
  let alarms = await listAlarms(["active", "acknowledged"]).catch(() => null);
  const changed = new Set();

  const render = () => {
    const list = [...state.values()];
    const h = hierarchy(list);
    const order = walk(h);
    const byTwin = alarmsByTwin(alarms);
    const anomalous = list.filter((t) => t.reported?.anomaly === true || t.reported?.anomaly_score >= 1).length;
    const rated = list.filter((t) => typeof health?.[t.id]?.health === "number");
    const lowest = rated.reduce((w, t) => (w && health[w.id].health <= health[t.id].health ? w : t), null);
    const open = (alarms || []).filter((a) => a.state !== "cleared" && !a.shelved && !a.source);
    const crit = open.filter((a) => a.severity === "critical").length;
    const unacked = open.filter((a) => a.state === "active").length;
    setChildren(tiles,
      tile("Twins", list.length, `${h.roots.length} root${h.roots.length === 1 ? "" : "s"}`),
      tile("Machines", list.filter((t) => shortModel(t.model) === "Machine").length,
        `${list.filter((t) => t.reported?.state === "running").length} running`),
      tile("Anomalous", anomalous, "score ≥ 1.0", anomalous ? "alert" : ""),
      tile("Lowest health", lowest ? `${Math.round(health[lowest.id].health * 100)}%` : "—",
        lowest ? `${health[lowest.id].source || lowest.id}: ${health[lowest.id].reason}` : "no analytics yet",
        lowest && health[lowest.id].status === "critical" ? "alert" : lowest && health[lowest.id].status !== "good" ? "warn" : ""),
      tile("Open alarms", alarms === null ? "—" : open.length, alarms === null ? "alarm API absent" : `${unacked} unacked`,
        open.length ? "warn" : ""),
      tile("Critical", alarms === null ? "—" : crit, "", crit ? "alert" : ""),
    );
    const rows = [];
    for (const entry of order) {
      const t = state.get(entry.id);
      if (!t) continue;
      const a = byTwin.get(t.id);
      const desc = descs.get(t.model);
      const st = t.reported?.state;
      rows.push(el("tr", { class: a?.worst ? `sev-row-${a.worst}` : "", dataset: { twin: t.id } },
        el("td", {}, el("span", { class: "tree" }, entry.depth ? el("span", { class: "twig" }, twig(entry)) : null,
          el("a", { class: "tid", href: `#/twin/${encodeURIComponent(t.id)}` }, t.id))),
        el("td", { class: "muted" }, desc?.name || shortModel(t.model)),
        el("td", {}, typeof st === "string" ? el("span", { class: `badge state state-${st}` }, st) : el("span", { class: "faint" }, "—")),
        el("td", {}, healthCell(health?.[t.id], t.id)),
        el("td", {}, anomalyBadge(t.reported),
          t.reported?.fault_family ? el("span", { class: "fault", title: "fault family" }, t.reported.fault_family) : null),
        el("td", { class: changed.has(t.id) ? "changed" : "" }, el("div", { class: "kvs" }, keyValues(t, desc))),
        el("td", { title: a ? `${a.count} open condition(s) on or below this twin; the worst is ${a.worst}` : "" }, a ? [sevPill(a.worst, `${a.count} open · worst ${a.worst}`)] : el("span", { class: "faint" }, alarms === null ? "—" : "0")),
        el("td", { class: "muted", title: t.updated }, ago(t.updated)),
      ));
    }
    changed.clear();
    setChildren(table, el("table", { class: "grid fleet" },
      el("thead", {}, el("tr", {}, ["Twin", "Model", "State", "Health", "Anomaly · fault", "Key values", "Alarms",
        "Updated"].map((c) => el("th", {}, c)))),
      el("tbody", {}, rows.length ? rows : el("tr", {}, el("td", { colspan: 8, class: "muted" }, "No twins yet.")))));
  };
  let health = null;  // GET /api/health: the one health picture, rolled up the hierarchy
  render();
  const later = coalesce(render, 250);  // a busy plant: a few redraws a second at most
  const healthWatch = watchHealth((items) => { health = items; later(); });
  const reloadAlarms = coalesce(async () => {
    alarms = await listAlarms(["active", "acknowledged"]).catch(() => alarms);
    later();
  }, 1000);

  const stopTwins = live({}, async (item) => {
    if (item.kind === "alarm") {  // the list again: a condition's row carries the ancestors it affects
      reloadAlarms();
      healthWatch.kick();
      later();
      return;
    }
    if (item.kind !== "event" || !item.twin) return;
    healthWatch.kick();
    if (item.type === "TwinDeleted") {
      state.delete(item.twin);
    } else if (item.type === "TwinPatched" && state.has(item.twin)) {
      const t = state.get(item.twin);
      for (const part of ["reported", "desired", "attributes"]) {
        if (item.payload?.[part]) t[part] = mergePatch(t[part] || {}, item.payload[part]);
      }
      t.updated = item.time;
      t.revision = item.revision;
    } else {
      try {
        const res = await fetch(`/api/twins/${encodeURIComponent(item.twin)}`);
        if (res.ok) {
          const t = await res.json();
          if (!descs.has(t.model)) descs.set(t.model, await describeModel(t.model));
          state.set(t.id, t);
        }
      } catch { /* the next change brings it */ }
    }
    changed.add(item.twin);
    later();
  });
  const tick = setInterval(later, 5000);  // keep "updated … ago" honest
  return () => { stopTwins(); clearInterval(tick); healthWatch.stop(); };
}

function tile(k, v, sub, cls = "") {
  return el("div", { class: `tile ${cls}` }, el("div", { class: "k" }, k),
    el("div", { class: "v" }, String(v), sub ? el("small", {}, sub) : null));
}
