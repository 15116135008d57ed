// What-if: fork a machine twin into a sandbox, set up two or three options (commands, maintenance,
// parameter changes, faults), run them forward with uncertainty, and compare their predicted
// trajectories (p10–p90 bands) and KPIs side by side. The API does the work (POST /api/scenarios);
// this page sets it up, follows its progress and shows the result. Nothing here touches the live twin.

import {
  ApiError, getScenario, listScenarios, listTwins, live, runScenario, scenarioVocabulary,
} from "./api.js";
import { purge } from "./charts.js";
import { el, fmt, fmtTime, message, setChildren, shortModel } from "./util.js";

/** Colours of the options, in order (the baseline is always the first). */
const COLORS = ["#8794a3", "#4aa3df", "#e7c77d", "#c39bf0", "#7ee0c3"];
const BAND_ALPHA = 0.16;
const MAX_OPTIONS = 4;
const MAX_CHARTS = 4;
const POLL_MS = 1000;
const PREFERRED_OUTPUTS = ["de:vibration", "motor.temperature", "throughput", "speed", "motor.current"];

/** The KPI table's rows: key, label, how to show a value. */
const KPIS = [
  ["ttf_p10_h", "Time to failure p10", "h"],
  ["ttf_p50_h", "Time to failure p50", "h"],
  ["ttf_p90_h", "Time to failure p90", "h"],
  ["p_fail_horizon", "P(failure) over the horizon", "p"],
  ["p_fail_shift", "P(failure) next shift", "p"],
  ["production", "Production", "n"],
  ["energy_kwh", "Energy", "kWh"],
  ["lost_production", "Lost production vs baseline", "n"],
];

const norm = (x) => (typeof x === "string" ? { name: x } : x || {});

function hexToRgba(hex, a) {
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${(n >> 16) & 255},${(n >> 8) & 255},${n & 255},${a})`;
}

/** A KPI value as text: time to failure beyond the horizon is null; probabilities as percentages. */
function kpiText(value, kind, horizon) {
  if (value === null) return kind === "h" ? `> ${horizon || "horizon"}` : "—";
  if (typeof value !== "number") return "—";
  if (kind === "p") return `${(value * 100).toFixed(value < 0.1 && value > 0 ? 1 : 0)} %`;
  if (kind === "h") return `${fmt(Number(value.toFixed(1)))} h`;
  if (kind === "kWh") return `${fmt(Math.round(value))} kWh`;
  return fmt(Math.round(value * 10) / 10);
}

/** The name of the do-nothing option: the first one without interventions, else "baseline", else the first. */
function baselineOf(result) {
  const names = Object.keys(result.kpis || {});
  const plain = (result.request?.options || []).find((o) => !(o.interventions || []).length);
  if (plain && names.includes(plain.name)) return plain.name;
  if (names.includes("baseline")) return "baseline";
  return names[0];
}

// -- the form -----------------------------------------------------------------------------------

/** One intervention row; `kind` is command | maintenance | parameter | fault. */
function interventionRow(vocab, kind, init, remove) {
  const field = (f) => ({ dataset: { f } });
  const pick = (items, selected) => el("select", { ...field(kind), class: "iv-name" },
    items.map((it) => el("option", { value: it.name, selected: it.name === selected || undefined }, it.name)));
  const num = (f, value, placeholder) => el("input", { ...field(f), type: "number", step: "any", class: "iv-num",
    value: value ?? "", placeholder });
  const time = (f, value, placeholder) => el("input", { ...field(f), type: "text", class: "iv-time", value: value ?? "",
    placeholder, size: 4 });
  const row = el("div", { class: "iv", dataset: { kind } });
  const parts = [el("span", { class: "iv-kind" }, kind)];
  if (kind === "command") {
    const name = pick(vocab.commands, init.command);
    const value = num("value", init.value, "value");
    const hint = el("span", { class: "faint iv-hint" });
    const sync = () => {
      const c = vocab.commands.find((x) => x.name === name.value) || {};
      const fixed = c.fixed !== undefined && c.fixed !== null;
      value.hidden = fixed;
      hint.textContent = fixed ? "" : [c.lower, c.upper].every((b) => typeof b === "number")
        ? `${fmt(c.lower)}–${fmt(c.upper)}${c.unit ? ` ${c.unit}` : ""}` : "";
    };
    name.addEventListener("change", sync);
    sync();
    parts.push(name, value, hint, "at", time("at", init.at ?? "0m", "0m"));
  } else if (kind === "maintenance") {
    const name = pick(vocab.maintenance, init.maintenance);
    const part = el("select", { ...field("part"), class: "iv-part" });
    const sync = () => {
      const m = vocab.maintenance.find((x) => x.name === name.value) || {};
      const ps = m.parts || [];
      setChildren(part, ps.map((p) => el("option", { value: p, selected: p === init.part || undefined }, p)));
      part.hidden = !ps.length;
    };
    name.addEventListener("change", sync);
    sync();
    parts.push(name, part, "at", time("at", init.at ?? "4h", "4h"), "for", time("duration", init.duration ?? "1h", "1h"));
  } else if (kind === "parameter") {
    const name = pick(vocab.parameters, init.parameter);
    const value = num("value", init.value, "value");
    const hint = el("span", { class: "faint iv-hint" });
    const sync = () => {
      const p = vocab.parameters.find((x) => x.name === name.value) || {};
      if (value.value === "" && typeof p.default === "number") value.value = String(p.default);
      hint.textContent = [p.lower, p.upper].every((b) => typeof b === "number")
        ? `${fmt(p.lower)}–${fmt(p.upper)}${p.unit ? ` ${p.unit}` : ""}` : "";
    };
    name.addEventListener("change", () => { value.value = ""; sync(); });
    sync();
    parts.push(name, value, hint, "from", time("at", init.at ?? "0m", "0m"));
  } else {
    const name = pick(vocab.faults, init.fault);
    parts.push(name, num("size", init.size ?? 1, "size"), "at", time("at", init.at ?? "0m", "0m"));
  }
  parts.push(el("button", { type: "button", class: "link iv-remove", title: "remove this intervention",
    onclick: () => { row.remove(); remove(); } }, "remove"));
  row.append(...parts);
  return row;
}

/** An intervention row's body for the API. */
function readIntervention(row) {
  const kind = row.dataset.kind;
  const v = (f) => row.querySelector(`[data-f="${f}"]`);
  const text = (f) => v(f)?.value.trim() || undefined;
  const number = (f) => {
    const input = v(f);
    if (!input || input.hidden || input.value.trim() === "") return undefined;
    return Number(input.value);
  };
  if (kind === "command") return { at: text("at"), command: v("command").value, value: number("value") };
  if (kind === "maintenance") {
    const part = v("part");
    return { at: text("at"), maintenance: v("maintenance").value, part: part.hidden ? undefined : part.value,
      duration: text("duration") };
  }
  if (kind === "parameter") return { at: text("at"), parameter: v("parameter").value, value: number("value") };
  return { at: text("at"), fault: v("fault").value, size: number("size") };
}

/** The options of the demo's question, from what the vocabulary offers. */
function defaultOptions(vocab) {
  const setSpeed = vocab.commands.find((c) => /speed/i.test(c.name)) || vocab.commands[0];
  const maint = vocab.maintenance[0];
  const out = [{ name: "keep running", interventions: [] }];
  if (setSpeed) {
    const value = typeof setSpeed.lower === "number" && typeof setSpeed.upper === "number"
      ? Math.min(setSpeed.upper, Math.max(setSpeed.lower, 900)) : 900;
    out.push({ name: `slow to ${fmt(value)}`, interventions: [{ at: "0m", command: setSpeed.name, value }] });
  }
  if (maint) {
    out.push({ name: `${maint.name}`, interventions: [{ at: "4h", maintenance: maint.name,
      part: (maint.parts || [])[0], duration: "1h" }] });
  }
  return out;
}

// -- charts --------------------------------------------------------------------------------------

function chartLayout(title) {
  return {
    paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)",
    font: { family: "system-ui, 'DejaVu Sans', sans-serif", size: 10.5, color: "#8794a3" },
    margin: { l: 46, r: 12, t: 24, b: 30 }, showlegend: false, hovermode: "x unified",
    hoverlabel: { bgcolor: "#1a222b", bordercolor: "#313d4a", font: { color: "#d6dee7" } },
    annotations: [{ text: `<b>${title}</b>  <span style="color:#5d6977">p50 with p10–p90 band</span>`,
      xref: "paper", yref: "paper", x: 0, y: 1.02, xanchor: "left", yanchor: "bottom", showarrow: false,
      font: { size: 11.5, color: "#d6dee7" } }],
    xaxis: { title: { text: "hours from the fork", font: { size: 10 }, standoff: 4 }, gridcolor: "#1f2831",
      linecolor: "#313d4a", zeroline: false, tickfont: { size: 10 } },
    yaxis: { gridcolor: "#1f2831", linecolor: "#313d4a", zeroline: false, tickfont: { size: 10 }, nticks: 5,
      automargin: true },
  };
}

/** One output's chart: per option a p10–p90 band and its p50 line; the baseline dashed. */
function outputChart(div, output, hours, perOption, names, baseline) {
  const traces = [];
  names.forEach((name, i) => {
    const s = perOption[name];
    if (!s) return;
    const color = COLORS[i % COLORS.length];
    const band = hexToRgba(color, BAND_ALPHA);
    const isBase = name === baseline;
    if (Array.isArray(s.p10) && Array.isArray(s.p90)) {
      traces.push({ x: hours, y: s.p10, type: "scatter", mode: "lines", line: { width: 0, color: band },
        hoverinfo: "skip", showlegend: false });
      traces.push({ x: hours, y: s.p90, type: "scatter", mode: "lines", fill: "tonexty", fillcolor: band,
        line: { width: 0, color: band }, hoverinfo: "skip", showlegend: false });
    }
    traces.push({ x: hours, y: s.p50, type: "scatter", mode: "lines", name: isBase ? `${name} (baseline)` : name,
      line: { color, width: isBase ? 1.6 : 1.9, dash: isBase ? "dash" : "solid" },
      hovertemplate: `${name} %{y:.4g}<extra></extra>` });
  });
  div.dataset.options = String(names.filter((n) => perOption[n]).length);
  if (!window.Plotly) throw new Error("the charting library (/ui/vendor/plotly.min.js) did not load");
  return window.Plotly.newPlot(div, traces, chartLayout(output),
    { displayModeBar: false, responsive: true, displaylogo: false });
}

// -- the page -----------------------------------------------------------------------------------

export async function mount(view, { id: openId } = {}) {
  const divs = [];
  let stopStream = null;
  let pollTimer = null;
  let current = null;  // id of the scenario shown
  let gone = false;

  const twinSel = el("select", { id: "wi-twin", dataset: { field: "twin" } });
  const horizon = el("input", { id: "wi-horizon", type: "text", value: "24h", size: 5, dataset: { field: "horizon" } });
  const step = el("input", { id: "wi-step", type: "text", value: "1m", size: 4, dataset: { field: "step" } });
  const samples = el("input", { id: "wi-samples", type: "number", min: 1, value: 100, style: { width: "6em" },
    dataset: { field: "samples" } });
  const seed = el("input", { id: "wi-seed", type: "number", placeholder: "random", style: { width: "7em" },
    dataset: { field: "seed" } });
  const optionsEl = el("div", { class: "wi-options", id: "wi-options" });
  const formErr = el("div", { class: "wi-form-err" });
  const runBtn = el("button", { type: "submit", class: "primary", id: "wi-run" }, "Run scenario");
  const addBtn = el("button", { type: "button", id: "wi-add-option" }, "+ option");
  const vocabNote = el("div", { class: "faint wi-vocab" });
  const form = el("form", { class: "wi-form", novalidate: true },
    el("div", { class: "wi-row" },
      el("label", {}, "Twin ", twinSel),
      el("label", {}, "Horizon ", horizon),
      el("label", {}, "Step ", step),
      el("label", {}, "Samples ", samples),
      el("label", {}, "Seed ", seed)),
    vocabNote, optionsEl,
    el("div", { class: "wi-row" }, addBtn, el("span", { class: "spacer" }), runBtn),
    formErr);
  const progressFill = el("span", { class: "fill" });
  const progressText = el("span", { class: "wi-progress-text" });
  const progress = el("div", { class: "wi-progress", id: "wi-progress", hidden: true },
    el("span", { class: "bar" }, progressFill), progressText);
  const resultHead = el("div", { class: "wi-result-head" });
  const kpiBody = el("div", { class: "body flush", id: "wi-kpis" });
  const outputPick = el("div", { class: "wi-outputs" });
  const legend = el("div", { class: "legend wi-legend" });
  const charts = el("div", { class: "charts wi-charts", id: "wi-charts" });
  const results = el("section", { class: "panel", id: "wi-results", hidden: true },
    el("h2", {}, "Prediction", el("span", { class: "right" }, resultHead)),
    el("div", { class: "body" }, legend), kpiBody,
    el("div", { class: "body wi-pick" }, outputPick), charts);
  const listBody = el("div", { class: "body flush scroll", id: "wi-list" });

  view.append(
    el("div", { class: "page-head" }, el("h1", {}, "What-if"),
      el("span", { class: "sub" }, "Fork a twin into a sandbox and compare options with uncertainty. Live state is never touched.")),
    el("div", { class: "wi-grid" },
      el("div", { class: "col" },
        el("section", { class: "panel", id: "wi-setup" }, el("h2", {}, "Options"), el("div", { class: "body" }, form, progress)),
        el("section", { class: "panel", id: "wi-earlier" }, el("h2", {}, "Earlier scenarios"), listBody)),
      el("div", { class: "col" }, results)));

  // -- twins and their vocabulary ------------------------------------------------------------
  let vocab = { commands: [], maintenance: [], faults: [], parameters: [], outputs: [] };
  const twins = await listTwins().catch(() => []);
  let machines = twins.filter((t) => /machine/i.test(shortModel(t.model)));
  if (!machines.length) machines = twins;
  machines.sort((a, b) => a.id.localeCompare(b.id));
  setChildren(twinSel, machines.map((t) => el("option", { value: t.id }, `${t.id} · ${shortModel(t.model)}`)));

  const addOption = (init) => {
    const n = optionsEl.children.length;
    const list = el("div", { class: "iv-list" });
    const name = el("input", { type: "text", class: "opt-name", value: init?.name ?? `option ${n + 1}`, size: 16 });
    const card = el("div", { class: "wi-option" });
    const renumber = () => {
      [...optionsEl.children].forEach((c, i) => {
        c.dataset.field = `options[${i}]`;
        c.style.setProperty("--opt", COLORS[i % COLORS.length]);
        c.querySelector(".opt-name").dataset.field = `options[${i}].name`;
        [...c.querySelectorAll(".iv")].forEach((r, j) => { r.dataset.field = `options[${i}].interventions[${j}]`; });
        const tag = c.querySelector(".opt-tag");
        tag.textContent = c.querySelectorAll(".iv").length ? "" : "baseline: no change";
      });
      addBtn.disabled = optionsEl.children.length >= MAX_OPTIONS;
    };
    const add = (kind, ivInit = {}) => { list.append(interventionRow(vocab, kind, ivInit, renumber)); renumber(); };
    const adders = [["command", "commands"], ["maintenance", "maintenance"], ["parameter", "parameters"],
      ["fault", "faults"]].filter(([, k]) => vocab[k].length)
      .map(([kind]) => el("button", { type: "button", class: "link", onclick: () => add(kind) }, `+ ${kind}`));
    card.append(
      el("div", { class: "wi-option-head" }, el("span", { class: "swatch" }), name, el("span", { class: "faint opt-tag" }),
        el("span", { class: "spacer" }),
        el("button", { type: "button", class: "link", title: "remove this option",
          onclick: () => { card.remove(); renumber(); } }, "remove option")),
      list, el("div", { class: "wi-adders" }, "add ", adders));
    optionsEl.append(card);
    for (const iv of init?.interventions || []) {
      const kind = iv.command ? "command" : iv.maintenance ? "maintenance" : iv.parameter ? "parameter" : "fault";
      add(kind, iv);
    }
    renumber();
  };

  const loadVocabulary = async (twin, options) => {
    setChildren(formErr);
    try {
      const v = await scenarioVocabulary(twin);
      vocab = { commands: (v.commands || []).map(norm), maintenance: (v.maintenance || []).map(norm),
        faults: (v.faults || []).map(norm), parameters: (v.parameters || []).map(norm), outputs: v.outputs || [] };
      vocabNote.textContent = `${vocab.commands.length} commands · ${vocab.maintenance.length} maintenance actions · `
        + `${vocab.parameters.length} parameters · ${vocab.faults.length} faults`;
      runBtn.disabled = false;
    } catch (e) {
      vocab = { commands: [], maintenance: [], faults: [], parameters: [], outputs: [] };
      vocabNote.textContent = "";
      showError(e);
      runBtn.disabled = true;
    }
    optionsEl.replaceChildren();
    for (const o of options || defaultOptions(vocab)) addOption(o);
  };

  // -- errors next to the field they name ----------------------------------------------------
  function clearErrors() {
    for (const x of form.querySelectorAll(".field-err")) x.remove();
    for (const x of form.querySelectorAll(".invalid")) x.classList.remove("invalid");
    setChildren(formErr);
  }
  function showError(e) {
    const text = e instanceof ApiError ? e.message : `Could not run the scenario: ${e.message}`;
    const field = e?.problem?.field;
    let target = null;
    if (typeof field === "string") {
      // the element whose field is the longest prefix of the one named ("options[1].interventions[0].value")
      let best = -1;
      for (const node of form.querySelectorAll("[data-field]")) {
        const f = node.dataset.field;
        if ((field === f || field.startsWith(`${f}.`) || field.startsWith(`${f}[`)) && f.length > best) {
          best = f.length; target = node;
        }
      }
      const rest = target ? field.slice(target.dataset.field.length).replace(/^\./, "") : "";
      const sub = target && rest ? target.querySelector(`[data-f="${rest.split(/[.[]/)[0]}"]`) : null;
      if (sub) target = sub;
    }
    const note = el("div", { class: "field-err", role: "alert", dataset: { for: field || "" } }, text);
    if (target) {
      target.classList.add("invalid");
      const anchor = target.closest(".iv, .wi-option-head, label") || target;
      anchor.after(note);
    } else {
      formErr.append(note);
    }
  }

  // -- run, follow, show -----------------------------------------------------------------------
  const setProgress = (status, p) => {
    const frac = typeof p === "number" ? (p > 1 ? p / 100 : p) : 0;
    progress.hidden = false;
    progress.dataset.status = status;
    progressFill.style.width = `${Math.round(Math.max(0, Math.min(1, frac)) * 100)}%`;
    progressText.textContent = status === "running" ? `running · ${Math.round(frac * 100)} %` : status;
  };

  const follow = (id) => {
    clearTimeout(pollTimer);
    if (current !== id) delete progress.dataset.streamed;
    current = id;
    const poll = async () => {
      if (gone || current !== id) return;
      let s;
      try { s = await getScenario(id); } catch (e) { showError(e); return; }
      if (gone || current !== id) return;
      setProgress(s.status, s.status === "done" ? 1 : s.progress);
      if (s.status === "running") { pollTimer = setTimeout(poll, POLL_MS); return; }
      runBtn.disabled = false;
      show(s);
      refreshList();
    };
    poll();
  };
  // progress from the change stream; polling above stays as the fallback (and fetches the result)
  stopStream = live({ types: "scenario" }, (s) => {
    if (!current || s.id !== current || typeof s.status !== "string") return;
    progress.dataset.streamed = String(Number(progress.dataset.streamed || 0) + 1);
    if (s.status === "running") setProgress("running", s.progress);
    else { clearTimeout(pollTimer); follow(current); }
  });

  function show(s) {
    for (const d of divs) purge(d);
    divs.length = 0;
    results.hidden = false;
    results.dataset.status = s.status;
    results.dataset.id = s.id;
    const horizonText = s.request?.horizon ?? "";
    setChildren(resultHead, el("code", {}, s.id), ` · ${s.request?.twin ?? ""} · ${horizonText} · `
      + `${s.request?.samples ?? ""} samples · ${fmtTime(s.finished || s.created)}`);
    if (s.status === "failed") {
      setChildren(kpiBody, message("error", `The scenario failed: ${s.error || "no reason given"}`));
      setChildren(charts);
      setChildren(legend);
      setChildren(outputPick);
      return;
    }
    const names = Object.keys(s.kpis || {});
    const baseline = baselineOf(s);
    // the baseline first, then the options in the order they were asked for
    names.sort((a, b) => (a === baseline ? -1 : b === baseline ? 1 : 0));
    setChildren(legend, names.map((n, i) => el("span", { dataset: { option: n } },
      el("i", { style: { background: COLORS[i % COLORS.length] } }), n === baseline ? `${n} (baseline)` : n)));

    // KPI table: one column per option
    const head = el("tr", {}, el("th", {}, "KPI"), names.map((n, i) => el("th", { class: "num", dataset: { option: n } },
      el("i", { class: "dot", style: { background: COLORS[i % COLORS.length] } }), n, n === baseline
        ? el("span", { class: "faint" }, " baseline") : null)));
    const rows = KPIS.map(([key, label, kind]) => el("tr", { dataset: { kpi: key } }, el("td", {}, label),
      names.map((n) => {
        const v = s.kpis[n]?.[key];
        const worse = key === "lost_production" && typeof v === "number" && v > 0;
        return el("td", { class: `num mono${worse ? " delta" : ""}`, dataset: { option: n } }, kpiText(v, kind, horizonText));
      })));
    setChildren(kpiBody, el("table", { class: "grid wi-kpis" }, el("thead", {}, head), el("tbody", {}, rows)));

    // charts: one per chosen output
    const outs = s.series?.outputs || {};
    const available = Object.keys(outs);
    const hours = (s.series?.t_s || []).map((t) => t / 3600);
    const chosen = new Set(PREFERRED_OUTPUTS.filter((o) => available.includes(o)).slice(0, MAX_CHARTS));
    for (const o of available) if (chosen.size < Math.min(MAX_CHARTS, available.length)) chosen.add(o);
    const draw = () => {
      for (const d of divs) purge(d);
      divs.length = 0;
      const cells = [...chosen].map((o) => {
        const div = el("div", { class: "chart", dataset: { output: o } });
        divs.push(div);
        return div;
      });
      if (cells.length % 2) cells[cells.length - 1].classList.add("wide");
      setChildren(charts, cells.length ? cells : el("div", { class: "chart wide" },
        el("div", { class: "chart-empty" }, "No output series in this result.")));
      cells.forEach((div) => outputChart(div, div.dataset.output, hours, outs[div.dataset.output], names, baseline));
      charts.dataset.ready = "1";
    };
    setChildren(outputPick, available.map((o) => el("label", { class: "chk" },
      el("input", { type: "checkbox", value: o, checked: chosen.has(o) || undefined, onchange: (e) => {
        if (e.target.checked) chosen.add(o); else chosen.delete(o);
        draw();
      } }), o)));
    draw();
  }

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    clearErrors();
    const body = {
      twin: twinSel.value,
      horizon: horizon.value.trim(),
      step: step.value.trim(),
      samples: samples.value.trim() === "" ? undefined : Number(samples.value),
      seed: seed.value.trim() === "" ? undefined : Number(seed.value),
      options: [...optionsEl.children].map((card) => ({
        name: card.querySelector(".opt-name").value.trim(),
        interventions: [...card.querySelectorAll(".iv")].map(readIntervention),
      })),
    };
    runBtn.disabled = true;
    try {
      const res = await runScenario(body);
      setProgress(res.status || "running", res.progress);
      history.replaceState(null, "", `#/whatif/${encodeURIComponent(res.id)}`);
      follow(res.id);
      refreshList();
    } catch (err) {
      runBtn.disabled = false;
      showError(err);
    }
  });
  addBtn.addEventListener("click", () => addOption({ name: `option ${optionsEl.children.length + 1}`, interventions: [] }));
  twinSel.addEventListener("change", () => loadVocabulary(twinSel.value));

  // -- earlier scenarios -------------------------------------------------------------------------
  async function refreshList() {
    let items;
    try { items = (await listScenarios()).items || []; } catch (e) {
      setChildren(listBody, message("error", `Could not list scenarios: ${e.message}`));
      return;
    }
    if (gone) return;
    if (!items.length) { setChildren(listBody, el("div", { class: "body muted" }, "None yet.")); return; }
    setChildren(listBody, el("table", { class: "grid" },
      el("thead", {}, el("tr", {}, ["Created", "Twin", "Options", "Status"].map((c) => el("th", {}, c)))),
      el("tbody", {}, items.map((it) => el("tr", { dataset: { id: it.id }, class: it.id === current ? "on" : "" },
        el("td", {}, el("a", { href: `#/whatif/${encodeURIComponent(it.id)}` }, fmtTime(it.created))),
        el("td", { class: "mono" }, it.twin),
        el("td", {}, (it.options || []).map((o) => (typeof o === "string" ? o : o.name)).join(" · ")),
        el("td", { class: `st-${it.status}` }, it.status))))));
  }

  // -- first render ------------------------------------------------------------------------------
  if (openId) {
    let s = null;
    try { s = await getScenario(openId); } catch (e) {
      view.prepend(message("error", e.status === 404 ? `No scenario '${openId}'.` : `Could not load scenario: ${e.message}`));
    }
    if (s) {
      if (machines.some((t) => t.id === s.request?.twin)) twinSel.value = s.request.twin;
      for (const [k, input] of [["horizon", horizon], ["step", step], ["samples", samples], ["seed", seed]]) {
        if (s.request?.[k] !== undefined && s.request[k] !== null) input.value = String(s.request[k]);
      }
      await loadVocabulary(twinSel.value, s.request?.options);
      follow(s.id);
    } else if (twinSel.value) await loadVocabulary(twinSel.value);
  } else if (twinSel.value) {
    await loadVocabulary(twinSel.value);
  } else {
    setChildren(formErr, message("info", "No twins to simulate on this server."));
    runBtn.disabled = true;
  }
  refreshList();

  return () => {
    gone = true;
    clearTimeout(pollTimer);
    if (stopStream) stopStream();
    for (const d of divs) purge(d);
  };
}
