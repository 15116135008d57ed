// A Gantt chart in SVG: rows (machines, assets) against time, with jobs, maintenance blocks, predicted
// failure bands (a translucent p10–p90 range with its p50) and downtime, a time axis, a "now" line and
// hover tooltips. The work-orders page draws orders per asset with it; the production plan draws jobs,
// maintenance and failure bands, and a plan before/after a change (items with variant "before").

import { el, fmtTime } from "./util.js";

const NS = "http://www.w3.org/2000/svg";
export const KINDS = ["job", "maintenance", "failure-band", "downtime"];
const KIND_LABEL = { job: "job", maintenance: "maintenance", "failure-band": "predicted failure (p10–p90)",
  downtime: "downtime" };
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const STEPS = [MINUTE, 5 * MINUTE, 15 * MINUTE, 30 * MINUTE, HOUR, 2 * HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR, DAY,
  2 * DAY, 7 * DAY, 14 * DAY, 28 * DAY];
const AXIS_H = 30;
const LANE_H = 18;
const LANE_GAP = 3;
const ROW_PAD = 5;
const BEFORE_H = 7;
const CHAR_W = 6.3;  // at 11px: enough to decide whether a label fits inside its bar
let instances = 0;

/** A time as epoch milliseconds: a Date, an ISO 8601 text or a number of milliseconds; NaN otherwise. */
export function toMs(v) {
  if (v instanceof Date) return v.getTime();
  if (typeof v === "number") return v;
  if (typeof v === "string") return Date.parse(v);
  return NaN;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, String(v));
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

/** A duration as "45 min", "3.5 h", "2.1 d". */
export function duration(ms) {
  if (!Number.isFinite(ms)) return "";
  if (ms < HOUR) return `${Math.round(ms / MINUTE)} min`;
  if (ms < 2 * DAY) return `${+(ms / HOUR).toFixed(1)} h`;
  return `${+(ms / DAY).toFixed(1)} d`;
}

/** Ticks for [from, to] over `width` pixels: a step giving ≥ 80 px per tick, aligned to local time. */
function ticks(from, to, width) {
  const span = to - from;
  const step = STEPS.find((s) => (width * s) / span >= 80) || STEPS[STEPS.length - 1];
  const out = [];
  if (step >= DAY) {  // local midnights (a day of 23 or 25 hours keeps them)
    const d = new Date(from);
    d.setHours(0, 0, 0, 0);
    for (let t = d.getTime(); t <= to && out.length < 400;) {
      if (t >= from) out.push(t);
      const next = new Date(t + step + 2 * HOUR);
      next.setHours(0, 0, 0, 0);
      t = next.getTime();
    }
  } else {
    const tz = new Date(from).getTimezoneOffset() * MINUTE;
    const first = from - ((((from - tz) % step) + step) % step);
    for (let t = first; t <= to && out.length < 400; t += step) if (t >= from) out.push(t);
  }
  return { step, at: out };
}

function tickLabel(t, step, prev) {
  const d = new Date(t);
  const pad = (n) => String(n).padStart(2, "0");
  const day = d.toLocaleDateString("en-GB", { day: "2-digit", month: "short" });
  if (step >= DAY) return [day, d.toLocaleDateString("en-GB", { weekday: "short" })];
  const newDay = prev === null || new Date(prev).toDateString() !== d.toDateString();
  return [`${pad(d.getHours())}:${pad(d.getMinutes())}`, newDay ? day : ""];
}

/** Rows as {id, label, href, sub}; rows only items name are added after the given ones. */
function normaliseRows(rows, items) {
  const out = [];
  const seen = new Set();
  for (const r of rows || []) {
    const row = typeof r === "string" ? { id: r } : { ...r };
    if (row.id === undefined || seen.has(String(row.id))) continue;
    row.id = String(row.id);
    seen.add(row.id);
    out.push(row);
  }
  for (const it of items) {
    if (!seen.has(String(it.row))) { seen.add(String(it.row)); out.push({ id: String(it.row) }); }
  }
  return out;
}

/** Bars (jobs, maintenance) packed into lanes so that none overlaps another in its row. */
function pack(bars) {
  const laneEnds = [];
  for (const b of bars.sort((a, c) => a.s - c.s || a.e - c.e)) {
    let lane = laneEnds.findIndex((end) => end <= b.s);
    if (lane < 0) { lane = laneEnds.length; laneEnds.push(b.e); } else laneEnds[lane] = b.e;
    b.lane = lane;
  }
  return Math.max(1, laneEnds.length);
}

function tipContent(it) {
  const lines = [el("div", { class: "t" }, it.label || KIND_LABEL[it.kind] || it.kind),
    el("div", { class: "k" }, [KIND_LABEL[it.kind] || it.kind, it.state, it.variant === "before" ? "before" : null]
      .filter(Boolean).join(" · "))];
  if (it.kind === "failure-band") {
    lines.push(el("div", {}, `p10 ${fmtTime(new Date(it.s).toISOString())} → p90 ${fmtTime(new Date(it.e).toISOString())}`));
    if (Number.isFinite(it.m)) lines.push(el("div", {}, `p50 ${fmtTime(new Date(it.m).toISOString())}`));
  } else {
    lines.push(el("div", {}, `${fmtTime(new Date(it.s).toISOString())} → ${fmtTime(new Date(it.e).toISOString())}`,
      el("span", { class: "d" }, ` (${duration(it.e - it.s)})`)));
  }
  for (const [k, v] of Object.entries(it.detail || {})) {
    if (v === undefined || v === null || v === "") continue;
    lines.push(el("div", {}, el("span", { class: "k" }, `${k} `), String(v)));
  }
  return lines;
}

/**
 * Draw a Gantt chart into `host` and keep it sized to it.
 *
 * options:
 *  - rows: [{id, label?, href?, sub?}] or ids, top to bottom (rows only items name are appended);
 *  - items: [{row, start, end, kind, label?, state?, id?, mid?, variant?, detail?}] where kind is
 *    "job" | "maintenance" | "failure-band" | "downtime"; times are Dates, ISO texts or epoch ms; a
 *    failure band spans p10 (start) to p90 (end) with `mid` its p50; `variant: "before"` draws the item
 *    as a dashed outline in a thin lane under its row (a plan before a change); `detail` is
 *    {name: value} shown in the tooltip;
 *  - from, to: the time range (default: the items' extent and now, padded); now: the "now" line;
 *  - selected: the id of an item to highlight; onSelect(item): called when an item is clicked;
 *  - labelWidth (px, default 150), legend (default true), empty (text when there are no rows).
 *
 * Returns {update(changes), destroy()}: update merges `changes` into the options and redraws.
 */
export function renderGantt(host, options) {
  const uid = `g${++instances}`;
  let opts = { ...options };
  const root = el("div", { class: "gantt" });
  const tip = el("div", { class: "gantt-tip", role: "tooltip", hidden: true });
  host.replaceChildren(root);

  const showTip = (it, x, y) => {
    tip.replaceChildren(...tipContent(it));
    tip.hidden = false;
    const box = root.getBoundingClientRect();
    const left = Math.min(Math.max(0, x - box.left + 12), Math.max(0, box.width - tip.offsetWidth - 4));
    const top = y - box.top + 14 + tip.offsetHeight > box.height ? y - box.top - tip.offsetHeight - 10 : y - box.top + 14;
    tip.style.left = `${left}px`;
    tip.style.top = `${Math.max(0, top)}px`;
  };
  const hideTip = () => { tip.hidden = true; };

  function draw() {
    const items = (opts.items || []).map((it) => ({ ...it, s: toMs(it.start), e: toMs(it.end), m: toMs(it.mid) }))
      .filter((it) => Number.isFinite(it.s) && Number.isFinite(it.e) && it.e >= it.s && it.row !== undefined);
    const rows = normaliseRows(opts.rows, items);
    const now = toMs(opts.now);
    let from = toMs(opts.from);
    let to = toMs(opts.to);
    if (!Number.isFinite(from) || !Number.isFinite(to) || to <= from) {
      const ts = items.flatMap((it) => [it.s, it.e]).concat(Number.isFinite(now) ? [now] : []);
      const lo = ts.length ? Math.min(...ts) : Date.now() - HOUR;
      const hi = ts.length ? Math.max(...ts) : Date.now() + 23 * HOUR;
      const pad = Math.max((hi - lo) * 0.04, 30 * MINUTE);
      if (!Number.isFinite(from)) from = lo - pad;
      if (!Number.isFinite(to) || to <= from) to = Math.max(hi + pad, from + HOUR);
    }
    const labelW = opts.labelWidth ?? 150;
    const width = Math.max(320, root.clientWidth || host.clientWidth || 800);
    const plotW = width - labelW - 8;
    const x = (t) => labelW + ((t - from) / (to - from)) * plotW;
    const visible = items.filter((it) => it.e >= from && it.s <= to);

    // rows: heights from their lanes
    const layout = rows.map((r) => {
      const mine = visible.filter((it) => String(it.row) === r.id);
      const bars = mine.filter((it) => (it.kind === "job" || it.kind === "maintenance" || !KINDS.includes(it.kind))
        && it.variant !== "before");
      const lanes = pack(bars);
      const before = mine.filter((it) => it.variant === "before");
      const h = ROW_PAD * 2 + lanes * LANE_H + (lanes - 1) * LANE_GAP + (before.length ? BEFORE_H + LANE_GAP : 0);
      return { row: r, mine, lanes, h };
    });
    let y = AXIS_H;
    for (const l of layout) { l.y = y; y += l.h; }
    const height = y + 1;

    const clip = `${uid}-clip`;
    const hatch = `${uid}-hatch`;
    const chart = svg("svg", { class: "gantt-svg", width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
      "aria-label": `Gantt chart, ${rows.length} rows`, dataset: { from: new Date(from).toISOString(),
        to: new Date(to).toISOString() } },
    svg("defs", {},
      svg("clipPath", { id: clip }, svg("rect", { x: labelW, y: 0, width: plotW, height })),
      svg("pattern", { id: hatch, width: 6, height: 6, patternUnits: "userSpaceOnUse", patternTransform: "rotate(45)" },
        svg("rect", { width: 6, height: 6, class: "hatch-bg" }), svg("line", { x1: 0, y1: 0, x2: 0, y2: 6, class: "hatch-line" }))));

    // row backgrounds and labels
    const rowsG = svg("g", { class: "g-rows" });
    layout.forEach((l, i) => {
      rowsG.append(svg("rect", { class: `g-row${i % 2 ? " odd" : ""}`, x: 0, y: l.y, width, height: l.h }));
      const name = String(l.row.label ?? l.row.id);
      const room = Math.max(4, Math.floor((labelW - 14) / 7));
      const label = svg("text", { class: "g-row-label", x: 8, y: l.y + Math.min(l.h / 2, ROW_PAD + LANE_H / 2) + 4 },
        name.length > room ? `${name.slice(0, room - 1)}…` : name);
      if (l.row.sub && name.length + String(l.row.sub).length + 1 <= room) {
        label.append(svg("tspan", { class: "g-row-sub", dx: 6 }, String(l.row.sub)));
      }
      label.append(svg("title", {}, l.row.sub ? `${name} (${l.row.sub})` : name));
      rowsG.append(l.row.href ? svg("a", { href: l.row.href, dataset: { row: l.row.id } }, label) : label);
    });
    rowsG.append(svg("line", { class: "g-split", x1: labelW, x2: labelW, y1: 0, y2: height }));

    // axis and grid
    const axis = svg("g", { class: "g-axis" });
    const { step, at } = ticks(from, to, plotW);
    let prev = null;
    for (const t of at) {
      const tx = x(t);
      const [main, sub] = tickLabel(t, step, prev);
      const midnight = new Date(t).getHours() === 0 && new Date(t).getMinutes() === 0;
      axis.append(svg("line", { class: `g-grid${midnight ? " day" : ""}`, x1: tx, x2: tx, y1: AXIS_H - 4, y2: height }),
        svg("text", { class: "g-tick", x: tx + 3, y: 13 }, main),
        sub ? svg("text", { class: "g-tick sub", x: tx + 3, y: 25 }, sub) : null);
      prev = t;
    }
    axis.append(svg("line", { class: "g-axis-line", x1: labelW, x2: width, y1: AXIS_H, y2: AXIS_H }));

    // items: bands and downtime behind, then bars, then the "before" ghosts
    const itemsG = svg("g", { class: "g-items", "clip-path": `url(#${clip})` });
    const order = { downtime: 0, "failure-band": 1 };
    for (const l of layout) {
      for (const it of [...l.mine].sort((a, b) => (order[a.kind] ?? 2) - (order[b.kind] ?? 2))) {
        const x0 = x(Math.max(it.s, from - (to - from)));
        const x1 = x(Math.min(it.e, to + (to - from)));
        const w = Math.max(2, x1 - x0);
        const g = svg("g", { class: `g-item kind-${it.kind}${it.state ? ` state-${it.state}` : ""}${it.variant ? ` variant-${it.variant}` : ""}${opts.selected !== undefined && opts.selected === it.id ? " selected" : ""}`,
          tabindex: opts.onSelect ? 0 : null, dataset: { kind: it.kind, row: String(it.row), id: it.id ?? null,
            state: it.state ?? null, variant: it.variant ?? null } });
        let by = l.y + 2;
        let bh = l.h - 4;
        if (it.variant === "before") {
          by = l.y + l.h - ROW_PAD - BEFORE_H + 2;
          bh = BEFORE_H;
        } else if (it.kind !== "failure-band" && it.kind !== "downtime") {
          by = l.y + ROW_PAD + it.lane * (LANE_H + LANE_GAP);
          bh = LANE_H;
        }
        const rect = svg("rect", { class: "bar", x: x0, y: by, width: w, height: bh, rx: it.kind === "failure-band" ? 0 : 3 });
        if (it.kind === "downtime" && it.variant !== "before") rect.setAttribute("fill", `url(#${hatch})`);
        g.append(rect);
        if (it.kind === "failure-band" && Number.isFinite(it.m) && it.m >= from && it.m <= to) {
          g.append(svg("line", { class: "p50", x1: x(it.m), x2: x(it.m), y1: by, y2: by + bh }));
        }
        const text = it.label ?? "";
        if (text && it.variant !== "before" && it.kind !== "failure-band" && it.kind !== "downtime"
            && text.length * CHAR_W + 10 <= w) {
          g.append(svg("text", { class: "bar-label", x: Math.max(x0, labelW) + 5, y: by + bh / 2 + 4 }, text));
        }
        g.addEventListener("mouseenter", (e) => showTip(it, e.clientX, e.clientY));
        g.addEventListener("mousemove", (e) => showTip(it, e.clientX, e.clientY));
        g.addEventListener("mouseleave", hideTip);
        g.addEventListener("focus", () => { const b = rect.getBoundingClientRect(); showTip(it, b.left, b.bottom); });
        g.addEventListener("blur", hideTip);
        if (opts.onSelect) {
          g.addEventListener("click", () => opts.onSelect(it));
          g.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); opts.onSelect(it); } });
        }
        itemsG.append(g);
      }
    }

    const overlay = svg("g", { class: "g-overlay" });
    if (Number.isFinite(now) && now >= from && now <= to) {
      overlay.append(svg("line", { class: "g-now", x1: x(now), x2: x(now), y1: AXIS_H, y2: height }),
        svg("text", { class: "g-now-label", x: x(now) + 3, y: height - 4 }, "now"));
    }
    chart.append(rowsG, axis, itemsG, overlay);

    const kindsShown = KINDS.filter((k) => visible.some((it) => it.kind === k));
    const legend = opts.legend === false || !kindsShown.length ? null : el("div", { class: "gantt-legend" },
      kindsShown.map((k) => el("span", {}, el("i", { class: `sw kind-${k}` }), KIND_LABEL[k])),
      visible.some((it) => it.variant === "before") ? el("span", {}, el("i", { class: "sw before" }), "before the change") : null,
      Number.isFinite(now) ? el("span", {}, el("i", { class: "sw now" }), "now") : null);
    root.replaceChildren(rows.length ? chart : el("div", { class: "gantt-empty" }, opts.empty || "Nothing to show."),
      rows.length ? legend : null, tip);
    root.dataset.rows = String(rows.length);
    root.dataset.items = String(visible.length);
  }

  let frame = 0;
  let lastWidth = -1;
  const observer = typeof ResizeObserver === "function" ? new ResizeObserver(() => {
    const w = root.clientWidth;
    if (w === lastWidth) return;
    lastWidth = w;
    cancelAnimationFrame(frame);
    frame = requestAnimationFrame(draw);
  }) : null;
  draw();
  lastWidth = root.clientWidth;
  observer?.observe(root);
  return {
    update(changes) { opts = { ...opts, ...changes }; hideTip(); draw(); },
    destroy() { observer?.disconnect(); cancelAnimationFrame(frame); host.replaceChildren(); },
  };
}
