// The twin page's commands, sent with care: one button per command the model declares; a
// confirmation dialog before a command the model marks disruptive (Tvilling's commands extension:
// co-type "Disruptive", its "disruption" text and the properties it "affects"); the device's answer
// next to the command, readable, until the next command; and the command's effect on the twin: its
// progress (sent → accepted → succeeded/failed), the values it changes, before and now, and those
// properties highlighted on the page while the change is fresh.

import { getJSON, invokeCommand, twinCommands, unitSymbol } from "./api.js";
import { el, fmt, fmtTime, message, setChildren } from "./util.js";

const NUMERIC = new Set(["double", "float", "integer", "long"]);
const FINAL = new Set(["succeeded", "failed", "timed_out"]);
const HISTORY = 6;  // commands listed under the buttons
const WATCH_MS = 120_000;  // how long after its last move a command's properties stay highlighted
const FOLLOW_MS = [1000, 1000, 2000, 2000, 5000];  // reading a sent command again until it is final (then every 5 s)
const LABELS = { pending: "pending", sent: "sent", acknowledged: "accepted", succeeded: "succeeded",
  failed: "failed", timed_out: "timed out" };

const typesOf = (c) => (Array.isArray(c["@type"]) ? c["@type"] : [c["@type"]]);
/** A DTDL localizable string (a string or a language map) as text. */
const textOf = (v) => (typeof v === "string" ? v : v && typeof v === "object" ? v.en ?? Object.values(v)[0] : "");
const valueAt = (obj, path) => path.split(".").reduce((o, k) => (o && typeof o === "object" ? o[k] : undefined), obj);
const byCreated = (a, b) => String(a.created).localeCompare(String(b.created));

/** What the model says about a command: {label, disruptive, disruption, affects}. */
export function careOf(c) {
  const label = textOf(c.displayName) || c.name;
  return {
    label,
    disruptive: typesOf(c).includes("Disruptive"),
    disruption: textOf(c.disruption) || "",
    affects: Array.isArray(c.affects) ? c.affects.filter((p) => typeof p === "string") : [],
  };
}

/** The value typed for a command's request, by its schema; throws with a message for the person. */
export function requestValue(schema, raw) {
  if (typeof schema === "string" && NUMERIC.has(schema)) {
    const n = Number(raw);
    if (raw.trim() === "" || !Number.isFinite(n)) throw new Error("enter a number");
    return n;
  }
  if (schema === "boolean") return raw.trim() === "true";
  if (schema === "string" || schema?.["@type"] === "Enum") return raw;
  try { return JSON.parse(raw); } catch { throw new Error("enter a JSON value"); }
}

/** A command's status in words: what the device said when it said no, what it reported when it said yes. */
function outcome(rec) {
  const r = rec.response;
  const said = r && typeof r === "object" && typeof r.message === "string" ? r.message : "";
  if (rec.status === "failed") {
    const reason = said || (rec.error || "").replace(/^device answered [^:]*: /, "") || "no reason given";
    return { tone: "bad", head: rec.error?.startsWith("device answered") ? "Rejected by the device" : "Failed", text: reason };
  }
  if (rec.status === "timed_out") return { tone: "bad", head: "Timed out", text: rec.error || "no answer before the deadline" };
  if (rec.status === "succeeded") {
    const fields = r && typeof r === "object" && !Array.isArray(r)
      ? Object.entries(r).filter(([k]) => k !== "accepted" && k !== "message").map(([k, v]) => `${k} ${fmt(v)}`) : [];
    const text = [said, fields.join(", ") || (r === null || r === undefined || typeof r === "object" ? "" : fmt(r))]
      .filter(Boolean).join(" · ");
    return { tone: "good", head: "Succeeded", text: text || "the device carried it out" };
  }
  if (rec.status === "acknowledged") return { tone: "wait", head: "Accepted", text: "the device is carrying it out…" };
  if (rec.status === "pending" && rec.error) return { tone: "wait", head: "Retrying", text: rec.error };
  return { tone: "wait", head: LABELS[rec.status] ?? rec.status, text: "waiting for the device…" };
}

/**
 * Mount the commands of a twin into `body` (the page's Commands panel).
 * `twin()` returns the page's current twin; `desc` is the model as describeModel() gives it.
 * Returns {update(record), twinChanged(), stop()}: for command items from the live stream, after the twin changed,
 * and when the page goes.
 */
export async function mountCommands(body, { twin, desc }) {
  const id = twin().id;
  const found = await twinCommands(id).catch(() => []);
  const available = found !== null;
  const records = new Map((found || []).map((r) => [r.id, r]));
  const accepted = new Set();  // commands seen acknowledged on the way to their final status
  const before = new Map();  // command id → {path: value} when it was sent (or first seen)
  const commands = new Map(desc.commands.map((c) => [c.name, { def: c, care: careOf(c) }]));
  const err = el("div", { class: "cmd-err", role: "alert" });
  const history = el("div", { class: "cmd-history" });
  const watchStyle = el("style", { id: "cmd-watch" });
  const dialog = el("dialog", { class: "cmd-confirm", "aria-labelledby": "cmd-confirm-title" });
  const rows = new Map();  // name → {status, outcome}
  let watchTimer = null;

  const unitOf = (path) => unitSymbol(desc.props.get(path)?.unit);
  const withUnit = (path, v) => `${fmt(v)}${typeof v === "number" && unitOf(path) ? ` ${unitOf(path)}` : ""}`;
  const snapshot = (paths) => Object.fromEntries(paths.map((p) => [p, valueAt(twin().reported, p)]));

  // -- the confirmation dialog -----------------------------------------------------------------
  /** "line-1-m02 is running at 1,500 rpm." from the twin's state and the first number the command affects. */
  function nowSentence(care) {
    const r = twin().reported || {};
    const nums = care.affects.filter((p) => typeof valueAt(r, p) === "number");
    const state = typeof r.state === "string" ? r.state : null;
    if (state && nums.length) return `${id} is ${state} at ${withUnit(nums[0], valueAt(r, nums[0]))}.`;
    if (state) return `${id} is ${state}.`;
    const shown = care.affects.filter((p) => valueAt(r, p) !== undefined);
    return shown.length ? `Now: ${shown.map((p) => `${p} ${withUnit(p, valueAt(r, p))}`).join(", ")}.` : "";
  }

  function ask(c, care, request) {
    const title = `${care.label}${/\s/.test(care.label) ? " on" : ""} ${id}?`;
    const req = c.request && request !== undefined
      ? el("p", { class: "req" }, "Request: ", el("code", {}, `${c.request.name} = ${fmt(request)}${c.request.unit ? ` ${unitSymbol(c.request.unit)}` : ""}`))
      : null;
    setChildren(dialog, el("form", { method: "dialog" },
      el("h3", { id: "cmd-confirm-title" }, title),
      el("p", { class: "now" }, nowSentence(care)),
      el("p", { class: "what" }, care.disruption || textOf(c.description) || "The model marks this command as disruptive."),
      req,
      care.affects.length ? el("p", { class: "faint" }, `It changes ${care.affects.join(", ")}: watch them below once it is sent.`) : null,
      el("div", { class: "actions" },
        el("button", { value: "cancel", "data-action": "cancel", autofocus: true }, "Cancel"),
        el("button", { value: "confirm", class: "danger", "data-action": "confirm" }, `Confirm: ${care.label.toLowerCase()}`))));
    dialog.dataset.command = c.name;
    dialog.returnValue = "";
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "confirm"), { once: true });
      dialog.showModal();
      dialog.querySelector('[data-action="cancel"]').focus();
    });
  }

  // -- sending -----------------------------------------------------------------------------------
  async function send(c, care, input, button) {
    err.textContent = "";
    err.className = "cmd-err";
    let request;
    try { request = c.request ? requestValue(c.request.schema, input.value) : undefined; } catch (e) {
      err.textContent = `${care.label}: ${e.message}`;
      return;
    }
    if (care.disruptive && !(await ask(c, care, request))) {
      err.className = "cmd-err note";
      err.textContent = `${care.label} cancelled: nothing was sent.`;
      return;
    }
    const was = snapshot(care.affects);
    button.disabled = true;
    try {
      const rec = await invokeCommand(id, c.name, request);
      before.set(rec.id, was);  // the values at the click, even if the stream told us of it first
      update(rec);
      follow(rec);
    } catch (e) {
      err.textContent = `${care.label}: ${e.message}`;
    } finally {
      button.disabled = !available;
    }
  }

  /**
   * Read a command we sent again until it is final: the live stream tells of its progress, but a device
   * can answer before the page's stream is (re)connected, and the stream starts at "now".
   */
  let stopped = false;
  const followers = new Set();
  function follow(rec) {
    const deadline = Math.max(Date.now() + 10_000, Date.parse(rec.deadline || "") + 10_000 || 0);
    let i = 0;
    const next = () => {
      const cur = records.get(rec.id);
      if (stopped || (cur && FINAL.has(cur.status)) || Date.now() > deadline) return;
      const timer = setTimeout(async () => {
        followers.delete(timer);
        try { update(await getJSON(`/api/commands/${encodeURIComponent(rec.id)}`)); } catch { /* try again */ }
        next();
      }, FOLLOW_MS[Math.min(i++, FOLLOW_MS.length - 1)]);
      followers.add(timer);
    };
    next();
  }

  // -- rows: a button per command, its latest status, and the answer to the latest command -------
  const list = el("div", { class: "cmd-list" });
  for (const [name, { def: c, care }] of commands) {
    const req = c.request;
    const input = req ? el("input", {
      name: req.name, placeholder: `${req.name}${req.unit ? ` (${unitSymbol(req.unit)})` : ""}`,
      inputmode: NUMERIC.has(req.schema) ? "decimal" : null, "aria-label": `${care.label} ${req.name}`,
    }) : null;
    const status = el("span", { class: "status", dataset: { command: name } });
    const result = el("div", { class: "cmd-outcome", role: "status", dataset: { outcome: name } });
    const button = el("button", {
      class: care.disruptive ? "danger" : "primary", "data-command": name, disabled: !available,
      title: textOf(c.description) || null,
      onclick: () => send(c, care, input, button),
    }, care.label);
    if (input) input.addEventListener("keydown", (e) => { if (e.key === "Enter" && !button.disabled) button.click(); });
    rows.set(name, { status, result });
    list.append(el("div", { class: "cmd-row", dataset: { row: name } }, button,
      care.disruptive ? el("span", { class: "cmd-care", title: "the model marks it disruptive: the page asks before sending it" }, "disruptive") : null,
      input, status), result);
  }
  setChildren(body, list);
  if (!commands.size) body.append(el("div", { class: "muted" }, "This model declares no commands."));
  else if (!available) body.append(message("info", "No device connection on this server: commands cannot be sent."));
  body.append(err, history, watchStyle, dialog);

  // -- rendering -----------------------------------------------------------------------------------
  function progress(rec) {
    const reached = (s) => el("span", { class: `step on st-${s}` }, LABELS[s]);
    const steps = [rec.sent_at || rec.status !== "pending" ? reached("sent") : el("span", { class: "step" }, "sent")];
    if (accepted.has(rec.id) || rec.status === "acknowledged") steps.push(reached("acknowledged"));
    if (FINAL.has(rec.status)) steps.push(reached(rec.status));
    else if (rec.status !== "acknowledged") steps.push(el("span", { class: "step" }, "…"));
    return el("span", { class: "steps", dataset: { status: rec.status } }, steps.flatMap((s, i) => (i ? [" → ", s] : [s])));
  }

  function effect(rec) {
    const care = commands.get(rec.name)?.care;
    const was = before.get(rec.id);
    if (!care?.affects.length || !was || rec.status === "failed" || rec.status === "timed_out") return null;
    const now = snapshot(care.affects);
    return el("div", { class: "cmd-effect", dataset: { effect: rec.id } }, care.affects.map((p, i) => [
      i ? " · " : "", el("code", {}, p), " ",
      JSON.stringify(was[p]) === JSON.stringify(now[p]) ? withUnit(p, now[p]) : `${fmt(was[p])} → ${withUnit(p, now[p])}`]));
  }

  function render() {
    const all = [...records.values()].sort(byCreated);
    const latest = all[all.length - 1];
    for (const [name, { status, result }] of rows) {
      const last = all.filter((r) => r.name === name).pop();
      setChildren(status, ...(last ? [el("span", { class: "faint" }, fmtTime(last.updated)),
        el("span", { class: `st cmd st-${last.status}`, "data-status": last.status }, LABELS[last.status] ?? last.status)] : []));
      // the answer to the latest command stays next to it until the next command is sent
      if (last && last === latest) {
        const o = outcome(last);
        result.className = `cmd-outcome ${o.tone}`;
        result.dataset.status = last.status;
        setChildren(result, el("b", {}, `${o.head}: `), o.text);
      } else {
        result.className = "cmd-outcome";
        delete result.dataset.status;
        result.replaceChildren();
      }
    }
    const recent = all.slice(-HISTORY).reverse();
    setChildren(history, recent.length ? [
      el("div", { class: "faint" }, "Recent commands"),
      ...recent.map((r) => {
        const o = outcome(r);
        return el("div", { class: "cmd-item", dataset: { commandId: r.id, status: r.status } },
          el("div", { class: "head" },
            el("span", { class: "muted", title: r.created }, fmtTime(r.created)),
            el("code", {}, `${r.name}(${r.request === null || r.request === undefined ? "" : fmt(r.request)})`),
            r.actor ? el("span", { class: "faint" }, `by ${r.actor}`) : null,
            progress(r)),
          FINAL.has(r.status) ? el("div", { class: `res ${o.tone}` }, o.text) : null,
          effect(r));
      }),
    ] : []);
    watch(latest);
  }

  /** Highlight the properties the latest command affects while its change is fresh (CSS, so re-renders keep it). */
  function watch(latest) {
    clearTimeout(watchTimer);
    const care = latest && commands.get(latest.name)?.care;
    const age = latest ? Date.now() - new Date(latest.updated).getTime() : Infinity;
    const live = care?.affects.length && !["failed", "timed_out"].includes(latest.status) && age < WATCH_MS;
    if (!live) {
      watchStyle.textContent = "";
      delete watchStyle.dataset.paths;
      return;
    }
    const tag = JSON.stringify(` ← ${latest.name}`);
    watchStyle.dataset.paths = care.affects.join(" ");
    watchStyle.dataset.command = latest.id;
    watchStyle.textContent = care.affects.map((p) => {
      const row = `#properties tr[data-prop=${JSON.stringify(p)}]`;
      return `${row} td { background: var(--watch-bg); }
${row} td:first-child { box-shadow: inset 3px 0 0 var(--accent); }
${row} td:first-child::after { content: ${tag}; color: var(--accent); font-family: var(--sans); }
#${CSS.escape(`chart-${p}`)} { box-shadow: inset 0 0 0 2px var(--accent); }
${p === "state" ? ".twin-head .badge[class*=\"state-\"] { outline: 2px solid var(--accent); outline-offset: 1px; }" : ""}`;
    }).join("\n");
    watchTimer = setTimeout(render, Math.max(1000, WATCH_MS - age));
  }

  /** A command record (from our POST or the live stream); a command only moves forward. */
  function update(rec) {
    if (rec.twin && rec.twin !== id) return;
    if (rec.previous === "acknowledged" || rec.status === "acknowledged") accepted.add(rec.id);
    const cur = records.get(rec.id);
    if (cur) {
      const older = String(rec.updated || "") < String(cur.updated || "");
      if (older || (FINAL.has(cur.status) && !FINAL.has(rec.status))) return;
    } else if (commands.get(rec.name)?.care.affects.length && !before.has(rec.id)) {
      before.set(rec.id, snapshot(commands.get(rec.name).care.affects));  // sent by someone else: from now on
    }
    const { kind, previous, ...plain } = rec;
    records.set(rec.id, cur ? { ...cur, ...plain } : plain);
    render();
  }

  render();
  const stop = () => {
    stopped = true;
    for (const t of followers) clearTimeout(t);
    followers.clear();
    clearTimeout(watchTimer);
  };
  return { update, twinChanged: render, stop };
}
