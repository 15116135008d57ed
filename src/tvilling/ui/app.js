// The dashboard's shell: sign-in, hash routes, the live-connection indicator, the open-alarm count.

import { listAlarms, live, onLiveState, onSignedOut, signedIn, signOut } from "./api.js";
import { el, message, setChildren, sevRank } from "./util.js";

const routes = {
  fleet: () => import("./fleet.js"),
  twin: () => import("./twin.js"),
  alarms: () => import("./alarms.js"),
  graph: () => import("./graph.js"),
  whatif: () => import("./whatif.js"),
  workorders: () => import("./workorders.js"),
  production: () => import("./production.js"),
};

const view = document.getElementById("view");
let unmount = null;
let generation = 0;

function parse(hash) {
  const parts = hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  if (parts[0] === "twin" && parts[1]) return { page: "twin", id: parts.slice(1).join("/") };
  if (parts[0] === "alarms") return { page: "alarms" };
  if (parts[0] === "graph") return { page: "graph" };
  if (parts[0] === "whatif") return { page: "whatif", id: parts.slice(1).join("/") || undefined };
  if (parts[0] === "workorders") return { page: "workorders", id: parts.slice(1).join("/") || undefined };
  if (parts[0] === "production") return { page: "production", id: parts.slice(1).join("/") || undefined };
  return { page: "fleet" };
}

async function route() {
  const gen = ++generation;
  const r = parse(location.hash);
  if (unmount) { try { unmount(); } catch (e) { console.error(e); } unmount = null; }
  view.replaceChildren();
  delete document.body.dataset.ready;  // until this page says it is ready (tests wait for it)
  document.body.dataset.page = r.page;
  for (const a of document.querySelectorAll("nav a")) {
    a.classList.toggle("active", a.dataset.route === (r.page === "twin" ? "fleet" : r.page));
  }
  try {
    const mod = await routes[r.page]();
    const stop = await mod.mount(view, r);
    if (gen !== generation) { if (stop) stop(); return; }
    unmount = stop;
  } catch (e) {
    console.error(e);
    if (gen === generation) view.append(message("error", `This page failed to load: ${e.message}`));
  }
  if (gen === generation) document.body.dataset.ready = r.page;
}

// -- header: live indicator, clock, open alarms --------------------------------------------------
const liveEl = document.getElementById("live");
onLiveState((state) => {
  liveEl.dataset.state = state;
  liveEl.textContent = { live: "live", connecting: "reconnecting…", offline: "offline", idle: "idle" }[state] || state;
});
const clock = document.getElementById("clock");
const tick = () => { clock.textContent = new Date().toISOString().slice(0, 19).replace("T", " ") + "Z"; };
tick();
setInterval(tick, 1000);

const navCount = document.getElementById("nav-alarms");
async function refreshAlarmCount() {
  // one per condition (the API groups propagated copies under their origin), shelved ones not counted
  const alarms = await listAlarms(["active"], { shelved: "false" }).catch(() => null);
  if (alarms === null) { navCount.hidden = true; return false; }
  navCount.hidden = alarms.length === 0;
  navCount.textContent = String(alarms.length);
  const worst = alarms.reduce((w, a) => (sevRank(a.severity) < sevRank(w) ? a.severity : w), null);
  navCount.className = `count sev-${worst || "none"}`;
  return true;
}
let countTimer = null;

// -- who is signed in: with auth off nothing shows; under auth the person and "Sign out", or "Sign in" ----------
const whoEl = document.getElementById("who");
let signedOut = false;

function showSignIn(text) {
  if (signedOut) return;
  signedOut = true;
  generation++;  // a page still loading stops here
  if (unmount) { try { unmount(); } catch (e) { console.error(e); } unmount = null; }
  whoEl.hidden = false;
  setChildren(whoEl, el("a", { class: "signin", href: "/auth/login", "data-action": "sign-in" }, "Sign in"));
  setChildren(view, el("section", { class: "signin-panel" },
    message("info", text),
    el("a", { class: "btn primary", href: "/auth/login", "data-action": "sign-in" }, "Sign in")));
  document.body.dataset.ready = "signin";
}

function showPerson(session) {
  const p = session.principal;
  const button = el("button", { class: "signout", "data-action": "sign-out", onclick: async () => {
    button.disabled = true;
    try { await signOut(); } catch (e) { console.error(e); }
    location.reload();
  } }, "Sign out");
  whoEl.hidden = false;
  setChildren(whoEl, el("span", { class: "person", title: `roles: ${p.roles.join(", ") || "none"}` },
    p.id, el("span", { class: "roles" }, p.roles.join(", "))), button);
}

async function start() {
  let session;
  try { session = await signedIn(); } catch (e) { console.error(e); session = { auth: "off" }; }
  if (session === null) {
    showSignIn("This server asks you to sign in before it shows the plant.");
    return;
  }
  if (session.auth !== "off") showPerson(session);
  onSignedOut(() => showSignIn("You are not signed in any more (the session ended or expired): sign in again."));
  refreshAlarmCount().then((ok) => {
    if (!ok) return;
    live({ types: "alarm" }, () => {  // a few alarm changes at once → one refresh
      clearTimeout(countTimer);
      countTimer = setTimeout(refreshAlarmCount, 300);
    });
    setInterval(refreshAlarmCount, 30_000);  // shelves end by themselves, without a change on the stream
  });
  routes.workorders().then((m) => m.watchProposedBadge(document.getElementById("nav-workorders"))).catch(console.error);
  window.addEventListener("hashchange", () => { if (!signedOut) route(); });
  route();
}

start();
