// The twin hierarchy as a left-to-right tree (line → machines → bearings, spindle), in SVG;
// each node coloured by health and anomaly, with its open alarms; click a node to open the twin.

import { listAlarms, listTwins, live } from "./api.js";
import { alarmsByTwin, hierarchy } from "./fleet.js";
import { STATUS_CLASS, rulText, watchHealth } from "./health.js";
import { coalesce, el, mergePatch, message, shortModel, setChildren } from "./util.js";

const NODE_W = 250;
const NODE_H = 46;
const COL_GAP = 90;
const ROW_GAP = 12;
const PAD = 16;
const SEV_COLORS = { critical: "#e5534b", major: "#ec8a3d", minor: "#d9b43a", warning: "#5aa7e0" };

/** Positions: leaves one per row, a parent centred on its children. */
export function layout(h, colGap = COL_GAP) {
  const pos = new Map();
  let row = 0;
  const seen = new Set();
  const place = (id, depth) => {
    if (seen.has(id)) return null;
    seen.add(id);
    const kids = (h.children.get(id) || []).map((k) => place(k.id, depth + 1)).filter((y) => y !== null);
    const y = kids.length ? (Math.min(...kids) + Math.max(...kids)) / 2 : row++ * (NODE_H + ROW_GAP);
    pos.set(id, { x: depth * (NODE_W + colGap), y, depth });
    return y;
  };
  for (const r of h.roots) place(r, 0);
  return pos;
}

export async function mount(view) {
  view.append(el("div", { class: "page-head" }, el("h1", {}, "Twin graph"),
    el("span", { class: "sub" }, "the hierarchy from the twins' relationships; click a twin to open it"),
    el("div", { class: "spacer" }),
    el("div", { class: "legend" },
      el("span", {}, el("i", { style: { background: "var(--good)" } }), "health ≥ 80%"),
      el("span", {}, el("i", { style: { background: "var(--fair)" } }), "50–80% (watch)"),
      el("span", {}, el("i", { style: { background: "var(--poor)" } }), "< 50% (poor, critical)"),
      el("span", {}, el("i", { style: { background: "var(--faint)" } }), "no analytics"),
      el("span", { class: "muted" }, "a parent shows its worst part"))));
  const wrap = el("div", { class: "panel graph-wrap" });
  view.append(wrap);
  let twins;
  try {
    twins = new Map((await listTwins()).map((t) => [t.id, t]));
  } catch (e) {
    view.append(message("error", `Could not list twins: ${e.message}`));
    return () => {};
  }
  let alarms = await listAlarms(["active", "acknowledged"]).catch(() => null);

  const render = () => {
    const h = hierarchy([...twins.values()]);
    const depth = Math.max(0, ...Array.from(layout(h).values(), (p) => p.depth));
    const avail = (wrap.clientWidth || 1200) - 2 * PAD - (depth + 1) * NODE_W;
    const pos = layout(h, depth ? Math.max(COL_GAP, Math.min(260, avail / depth)) : COL_GAP);
    const byTwin = alarmsByTwin(alarms);
    let maxX = 0;
    let maxY = 0;
    for (const p of pos.values()) { maxX = Math.max(maxX, p.x); maxY = Math.max(maxY, p.y); }
    const width = maxX + NODE_W + 2 * PAD;
    const height = maxY + NODE_H + 2 * PAD;
    const edges = [];
    for (const [src, kids] of h.children) {
      const a = pos.get(src);
      for (const k of kids) {
        const b = pos.get(k.id);
        if (!a || !b) continue;
        const x1 = a.x + NODE_W + PAD;
        const y1 = a.y + NODE_H / 2 + PAD;
        const x2 = b.x + PAD;
        const y2 = b.y + NODE_H / 2 + PAD;
        const mx = (x1 + x2) / 2;
        edges.push(el("path", { class: "edge", d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}` }));
        edges.push(el("text", { class: "edge-label", x: x2 - 6, y: y2 - 4, "text-anchor": "end" }, k.rel.name));
      }
    }
    const nodes = [];
    for (const [id, p] of pos) {
      const t = twins.get(id);
      const r = t?.reported || {};
      const hi = health?.[id];
      const a = byTwin.get(id);
      const label = id.length > 24 ? `${id.slice(0, 23)}…` : id;
      const rul = rulText(r, hi?.rul_unit);
      const hv = [typeof r.state === "string" ? r.state : null,
        typeof hi?.health === "number" ? `health ${Math.round(hi.health * 100)}%` : null,
        typeof r.anomaly_score === "number" ? `score ${r.anomaly_score.toFixed(2)}` : null,
        rul ? (typeof r.rul === "number" ? `RUL ${rul.value} ${rul.sub.split(" (")[0]}` : "RUL: no trend") : null,
      ].filter(Boolean).join(" · ");
      nodes.push(el("g", {
        class: `node ${STATUS_CLASS[hi?.status] || "na"}`, transform: `translate(${p.x + PAD},${p.y + PAD})`,
        "data-twin": id, role: "link", tabindex: 0,
        onclick: () => { location.hash = `#/twin/${encodeURIComponent(id)}`; },
        onkeydown: (e) => { if (e.key === "Enter") location.hash = `#/twin/${encodeURIComponent(id)}`; },
      },
      el("title", {}, `${id} (${t?.model || ""})${hi?.reason ? `\nhealth ${Math.round(hi.health * 100)}% (${hi.status}): ${hi.reason}${hi.source && hi.source !== id ? ` — ${hi.source}` : ""}` : ""}`),
      el("rect", { class: "box", width: NODE_W, height: NODE_H, rx: 5 }),
      el("rect", { class: "stripe", width: 4, height: NODE_H, rx: 2 }),
      el("text", { x: 14, y: 19 }, label),
      el("text", { class: "model", x: NODE_W - (a ? 22 : 10), y: 19, "text-anchor": "end" }, shortModel(t?.model)),
      el("text", { class: "hv", x: 14, y: 36 }, hv || "no analytics"),
      a ? el("circle", { class: "alarm-dot", cx: NODE_W - 10, cy: 12, r: 5, fill: SEV_COLORS[a.worst] || "#8794a3" },
        el("title", {}, `${a.count} open alarm(s), worst ${a.worst}`)) : null));
    }
    setChildren(wrap, twins.size ? el("svg", { class: "graph", width, height, viewBox: `0 0 ${width} ${height}` },
      el("g", {}, edges), el("g", {}, nodes)) : message("info", "No twins yet."));
  };
  let health = null;
  render();
  const later = coalesce(render, 500);  // a busy plant: a few redraws a second at most
  const healthWatch = watchHealth((items) => { health = items; later(); });
  const reloadAlarms = coalesce(async () => {
    alarms = await listAlarms(["active", "acknowledged"]).catch(() => alarms);
    later();
  }, 1000);
  const stop = live({}, async (item) => {
    healthWatch.kick();
    if (item.kind === "alarm") {  // the list again: a condition's row carries the ancestors it affects
      reloadAlarms();
      later();
      return;
    }
    if (item.kind !== "event") return;
    if (item.type === "TwinPatched" && twins.has(item.twin)) {
      const t = twins.get(item.twin);
      if (item.payload?.reported) t.reported = mergePatch(t.reported || {}, item.payload.reported);
    } else if (item.type === "TwinDeleted") {
      twins.delete(item.twin);
    } else {
      const res = await fetch(`/api/twins/${encodeURIComponent(item.twin)}`).catch(() => null);
      if (res?.ok) { const t = await res.json(); twins.set(t.id, t); }
    }
    later();
  });
  return () => { stop(); healthWatch.stop(); };
}
