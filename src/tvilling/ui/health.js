// The health picture from the server (GET /api/health, see tvilling.twins.health): one index per twin that
// agrees with its remaining life, anomaly state and open alarms, rolled up bearing → machine → line.
// Every page shows this same number, so no page can say "100 %" beside a critical alarm.

import { getJSON } from "./api.js";
import { el, fmt } from "./util.js";

export const STATUS_CLASS = { good: "good", watch: "fair", poor: "poor", critical: "poor", unknown: "na" };

/** Poll the index every `ms` (and whenever `kick()` is called, at most every 500 ms); `onChange(items)`. */
export function watchHealth(onChange, ms = 2000) {
  let stopped = false;
  let timer = null;
  let last = "";
  let busy = false;
  const load = async () => {
    if (stopped || busy) return;
    busy = true;
    try {
      const res = await getJSON("/api/health");
      const text = JSON.stringify(res.items);
      if (!stopped && text !== last) { last = text; onChange(res.items); }
    } catch { /* the next poll tries again; the live indicator tells about the connection */ }
    busy = false;
    if (!stopped) { clearTimeout(timer); timer = setTimeout(load, ms); }
  };
  load();
  let kicked = null;
  return {
    stop: () => { stopped = true; clearTimeout(timer); clearTimeout(kicked); },
    kick: () => { if (!kicked) kicked = setTimeout(() => { kicked = null; load(); }, 500); },
  };
}

/** A health bar with status and reason (own or from the part that sets it). */
export function healthCell(entry, id, { withReason = false } = {}) {
  if (!entry || entry.health === null || entry.health === undefined) {
    return el("span", { class: "muted", title: "no analytics on this twin or below it" }, "—");
  }
  const h = entry.health;
  const pct = Math.max(0, Math.min(1, h)) * 100;
  const from = entry.source && entry.source !== id ? entry.source : null;
  const why = `${entry.status}: ${entry.reason || ""}${from ? ` (${from})` : ""}`;
  return el("span", { class: "health-cell" },
    el("span", { class: `health ${STATUS_CLASS[entry.status] || "na"}`, title: why, dataset: { status: entry.status } },
      el("span", { class: "bar" }, el("span", { class: "fill", style: { width: `${pct}%` } })),
      el("span", { class: "num" }, `${Math.round(pct)}%`)),
    withReason ? el("span", { class: "health-why" }, why) : null);
}

/** The remaining life with its unit and clock ("2.7 plant h"), or "no trend yet"; null without a RUL analytic. */
export function rulText(reported, unit) {
  const r = reported || {};
  const sym = unit ? `${unit.clock === "plant" ? "plant " : ""}${unit.symbol}` : "";
  if (typeof r.rul === "number") {
    const band = typeof r.rul_p10 === "number" && typeof r.rul_p90 === "number" ? ` (p10 ${fmt(r.rul_p10)} – p90 ${fmt(r.rul_p90)})` : "";
    return { value: fmt(r.rul), sub: `${sym}${band}` };
  }
  const trendless = Object.values(r.analytics || {}).some((a) => a && a.trend === false);
  if (trendless || unit) return { value: "no trend yet", sub: "no credible wear growth" };
  return null;
}
