// The live panel: per model, requests per second, latency percentiles and the mean saving
// over the last minute, from GET /v1/metrics/summary, read again every few seconds while the
// page is visible.

import { trafficSummary } from "./api.js";
import { element, formatMs, formatPercent } from "./dom.js";

const REFRESH_MS = 3000;

function row(model) {
  const latency = model.latency_ms || {};
  const cells = [
    ["requests", String(model.requests)],
    ["requests_per_second", model.requests_per_second.toFixed(2)],
    ["p50", formatMs(latency.p50)],
    ["p90", formatMs(latency.p90)],
    ["p99", formatMs(latency.p99)],
    ["mean_saved_fraction",
      model.mean_saved_fraction === null ? "–" : formatPercent(model.mean_saved_fraction)],
  ];
  const tr = element("tr", { dataset: { model: model.name } });
  tr.append(element("th", { scope: "row", textContent: model.name }));
  for (const [field, text] of cells) tr.append(element("td", { textContent: text, dataset: { field } }));
  return tr;
}

export class LivePanel {
  constructor(body, updated) {
    this.body = body;
    this.updated = updated;
    this.timer = null;
    document.addEventListener("visibilitychange", () => this.schedule(0));
  }

  start() {
    this.schedule(0);
  }

  schedule(delay) {
    clearTimeout(this.timer);
    if (document.visibilityState === "hidden") return;
    this.timer = setTimeout(() => this.refresh(), delay);
  }

  async refresh() {
    try {
      const summary = await trafficSummary();
      this.body.replaceChildren(...summary.models.map(row));
      this.updated.textContent = `Updated ${new Date().toLocaleTimeString()}.`;
      this.updated.dataset.count = String(Number(this.updated.dataset.count || 0) + 1);
    } catch (error) {
      this.updated.textContent = `Could not read the server's metrics: ${error.message}`;
    }
    this.schedule(REFRESH_MS);
  }
}
