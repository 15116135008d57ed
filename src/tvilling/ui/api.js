// The server's HTTP API and live change stream, as the pages use them. Same origin only.

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

// -- the signed-in person ----------------------------------------------------------------------
// Under auth the dashboard is signed in by a session cookie the page cannot read (HttpOnly); every
// change it sends carries the session's CSRF token (X-CSRF-Token), which /auth/session tells it.
// The pages' own fetch calls go through the same door: the window's fetch is wrapped once, here, so
// that every same-origin POST/PUT/PATCH/DELETE sends the token and a 401 anywhere tells the shell.
const UNSAFE = new Set(["POST", "PUT", "PATCH", "DELETE"]);
let csrfToken = null;
const signedOutListeners = new Set();

/** Called whenever the server says the page is not (or no longer) signed in (a 401). */
export function onSignedOut(fn) {
  signedOutListeners.add(fn);
}

const pageFetch = window.fetch.bind(window);
window.fetch = async (input, init = {}) => {
  const url = new URL(input instanceof Request ? input.url : String(input), location.href);
  const method = (init.method || (input instanceof Request ? input.method : "GET")).toUpperCase();
  if (csrfToken && url.origin === location.origin && UNSAFE.has(method)) {
    const headers = new Headers(init.headers || (input instanceof Request ? input.headers : undefined));
    headers.set("x-csrf-token", csrfToken);
    init = { ...init, headers };
  }
  const res = await pageFetch(input, init);
  if (res.status === 401 && url.origin === location.origin && url.pathname !== "/auth/session") {
    for (const fn of signedOutListeners) fn();
  }
  return res;
};

/**
 * Who is signed in: {auth: "off"} when the server runs without auth, {auth: "required", principal: {id, roles},
 * csrf_token} when signed in, or null when a sign-in is needed (401).
 */
export async function signedIn() {
  const res = await fetch("/auth/session", { headers: { accept: "application/json" } });
  if (res.status === 404) return { auth: "off" };  // a server without the sign-in routes
  if (res.status === 401) return null;
  const data = await res.json();
  if (!res.ok) throw new ApiError(res.status, data);
  csrfToken = data.csrf_token || null;
  return data;
}

/** End this browser's session. */
export async function signOut() {
  await request("POST", "/auth/logout");
  csrfToken = null;
}

async function request(method, url, body) {
  const init = { method, headers: { accept: "application/json" } };
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(url, init);
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { detail: text }; }
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

export const getJSON = (url) => request("GET", url);
export const postJSON = (url, body) => request("POST", url, body);
const enc = encodeURIComponent;

/** Every twin, following the query cursor. */
export async function listTwins() {
  const out = [];
  let cursor = null;
  for (let page = 0; page < 100; page++) {
    const res = await postJSON("/api/query", cursor ? { limit: 1000, cursor } : { limit: 1000 });
    out.push(...res.items);
    if (!res.next) break;
    cursor = res.next;
  }
  return out;
}

export const getTwin = (id) => getJSON(`/api/twins/${enc(id)}`);
export const twinEvents = (id, after) => getJSON(`/api/twins/${enc(id)}/events?after=${after}`);

export function history(id, property, params) {
  const q = new URLSearchParams({ property, ...params });
  return getJSON(`/api/twins/${enc(id)}/history?${q}`);
}

export function invokeCommand(id, name, body) {
  return postJSON(`/api/twins/${enc(id)}/commands/${enc(name)}`, body);
}

/** Recent commands of a twin (null when this server has no command transport). */
export async function twinCommands(id) {
  try {
    return (await getJSON(`/api/commands?twin=${enc(id)}&limit=1000`)).items;
  } catch (e) {
    if (e.status === 503 || e.status === 404) return null;
    throw e;
  }
}

// -- models ------------------------------------------------------------------------------------
const models = new Map();

/** A model version with its DTDL definition (cached). */
export function getModel(dtmi) {
  if (!models.has(dtmi)) {
    const p = getJSON(`/api/models/${enc(dtmi)}`);
    p.catch(() => models.delete(dtmi));
    models.set(dtmi, p);
  }
  return models.get(dtmi);
}

function types(c) {
  return Array.isArray(c["@type"]) ? c["@type"] : [c["@type"]];
}

/**
 * What a model declares, its bases and components included:
 * {name, props: Map(path → {kind, unit, writable, schema, description}), commands: [...], relationships: [...]}.
 */
export async function describeModel(dtmi, seen = new Set()) {
  const out = { name: "", props: new Map(), commands: [], relationships: [] };
  if (!dtmi || seen.has(dtmi)) return out;
  seen.add(dtmi);
  let m;
  try { m = await getModel(dtmi); } catch { return out; }
  out.name = m.displayName || "";
  for (const base of m.extends || []) {
    const b = await describeModel(base, seen);
    for (const [k, v] of b.props) out.props.set(k, v);
    out.commands.push(...b.commands);
    out.relationships.push(...b.relationships);
  }
  for (const c of m.definition?.contents || []) {
    const t = types(c);
    if (t.includes("Property") || t.includes("Telemetry")) {
      out.props.set(c.name, { kind: t.includes("Telemetry") ? "telemetry" : "property", unit: c.unit || "",
        writable: !!c.writable, schema: c.schema, description: c.description || "" });
    } else if (t.includes("Command")) {
      out.commands.push(c);
    } else if (t.includes("Relationship")) {
      out.relationships.push(c);
    } else if (t.includes("Component") && typeof c.schema === "string") {
      const sub = await describeModel(c.schema, new Set(seen));
      for (const [k, v] of sub.props) out.props.set(`${c.name}.${k}`, v);
    }
  }
  return out;
}

/** Units use DTDL names; show the usual symbols. */
const UNITS = {
  degreeCelsius: "°C", revolutionPerMinute: "rpm", ampere: "A", gForce: "g", hour: "h", percent: "%",
  volt: "V", watt: "W", kilowatt: "kW", bar: "bar", pascal: "Pa", metrePerSecondSquared: "m/s²",
  millimetrePerSecond: "mm/s", hertz: "Hz", second: "s", minute: "min", kelvin: "K",
};
export const unitSymbol = (u) => UNITS[u] ?? u ?? "";

// -- alarms ------------------------------------------------------------------------------------
/** Alarms in the given states (null when this server has no alarm API). */
export async function listAlarms(states, extra = {}) {
  const out = [];
  for (const state of states) {
    let cursor = null;
    for (let page = 0; page < 20; page++) {
      const q = new URLSearchParams({ state, ...extra });
      if (cursor) q.set("after", cursor);
      let res;
      try {
        res = await getJSON(`/api/alarms?${q}`);
      } catch (e) {
        if (e.status === 404) return null;  // no alarm service on this server
        throw e;
      }
      out.push(...res.items);
      if (!res.next || res.items.length === 0) break;
      cursor = res.next;
    }
  }
  return out;
}


// -- scenarios (what-if) -----------------------------------------------------------------------
/** What a twin's scenarios may say: {commands, maintenance, faults, parameters, outputs}. */
export const scenarioVocabulary = (twin) => getJSON(`/api/scenarios/vocabulary?twin=${enc(twin)}`);
/** Start a scenario; answers {id, status, progress} at once, the run goes on in the server. */
export const runScenario = (body) => postJSON("/api/scenarios", body);
/** A scenario with its status, progress and (when done) KPIs and series. */
export const getScenario = (id) => getJSON(`/api/scenarios/${enc(id)}`);
/** Earlier scenarios, newest first: {items: [{id, twin, status, created, options}]}. */
export const listScenarios = () => getJSON("/api/scenarios");

// -- live stream -------------------------------------------------------------------------------
const EVENT_NAMES = [
  "TwinCreated", "TwinPatched", "TwinReplaced", "TwinMigrated", "TwinDeleted", "RelationshipSet",
  "RelationshipDeleted", "command", "desired", "alarm", "alarm.raised", "alarm.acknowledged", "alarm.cleared",
  "alarm.updated", "message",
  "scenario",  // what-if progress: the scenarios source's items {kind, id, status, progress}
];

const liveListeners = new Set();
let openStreams = 0;
let erroredStreams = 0;

/** Called with ("live" | "connecting" | "offline") whenever the page's streams change state. */
export function onLiveState(fn) {
  liveListeners.add(fn);
}

function announce(state) {
  for (const fn of liveListeners) fn(state);
}

/**
 * Follow the change stream with these filters (`{twins: "a,b", types: "alarm"}`); `onItem(item)`
 * for every change. EventSource reconnects by itself and resumes with Last-Event-ID.
 * Returns a function that closes the stream.
 */
export function live(filters, onItem) {
  const q = new URLSearchParams(Object.entries(filters || {}).filter(([, v]) => v));
  const es = new EventSource(`/api/stream${q.toString() ? `?${q}` : ""}`);
  let up = false;
  let failed = false;
  const handle = (e) => {
    if (!e.data) return;
    let item;
    try { item = JSON.parse(e.data); } catch { return; }
    try { onItem(item); } catch (err) { console.error("live update failed", err); }
  };
  for (const name of EVENT_NAMES) es.addEventListener(name, handle);
  es.addEventListener("open", () => {
    if (!up) { up = true; openStreams++; }
    if (failed) { failed = false; erroredStreams--; }
    announce(erroredStreams ? "connecting" : "live");
  });
  es.addEventListener("error", (e) => {
    if (e.data) console.warn("stream closed by the server:", e.data);
    if (!failed) { failed = true; erroredStreams++; }
    announce(es.readyState === EventSource.CLOSED ? "offline" : "connecting");
  });
  return () => {
    es.close();
    if (up) openStreams--;
    if (failed) erroredStreams--;
    announce(openStreams > 0 ? (erroredStreams ? "connecting" : "live") : "idle");
  };
}
