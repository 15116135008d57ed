// Predicted failure bands for a Gantt chart: per asset, the p10–p90 range of its remaining useful life (its own
// `rul_p10`/`rul_p90`, or those of the part the health index names as its weakest, e.g. a machine's bearing),
// placed on the time axis from the time the prediction was made. The work-orders and production pages share it.

import { getJSON, getTwin } from "./api.js";
import { fmt } from "./util.js";

const HOUR = 3_600_000;

/**
 * Failure-band items ({row, kind: "failure-band", start, end, mid, label, detail}) for up to `max` of `assets`;
 * an asset without a prediction in hours has none. A remaining life in plant hours (an accelerated plant) is
 * scaled to the readings' clock.
 */
export async function failureBands(assets, max = 40) {
  const health = await getJSON("/api/health").then((r) => r.items || {}).catch(() => ({}));
  const out = [];
  await Promise.all(assets.slice(0, max).map(async (asset) => {
    const from = [asset, health[asset]?.source].filter((t, i, a) => t && a.indexOf(t) === i);
    for (const tid of from) {
      const twin = await getTwin(tid).catch(() => null);
      const r = twin?.reported || {};
      if (typeof r.rul_p10 !== "number" || typeof r.rul_p90 !== "number") continue;
      const unit = health[tid]?.rul_unit;
      if (unit && unit.symbol !== "h") continue;  // cycles and the like have no place on a time axis
      const scale = unit?.clock === "plant" && unit.time_scale > 0 ? unit.time_scale : 1;
      const t0 = Date.parse(twin.metadata?.reported?.rul?.time || twin.updated);
      const at = (h) => t0 + (h / scale) * HOUR;
      out.push({ row: asset, kind: "failure-band", start: at(r.rul_p10), end: at(r.rul_p90),
        mid: typeof r.rul === "number" ? at(r.rul) : undefined, label: `predicted failure of ${tid}`,
        detail: { from: tid, "RUL p10 / p50 / p90": `${fmt(r.rul_p10)} / ${fmt(r.rul)} / ${fmt(r.rul_p90)} ${scale === 1 ? "h" : "plant h"}` } });
      break;
    }
  }));
  return out;
}
