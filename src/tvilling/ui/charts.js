// Time-series charts on Plotly (window.Plotly: the plotly.min.js shipped by the plotly Python
// package, served by this server at /ui/vendor/plotly.min.js).

const COLORS = ["#4aa3df", "#7ee0c3", "#c39bf0", "#e7c77d", "#f09c8a", "#8fd175"];
export const THRESHOLD = 1.0;
const MAX_POINTS = 20000;

function plotly() {
  if (!window.Plotly) throw new Error("the charting library (/ui/vendor/plotly.min.js) did not load");
  return window.Plotly;
}

function layout(title, unit, extra = {}) {
  return {
    paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)",
    font: { family: "system-ui, 'DejaVu Sans', sans-serif", size: 10.5, color: "#8794a3" },
    margin: { l: 46, r: 12, t: 24, b: 24 },
    showlegend: false,
    hovermode: "x unified",
    hoverlabel: { bgcolor: "#1a222b", bordercolor: "#313d4a", font: { color: "#d6dee7" } },
    annotations: [{ text: `<b>${title}</b>${unit ? `  <span style="color:#5d6977">${unit}</span>` : ""}`,
      xref: "paper", yref: "paper", x: 0, y: 1.02, xanchor: "left", yanchor: "bottom", showarrow: false,
      font: { size: 11.5, color: "#d6dee7" } }],
    xaxis: { type: "date", gridcolor: "#1f2831", linecolor: "#313d4a", zeroline: false, tickfont: { size: 10 },
      nticks: 6,
      // seconds where ticks are closer than a minute, so a short window never repeats the same label
      tickformatstops: [{ dtickrange: [null, 60000], value: "%H:%M:%S" }, { dtickrange: [60000, 43200000], value: "%H:%M" },
        { dtickrange: [43200000, null], value: "%d %b" }],
      hoverformat: "%Y-%m-%d %H:%M:%S" },
    yaxis: { gridcolor: "#1f2831", linecolor: "#313d4a", zeroline: false, tickfont: { size: 10 }, nticks: 5,
      automargin: true },
    ...extra,
  };
}

const CONFIG = { displayModeBar: false, responsive: true, displaylogo: false };

/** A line chart of one signal. `points` = {x: [Date|iso], y: [number]}. */
export function signalChart(div, title, unit, points, index = 0) {
  const color = COLORS[index % COLORS.length];
  const trace = { x: points.x, y: points.y, type: "scatter", mode: points.x.length < 40 ? "lines+markers" : "lines",
    name: title, line: { color, width: 1.6 }, marker: { size: 4, color }, hovertemplate: "%{y:.4g}<extra></extra>" };
  const lay = layout(title, unit);
  if (points.x.length === 1) {  // one reading: show it in the last quarter hour, not on a zero-width axis
    const t = new Date(points.x[0]).getTime();
    lay.xaxis.range = [new Date(t - 15 * 60_000), new Date(Math.max(Date.now(), t) + 60_000)];
    div.dataset.fixedRange = "1";  // until more readings come: see extend()
  } else {
    delete div.dataset.fixedRange;
  }
  return plotly().newPlot(div, [trace], lay, CONFIG);
}

/** The anomaly score with the alarm threshold at 1.0; points above it in red. */
export function anomalyChart(div, points) {
  const trace = { x: points.x, y: points.y, type: "scatter", mode: "lines", name: "anomaly score",
    line: { color: "#e7c77d", width: 1.6 }, hovertemplate: "%{y:.3f}<extra></extra>" };
  const above = { x: [], y: [], type: "scatter", mode: "markers", name: "above threshold",
    marker: { color: "#e5534b", size: 5 }, hovertemplate: "%{y:.3f}<extra>anomalous</extra>" };
  points.x.forEach((x, i) => { if (points.y[i] >= THRESHOLD) { above.x.push(x); above.y.push(points.y[i]); } });
  const extra = {
    shapes: [{ type: "line", xref: "paper", x0: 0, x1: 1, y0: THRESHOLD, y1: THRESHOLD,
      line: { color: "#e5534b", width: 1.2, dash: "dash" } }],
    yaxis: { ...layout("", "").yaxis, rangemode: "tozero" },
  };
  const lay = layout("Anomaly score", "", extra);
  lay.annotations.push({ text: "threshold", xref: "paper", x: 0.01, y: THRESHOLD, yref: "y", xanchor: "left",
    yanchor: "bottom", showarrow: false, font: { size: 10, color: "#e5534b" } });
  return plotly().newPlot(div, [trace, above], lay, CONFIG);
}

/** Remaining useful life with its p10–p90 band. */
export function rulChart(div, unit, rul, p10, p90) {
  const band = "rgba(74,163,223,0.18)";
  const lo = { x: p10.x, y: p10.y, type: "scatter", mode: "lines", name: "p10", line: { width: 0, color: band },
    hovertemplate: "p10 %{y:.4g}<extra></extra>" };
  const hi = { x: p90.x, y: p90.y, type: "scatter", mode: "lines", name: "p90", fill: "tonexty", fillcolor: band,
    line: { width: 0, color: band }, hovertemplate: "p90 %{y:.4g}<extra></extra>" };
  const mid = { x: rul.x, y: rul.y, type: "scatter", mode: "lines", name: "RUL", line: { color: "#4aa3df", width: 1.8 },
    hovertemplate: "RUL %{y:.4g}<extra></extra>" };
  const lay = layout("RUL", `${unit ? `${unit} · ` : ""}p10–p90 band · over wall-clock time`,
    { yaxis: { ...layout("", "").yaxis, rangemode: "tozero" } });
  if (!rul.x.length) {  // no credible trend in the window: say so rather than draw an empty or made-up line
    lay.annotations.push({ text: "no trend yet: no remaining life is predicted while wear does not grow",
      xref: "paper", yref: "paper", x: 0.5, y: 0.5, showarrow: false, font: { size: 11, color: "#8794a3" } });
    lay.xaxis.visible = false;
    lay.yaxis.visible = false;
  }
  return plotly().newPlot(div, [lo, hi, mid], lay, CONFIG);
}

/** Add points to traces: `add(div, {0: [[x, y], ...], 2: [...]})`. */
export function extend(div, perTrace) {
  const idx = Object.keys(perTrace).map(Number);
  if (!idx.length || !div.data) return;
  const xs = idx.map((i) => perTrace[i].map((p) => p[0]));
  const ys = idx.map((i) => perTrace[i].map((p) => p[1]));
  plotly().extendTraces(div, { x: xs, y: ys }, idx, MAX_POINTS);
  if (div.dataset.fixedRange) {
    delete div.dataset.fixedRange;
    plotly().relayout(div, { "xaxis.autorange": true });
  }
}

export function purge(div) {
  if (window.Plotly && div) window.Plotly.purge(div);
}
