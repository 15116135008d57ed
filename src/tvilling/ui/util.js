// Small DOM and formatting helpers shared by the pages.

/** Reported properties the platform's analytics write on any twin (see tvilling.models.outputs). */
export const ANALYTIC_OUTPUTS = new Set([
  "anomaly_score", "anomaly", "contributions", "fault_family", "rul", "rul_p10", "rul_p90", "health", "analytics", "simulation",
]);

export const SEVERITIES = ["critical", "major", "minor", "warning"];

/** Rank of a severity: 0 = critical … 3 = warning, 9 = none. */
export function sevRank(sev) {
  const i = SEVERITIES.indexOf(sev);
  return i < 0 ? 9 : i;
}

/** el("div", {class: "x", onclick: fn}, child, "text", [more]) */
export function el(tag, attrs, ...children) {
  const node = tag === "svg" || SVG_TAGS.has(tag)
    ? document.createElementNS("http://www.w3.org/2000/svg", tag)
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") node.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k === "style" && typeof v === "object") Object.assign(node.style, v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  append(node, children);
  return node;
}

const SVG_TAGS = new Set(["g", "rect", "path", "text", "line", "circle", "title", "tspan"]);

/** Replace a node's children (null, false and undefined are skipped, arrays flattened). */
export function setChildren(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

function append(node, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(node, c);
    else node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Numbers with a sensible precision; other values as short text. */
export function fmt(v) {
  if (v === undefined) return "";
  if (v === null) return "—";
  if (typeof v === "number") {
    if (!Number.isFinite(v)) return String(v);
    const a = Math.abs(v);
    if (a !== 0 && (a >= 1e6 || a < 1e-3)) return v.toExponential(2);
    if (Number.isInteger(v)) return v.toLocaleString("en-GB");
    return v.toLocaleString("en-GB", { maximumFractionDigits: a >= 100 ? 1 : a >= 10 ? 2 : 3 });
  }
  if (typeof v === "boolean") return v ? "true" : "false";
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

/** ISO time → "05:44:29" today, else "2026-11-21 05:44". */
export function fmtTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const now = new Date();
  const pad = (n) => String(n).padStart(2, "0");
  const hms = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  if (d.toDateString() === now.toDateString()) return hms;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${hms.slice(0, 5)}`;
}

/** "12 s ago", "3 min ago" … */
export function ago(iso) {
  if (!iso) return "—";
  const s = (Date.now() - new Date(iso).getTime()) / 1000;
  if (!Number.isFinite(s)) return "—";
  if (s < 2) return "now";
  if (s < 90) return `${Math.round(s)} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 172800) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

/** Leaves of a nested object as {"a.b": value}; `stop` names top-level keys kept whole. */
export function flatten(obj, prefix = "", out = {}, stop = null) {
  for (const [k, v] of Object.entries(obj || {})) {
    const path = prefix ? `${prefix}.${k}` : k;
    if (v !== null && typeof v === "object" && !Array.isArray(v) && !(stop && !prefix && stop.has(k))) {
      flatten(v, path, out, stop);
    } else {
      out[path] = v;
    }
  }
  return out;
}

/** JSON merge patch (RFC 7396) of `patch` into `target`, in place; returns target. */
export function mergePatch(target, patch) {
  if (patch === null || typeof patch !== "object" || Array.isArray(patch)) return patch;
  if (target === null || typeof target !== "object" || Array.isArray(target)) target = {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete target[k];
    else target[k] = mergePatch(target[k], v);
  }
  return target;
}

/** The short name of a DTMI: "dtmi:tvilling:example:Machine;1" → "Machine". */
export function shortModel(dtmi) {
  if (!dtmi) return "";
  const tail = dtmi.split(":").pop() || dtmi;
  return tail.split(";")[0];
}

export function get(obj, path) {
  let cur = obj;
  for (const part of path.split(".")) {
    if (cur === null || typeof cur !== "object") return undefined;
    cur = cur[part];
  }
  return cur;
}

/** Colour of a health value: green → amber → red. */
export function healthClass(h) {
  if (typeof h !== "number") return "na";
  if (h >= 0.7) return "good";
  if (h >= 0.4) return "fair";
  return "poor";
}

/** A compact health bar with its value. */
export function healthBar(h) {
  if (typeof h !== "number") return el("span", { class: "muted" }, "—");
  const pct = Math.max(0, Math.min(1, h)) * 100;
  return el("span", { class: `health ${healthClass(h)}`, title: `health ${h.toFixed(3)}` },
    el("span", { class: "bar" }, el("span", { class: "fill", style: { width: `${pct}%` } })),
    el("span", { class: "num" }, `${Math.round(pct)}%`));
}

/** Badge for a twin's anomaly state: red only while the score is at or above its threshold (1.0); a flag the
 * detector still holds after the score fell back is "easing" (amber), and a detector that does not score now
 * (machine stopped, operating point not learned) says so instead of showing an old score as current. */
export function anomalyBadge(reported) {
  const score = reported?.anomaly_score;
  if (score === undefined && reported?.anomaly === undefined) return el("span", { class: "muted" }, "—");
  const suspended = Object.values(reported?.analytics || {}).map((a) => a?.scoring)
    .find((s) => typeof s === "string" && s.startsWith("suspended"));
  const num = typeof score === "number" ? el("b", {}, ` ${score.toFixed(2)}`) : null;
  if (suspended) {
    return el("span", { class: "badge paused", title: `the detector is not scoring: ${suspended.slice(11)}; last score shown` },
      "NOT SCORED", el("b", {}, ` ${suspended.slice(11).split(" (")[0]}`));
  }
  if (typeof score === "number" && score >= 1) {
    return el("span", { class: "badge anomaly", title: "anomaly score at or above its threshold (1.0)" }, "ANOMALY", num);
  }
  if (reported?.anomaly === true) {
    return el("span", { class: "badge easing", title: "the score is back below 1.0; the detector holds the anomaly a few rows before it ends it" },
      "EASING", num);
  }
  return el("span", { class: "badge normal", title: "anomaly score (threshold 1.0)" }, "normal", num);
}

export function sevPill(sev, text) {
  return el("span", { class: `sev sev-${sev || "none"}` }, text ?? sev ?? "");
}

/** Call `fn` once per burst: at most once per animation frame, or per `ms` milliseconds when given. */

export function coalesce(fn, ms = 0) {
  let queued = false;
  const run = () => { queued = false; fn(); };
  return () => {
    if (queued) return;
    queued = true;
    if (ms > 0) setTimeout(run, ms); else requestAnimationFrame(run);
  };
}

export function message(kind, text) {
  return el("div", { class: `note ${kind}` }, text);
}
