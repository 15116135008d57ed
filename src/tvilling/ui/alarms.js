// The alarm list: filter by state and severity, acknowledge and clear, updated live.

import { ackAlarm, clearAlarm, listAlarms, live } from "./api.js";
import { coalesce, el, fmt, fmtTime, message, sevPill, sevRank, setChildren } from "./util.js";

const TABS = { open: ["active", "acknowledged"], active: ["active"], acknowledged: ["acknowledged"], cleared: ["cleared"] };

/** Ack / clear buttons for an alarm; `onError(message)` when the server refuses. */
export function alarmActions(alarm, onError) {
  const act = (fn, label) => el("button", {
    class: label === "Clear" ? "danger" : "",
    "data-action": label.toLowerCase(),
    onclick: async (e) => {
      e.currentTarget.disabled = true;
      try { await fn(alarm.id); } catch (err) { onError(`${label} ${alarm.id}: ${err.message}`); e.target.disabled = false; }
    },
  }, label);
  return el("div", { class: "actions" },
    alarm.state === "active" ? act(ackAlarm, "Ack") : null,
    alarm.state !== "cleared" ? act(clearAlarm, "Clear") : null);
}

export function alarmRow(a, onError, { withTwin = true } = {}) {
  return el("tr", { class: a.state === "cleared" ? "" : `sev-row-${a.severity}`, dataset: { alarm: a.id, state: a.state, twin: a.twin } },
    el("td", {}, sevPill(a.severity)),
    el("td", {}, el("span", { class: `st st-${a.state}` }, a.state)),
    withTwin ? el("td", {}, el("a", { class: "tid", href: `#/twin/${encodeURIComponent(a.twin)}` }, a.twin),
      a.origin && a.origin !== a.twin
        ? el("div", { class: "faint" }, "from ", el("a", { href: `#/twin/${encodeURIComponent(a.origin)}` }, a.origin))
        : null) : null,
    el("td", {}, el("div", { class: "alarm-msg" }, a.message || a.rule),
      el("div", { class: "faint mono" }, a.rule, a.property ? ` · ${a.property} = ${fmt(a.value)}` : "")),
    el("td", { class: "num" }, a.count > 1 ? `×${a.count}` : ""),
    el("td", { class: "muted", title: a.raised }, fmtTime(a.raised)),
    el("td", { class: "muted", title: a.updated }, a.state === "acknowledged" ? `ack ${fmtTime(a.acknowledged)}`
      : a.state === "cleared" ? `cleared ${fmtTime(a.cleared)}` : fmtTime(a.updated), a.actor ? el("div", { class: "faint" }, a.actor) : null),
    el("td", {}, alarmActions(a, onError)));
}

/** The same alarm as a compact card, for side panels. */
export function alarmCard(a, onError) {
  return el("div", { class: `alarm-card sev-card-${a.severity}`, dataset: { alarm: a.id, state: a.state, twin: a.twin } },
    el("div", { class: "line" }, sevPill(a.severity), el("span", { class: `st st-${a.state}` }, a.state),
      a.count > 1 ? el("span", { class: "faint" }, `×${a.count}`) : null,
      el("span", { class: "faint", title: a.raised }, `raised ${fmtTime(a.raised)}`)),
    el("div", { class: "msg" }, a.message || a.rule),
    el("div", { class: "line" }, el("span", { class: "faint mono" }, a.rule,
      a.origin && a.origin !== a.twin ? ` · from ${a.origin}` : ""), el("span", { class: "spacer" }), alarmActions(a, onError)));
}

export function sortAlarms(list) {
  const stateRank = { active: 0, acknowledged: 1, cleared: 2 };
  return [...list].sort((a, b) => (stateRank[a.state] ?? 3) - (stateRank[b.state] ?? 3)
    || sevRank(a.severity) - sevRank(b.severity) || String(b.raised).localeCompare(String(a.raised)));
}

export async function mount(view) {
  let tab = "open";
  let severity = "";
  const head = el("div", { class: "page-head" }, el("h1", {}, "Alarms"),
    el("span", { class: "sub" }, "raised by the rules on live values; acknowledge to take ownership, clear when resolved"));
  const seg = el("div", { class: "seg" });
  const sevSel = el("select", { "aria-label": "severity", onchange: () => { severity = sevSel.value; load(); } },
    el("option", { value: "" }, "all severities"),
    ["critical", "major", "minor", "warning"].map((s) => el("option", { value: s }, s)));
  const status = el("span", { class: "muted" });
  const errors = el("div");
  const panel = el("div", { class: "panel" });
  view.append(head, el("div", { class: "toolbar" }, seg, sevSel, status), errors, panel);
  const showError = (text) => setChildren(errors, message("error", text));

  let alarms = new Map();
  const render = () => {
    setChildren(seg, ...Object.keys(TABS).map((t) => el("button", {
      class: t === tab ? "on" : "", onclick: () => { tab = t; load(); } }, t)));
    const list = sortAlarms([...alarms.values()].filter((a) => TABS[tab].includes(a.state)
      && (!severity || a.severity === severity)));
    status.textContent = `${list.length} alarm${list.length === 1 ? "" : "s"}`;
    setChildren(panel, el("table", { class: "grid alarms" },
      el("thead", {}, el("tr", {}, ["Severity", "State", "Twin", "Message", "", "Raised", "Last change", ""]
        .map((c, i) => el("th", { class: i === 4 ? "num" : "" }, c)))),
      el("tbody", {}, list.length ? list.map((a) => alarmRow(a, showError))
        : el("tr", {}, el("td", { colspan: 8, class: "muted" }, `No ${tab === "open" ? "open" : tab} alarms.`)))));
  };
  const later = coalesce(render);

  let available = true;
  async function load() {
    const extra = severity ? { severity } : {};
    const got = await listAlarms(TABS[tab], extra).catch((e) => { showError(`Could not list alarms: ${e.message}`); return []; });
    if (got === null) {
      available = false;
      setChildren(panel, message("info", "This server has no alarm service (GET /api/alarms is not there)."));
      return;
    }
    alarms = new Map(got.map((a) => [a.id, a]));
    render();
  }
  await load();
  if (!available) return () => {};
  const stop = live({ types: "alarm" }, (item) => {
    if (item.kind !== "alarm" || !item.alarm) return;
    alarms.set(item.alarm.id, item.alarm);
    later();
  });
  return stop;
}
