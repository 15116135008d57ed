// The alarm list: one row per condition (with the ancestors it affects), filtered by state and
// severity, acknowledged and cleared by a named person with an optional note, shelved for planned
// stops; updated live.

import { getJSON, listAlarms, listTwins, live, postJSON } from "./api.js";
import { coalesce, el, fmt, fmtTime, message, sevPill, sevRank, setChildren } from "./util.js";

const enc = encodeURIComponent;
const OPEN = ["active", "acknowledged"];
const TABS = {
  open: { states: OPEN, shelved: false },
  active: { states: ["active"], shelved: false },
  acknowledged: { states: ["acknowledged"], shelved: false },
  shelved: { states: OPEN, shelved: true },
  cleared: { states: ["cleared"], shelved: null },
};
const DURATIONS = [["15m", "15 min"], ["30m", "30 min"], ["1h", "1 hour"], ["2h", "2 hours"], ["4h", "4 hours"],
  ["8h", "8 hours"], ["1d", "1 day"]];

// -- who acts (asked once, kept in this browser; sign-in will replace it) ---------------------------
const ACTOR_KEY = "tvilling.actor";
export function actorName() {
  try { return (localStorage.getItem(ACTOR_KEY) || "").trim(); } catch { return ""; }
}
export function setActorName(name) {
  try { localStorage.setItem(ACTOR_KEY, name.trim().slice(0, 128)); } catch { /* storage off: asked again */ }
  for (const fn of actorListeners) fn(actorName());
}
const actorListeners = new Set();

/** Whether a shelf holds the alarm now. */
export function isShelved(a) {
  if (a.state === "cleared" || !a.shelved_until) return false;
  return Date.parse(a.shelved_until) > Date.now();
}

/** One entry per condition: copies propagated to ancestors fold into their source (the newer record of the
 * two wins, so a page that only streams a machine's copies still shows their state), their twins into
 * `affected`. */
export function groupAlarms(list) {
  const out = new Map();
  for (const a of list) {
    const key = a.source || a.id;
    const cur = out.get(key);
    const affected = new Set([...(cur?.affected || []), ...(a.affected || []), ...(a.source ? [a.twin] : [])]);
    let pick = a;
    if (cur) {
      const newer = String(a.updated) > String(cur.updated);
      pick = (newer || (!a.source && String(a.updated) === String(cur.updated))) ? a : cur;
    }
    out.set(key, { ...pick, affected: [...affected].filter((t) => t !== pick.twin) });
  }
  return [...out.values()];
}

// -- acknowledge / clear with a name and an optional note ------------------------------------------
const STEP = { ack: { label: "Ack", verb: "Acknowledge", path: "ack" }, clear: { label: "Clear", verb: "Clear", path: "clear" } };

function stepForm(alarm, step, onDone, onCancel) {
  const known = actorName();
  const who = el("input", { name: "actor", placeholder: "your name", "aria-label": "your name", value: known || null,
    maxlength: 128, required: true, autocomplete: "name" });
  const note = el("input", { name: "note", placeholder: "note (optional)", "aria-label": "note", maxlength: 2000 });
  const form = el("form", { class: "step-form", dataset: { step } },
    known ? el("span", { class: "faint as" }, "as ", el("b", {}, known)) : who,
    note,
    el("button", { type: "submit", class: step === "clear" ? "danger" : "", "data-action": `confirm-${step}` },
      STEP[step].verb),
    el("button", { type: "button", "data-action": "cancel", onclick: onCancel }, "Cancel"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const name = known || who.value.trim();
    if (!name) { who.focus(); return; }
    if (!known) setActorName(name);
    for (const b of form.querySelectorAll("button")) b.disabled = true;
    try {
      await postJSON(`/api/alarms/${enc(alarm.id)}/${STEP[step].path}`, { actor: name, ...(note.value.trim() ? { note: note.value.trim() } : {}) });
      onDone();
    } catch (err) {
      for (const b of form.querySelectorAll("button")) b.disabled = false;
      onDone(`${STEP[step].verb} ${alarm.id}: ${err.message}`);
    }
  });
  setTimeout(() => (known ? note : who).focus(), 0);
  return form;
}

/** Ack / clear buttons for an alarm: each opens a small form (the name, asked once, and a note);
 * `onError(message)` when the server refuses. */
export function alarmActions(alarm, onError) {
  const box = el("div", { class: "actions" });
  const buttons = () => [
    alarm.state === "active" ? button("ack") : null,
    alarm.state !== "cleared" ? button("clear") : null,
  ];
  const button = (step) => el("button", { class: step === "clear" ? "danger" : "", "data-action": step,
    onclick: () => setChildren(box, stepForm(alarm, step, (err) => {
      if (err) onError(err);
      setChildren(box, ...buttons());
    }, () => setChildren(box, ...buttons()))) }, STEP[step].label);
  setChildren(box, ...buttons());
  return box;
}

/** Who acknowledged and cleared it, with their notes. */
function lifecycle(a) {
  const line = (what, when, who, note) => el("div", { class: "who", dataset: { step: what } },
    el("span", { class: "faint" }, `${what} ${fmtTime(when)}`), who ? [" by ", el("b", {}, who)] : null,
    note ? el("span", { class: "note" }, ` — “${note}”`) : null);
  return [
    a.acknowledged ? line("ack", a.acknowledged, a.acknowledged_by, a.ack_note) : null,
    a.cleared ? line("cleared", a.cleared, a.cleared_by, a.clear_note ?? (a.acknowledged ? null : a.note)) : null,
  ];
}

function shelvedTag(a) {
  return isShelved(a) ? el("span", { class: "shelved-tag", title: `shelf ${a.shelf}` }, `shelved until ${fmtTime(a.shelved_until)}`) : null;
}

function affectedLine(a) {
  const list = (a.affected || []).filter((t) => t !== a.twin);
  if (!list.length) return null;
  return el("div", { class: "faint affected" }, "affects ",
    list.flatMap((t, i) => [i ? " · " : null, el("a", { href: `#/twin/${enc(t)}` }, t)]));
}

export function alarmRow(a, onError, { withTwin = true } = {}) {
  return el("tr", { class: a.state === "cleared" ? "" : `sev-row-${a.severity}`,
    dataset: { alarm: a.id, state: a.state, twin: a.twin, shelved: isShelved(a) ? "true" : "false" } },
    el("td", {}, sevPill(a.severity)),
    el("td", {}, el("span", { class: `st st-${a.state}` }, a.state), shelvedTag(a)),
    withTwin ? el("td", {}, el("a", { class: "tid", href: `#/twin/${enc(a.twin)}` }, a.twin),
      a.origin && a.origin !== a.twin
        ? el("div", { class: "faint" }, "from ", el("a", { href: `#/twin/${enc(a.origin)}` }, a.origin))
        : null, affectedLine(a)) : null,
    el("td", {}, el("div", { class: "alarm-msg" }, a.message || a.rule),
      el("div", { class: "faint mono" }, a.rule, a.property ? ` · ${a.property} = ${fmt(a.value)}` : "")),
    el("td", { class: "num" }, a.count > 1 ? `×${a.count}` : ""),
    el("td", { class: "muted", title: a.raised }, fmtTime(a.raised)),
    el("td", { class: "muted lifecycle", title: a.updated }, a.acknowledged || a.cleared ? lifecycle(a) : fmtTime(a.updated)),
    el("td", {}, alarmActions(a, onError)));
}

/** The same alarm as a compact card, for side panels. */
export function alarmCard(a, onError) {
  return el("div", { class: `alarm-card sev-card-${a.severity}`, dataset: { alarm: a.id, state: a.state, twin: a.twin } },
    el("div", { class: "line" }, sevPill(a.severity), el("span", { class: `st st-${a.state}` }, a.state), shelvedTag(a),
      a.count > 1 ? el("span", { class: "faint" }, `×${a.count}`) : null,
      el("span", { class: "faint", title: a.raised }, `raised ${fmtTime(a.raised)}`)),
    el("div", { class: "msg" }, a.message || a.rule),
    el("div", { class: "lifecycle" }, lifecycle(a)),
    el("div", { class: "line" }, el("span", { class: "faint mono" }, a.rule,
      a.origin && a.origin !== a.twin ? ` · from ${a.origin}` : ""), el("span", { class: "spacer" }), alarmActions(a, onError)));
}

/** One entry per condition, open before cleared, then by severity and newest first. */
export function sortAlarms(list) {
  const stateRank = { active: 0, acknowledged: 1, cleared: 2 };
  return groupAlarms(list).sort((a, b) => (stateRank[a.state] ?? 3) - (stateRank[b.state] ?? 3)
    || sevRank(a.severity) - sevRank(b.severity) || String(b.raised).localeCompare(String(a.raised)));
}

// -- the "acting as" control and the shelving form --------------------------------------------------
function actorControl() {
  const box = el("span", { class: "actor", id: "actor" });
  const show = () => {
    const name = actorName();
    if (name) {
      setChildren(box, el("span", { class: "faint" }, "acting as "), el("b", { "data-actor": name }, name), " ",
        el("button", { class: "link", "data-action": "change-actor", onclick: ask }, "change"));
    } else {
      ask();
    }
  };
  const ask = () => {
    const input = el("input", { placeholder: "your name", "aria-label": "your name", maxlength: 128, value: actorName() || null });
    const form = el("form", { class: "inline" }, el("span", { class: "faint" }, "Who are you? "), input,
      el("button", { type: "submit", "data-action": "save-actor" }, "Save"));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      if (input.value.trim()) setActorName(input.value);
      else input.focus();
    });
    setChildren(box, form);
  };
  actorListeners.add(show);
  show();
  return { box, stop: () => actorListeners.delete(show) };
}

function shelveForm(twinIds, onDone, onCancel) {
  const twin = el("input", { name: "twin", list: "shelve-twins", placeholder: "twin id", "aria-label": "twin", required: true });
  const dur = el("select", { name: "for", "aria-label": "for how long" },
    DURATIONS.map(([v, label]) => el("option", { value: v, selected: v === "30m" }, label)));
  const reason = el("input", { name: "reason", placeholder: "reason (e.g. planned stop)", "aria-label": "reason",
    maxlength: 500, required: true });
  const subtree = el("input", { type: "checkbox", name: "subtree", checked: true });
  const who = actorName() ? null : el("input", { name: "actor", placeholder: "your name", "aria-label": "your name", required: true });
  const form = el("form", { class: "panel shelve-form" },
    el("h2", {}, "Shelve alarms during a planned stop"),
    el("div", { class: "row" }, twin, el("datalist", { id: "shelve-twins" }, twinIds.map((t) => el("option", { value: t }))),
      dur, reason, who, el("label", {}, subtree, " and the twins below it"),
      el("button", { type: "submit", "data-action": "confirm-shelve" }, "Shelve"),
      el("button", { type: "button", onclick: onCancel }, "Cancel")),
    el("div", { class: "faint" }, "Conditions are still recorded, marked shelved and not counted; the shelf ends by itself."));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const name = actorName() || who?.value.trim();
    if (!name) { who?.focus(); return; }
    if (!actorName()) setActorName(name);
    try {
      const res = await postJSON("/api/alarms/shelves", { twin: twin.value.trim(), for: dur.value,
        reason: reason.value.trim(), subtree: subtree.checked, actor: name });
      onDone(null, res);
    } catch (err) { onDone(`Shelve ${twin.value}: ${err.message}`); }
  });
  setTimeout(() => twin.focus(), 0);
  return form;
}

function shelfList(shelves, onEnd) {
  if (!shelves.length) return null;
  return el("div", { class: "panel shelves" }, el("h2", {}, `Shelved now (${shelves.length})`),
    el("table", { class: "grid" }, el("tbody", {}, shelves.map((s) => el("tr", { dataset: { shelf: s.id, twin: s.twin } },
      el("td", {}, el("a", { class: "tid", href: `#/twin/${enc(s.twin)}` }, s.twin),
        s.subtree && s.twins.length > 1 ? el("span", { class: "faint" }, ` +${s.twins.length - 1} below`) : null),
      el("td", {}, s.reason),
      el("td", { class: "muted" }, `by ${s.actor}`),
      el("td", { class: "muted", title: s.until }, `until ${fmtTime(s.until)}`),
      el("td", {}, el("button", { "data-action": "end-shelf", onclick: () => onEnd(s) }, "End now")))))));
}

export async function mount(view) {
  let tab = "open";
  let severity = "";
  const head = el("div", { class: "page-head" }, el("h1", {}, "Alarms"),
    el("span", { class: "sub" }, "one row per condition; acknowledge to take ownership, clear when resolved, shelve during planned stops"));
  const seg = el("div", { class: "seg" });
  const sevSel = el("select", { "aria-label": "severity", onchange: () => { severity = sevSel.value; load(); } },
    el("option", { value: "" }, "all severities"),
    ["critical", "major", "minor", "warning"].map((s) => el("option", { value: s }, s)));
  const status = el("span", { class: "muted" });
  const actor = actorControl();
  const shelveSlot = el("div");
  const shelvesSlot = el("div");
  const shelveBtn = el("button", { "data-action": "shelve", onclick: () => openShelve() }, "Shelve…");
  const errors = el("div");
  const panel = el("div", { class: "panel" });
  view.append(head, el("div", { class: "toolbar" }, seg, sevSel, status, el("span", { class: "spacer" }), shelveBtn, actor.box),
    errors, shelveSlot, shelvesSlot, panel);
  const showError = (text) => setChildren(errors, message("error", text));

  let alarms = new Map();
  let shelfTimer = null;
  const render = () => {
    setChildren(seg, ...Object.keys(TABS).map((t) => el("button", {
      class: t === tab ? "on" : "", onclick: () => { tab = t; load(); } }, t)));
    const want = TABS[tab];
    const list = sortAlarms([...alarms.values()]).filter((a) => want.states.includes(a.state)
      && (want.shelved === null || isShelved(a) === want.shelved) && (!severity || a.severity === severity));
    status.textContent = `${list.length} condition${list.length === 1 ? "" : "s"}`;
    setChildren(panel, el("table", { class: "grid alarms" },
      el("thead", {}, el("tr", {}, ["Severity", "State", "Twin", "Message", "", "Raised", "Last change", ""]
        .map((c, i) => el("th", { class: i === 4 ? "num" : "" }, c)))),
      el("tbody", {}, list.length ? list.map((a) => alarmRow(a, showError))
        : el("tr", {}, el("td", { colspan: 8, class: "muted" }, `No ${tab === "open" ? "open" : tab} alarms.`)))));
    // a shelf ends by itself: show it when the first one does
    clearTimeout(shelfTimer);
    const ends = [...alarms.values()].filter(isShelved).map((a) => Date.parse(a.shelved_until));
    if (ends.length) shelfTimer = setTimeout(() => { render(); loadShelves(); }, Math.max(250, Math.min(...ends) - Date.now() + 250));
  };
  const later = coalesce(render);

  let shelvesOn = true;
  async function loadShelves() {
    if (!shelvesOn) return;
    let res;
    try { res = await getJSON("/api/alarms/shelves?active=true"); } catch (e) {
      if (e.status === 404) { shelvesOn = false; shelveBtn.hidden = true; return; }
      showError(`Could not list shelves: ${e.message}`);
      return;
    }
    setChildren(shelvesSlot, shelfList(res.items, async (s) => {
      try { await postJSON(`/api/alarms/shelves/${enc(s.id)}/end`, { actor: actorName() || "dashboard" }); } catch (e) {
        showError(`End shelf on ${s.twin}: ${e.message}`);
      }
      await Promise.all([loadShelves(), load()]);
    }));
  }
  async function openShelve() {
    const ids = await listTwins().then((ts) => ts.map((t) => t.id).sort()).catch(() => []);
    setChildren(shelveSlot, shelveForm(ids, async (err) => {
      if (err) { showError(err); return; }
      setChildren(shelveSlot);
      setChildren(errors);
      await Promise.all([loadShelves(), load()]);
    }, () => setChildren(shelveSlot)));
  }

  let available = true;
  let loads = 0;  // only the latest list counts (tabs clicked quickly: an older answer can arrive last)
  const streamed = new Map();  // alarms the stream told of while a list was being read: kept over it when newer
  const newer = (a, b) => !b || String(a.updated || a.raised || "") >= String(b.updated || b.raised || "");
  async function load() {
    const mine = ++loads;
    streamed.clear();
    const extra = severity ? { severity } : {};
    const got = await listAlarms(TABS[tab].states, extra).catch((e) => { showError(`Could not list alarms: ${e.message}`); return []; });
    if (mine !== loads) return;
    if (got === null) {
      available = false;
      setChildren(panel, message("info", "This server has no alarm service (GET /api/alarms is not there)."));
      return;
    }
    alarms = new Map(got.map((a) => [a.id, a]));
    for (const [id, a] of streamed) if (newer(a, alarms.get(id))) alarms.set(id, { ...a, affected: a.affected || alarms.get(id)?.affected || [] });
    streamed.clear();
    render();
  }
  await load();
  if (!available) { actor.stop(); return () => {}; }
  await loadShelves();
  const stop = live({ types: "alarm" }, (item) => {
    if (item.kind !== "alarm" || !item.alarm) return;
    const a = item.alarm;
    if (a.source) {  // a copy on an ancestor: its twin is one the condition affects
      const src = alarms.get(a.source);
      if (src && !(src.affected || []).includes(a.twin)) alarms.set(src.id, { ...src, affected: [...(src.affected || []), a.twin] });
      later();
      return;
    }
    alarms.set(a.id, { ...a, affected: a.affected || alarms.get(a.id)?.affected || [] });
    streamed.set(a.id, alarms.get(a.id));
    later();
  });
  return () => { stop(); actor.stop(); clearTimeout(shelfTimer); };
}
