// One prediction as the page shows it: the class and its probabilities, each gated layer's
// blocks on and off, the multiply-adds run against dense, and the server's timings. Built
// with DOM calls and textContent only. Every figure shown is also kept, unrounded, in a data-
// attribute, so tests can compare the page with the API's own answer.

import { element, formatCount, formatPercent } from "./dom.js";

function probabilityList(probabilities, predicted) {
  const list = element("ol", { className: "probabilities", id: "probabilities" });
  probabilities.forEach((probability, index) => {
    const item = element("li", {
      className: index === predicted ? "predicted" : "",
      dataset: { class: String(index), probability: String(probability) },
    });
    const label = element("span", { className: "class-name", textContent: String(index) });
    const bar = element("progress", {
      max: 1, value: probability, attributes: { "aria-label": `class ${index}` },
    });
    const figure = element("span", { className: "figure", textContent: formatPercent(probability) });
    item.append(label, bar, figure);
    list.append(item);
  });
  return list;
}

// A layer's blocks as a grid of squares, filled where on. For a screen reader the grid is one
// image whose label lists the blocks on; the squares also differ in shape, not only in colour.
function layerFigure(layer, report) {
  const blocks = report.blocks[layer];
  const active = report.active_blocks[layer];
  const computed = report.computed_blocks[layer];
  const indices = report.active_block_indices ? report.active_block_indices[layer] : null;
  const figure = element("figure", {
    className: "layer",
    dataset: { layer: String(layer), active: String(active), blocks: String(blocks) },
  });
  let caption = `Gated layer ${layer + 1}: ${active} of ${blocks} blocks on (${formatPercent(active / blocks)})`;
  if (computed > active) caption += `; ${computed} computed (the engine's routing ran more here)`;
  figure.append(element("figcaption", { textContent: caption }));
  if (indices === null) {
    figure.append(element("p", {
      className: "note",
      textContent: "This version's backend reports how many blocks ran, not which.",
    }));
    return figure;
  }
  const on = new Set(indices);
  const grid = element("div", {
    className: "gate-grid",
    attributes: {
      role: "img",
      "aria-label": `Blocks on in layer ${layer + 1}: ${indices.join(", ") || "none"}`,
    },
  });
  grid.style.gridTemplateColumns = `repeat(${Math.ceil(Math.sqrt(blocks))}, 1fr)`;
  for (let block = 0; block < blocks; block += 1) {
    grid.append(element("span", {
      className: on.has(block) ? "block on" : "block",
      title: `block ${block}: ${on.has(block) ? "on" : "off"}`,
      dataset: { block: String(block), on: String(on.has(block)) },
      attributes: { "aria-hidden": "true" },
    }));
  }
  figure.append(grid);
  return figure;
}

function definitions(rows) {
  const list = element("dl", { className: "figures" });
  for (const [term, text, field, value] of rows) {
    list.append(element("dt", { textContent: term }));
    list.append(element("dd", { textContent: text, dataset: { field, value: String(value) } }));
  }
  return list;
}

function computeSummary(report) {
  const ran = report.executed_macs / report.dense_macs;
  const meter = element("progress", {
    max: 1, value: Math.min(1, ran), id: "macs-bar",
    attributes: { "aria-label": "multiply-adds run, against the dense network" },
  });
  return [
    meter,
    definitions([
      ["Multiply-adds run", `${formatCount(report.executed_macs)} of ${formatCount(report.dense_macs)} dense (${formatPercent(ran)})`, "executed_macs", report.executed_macs],
      ["of which gaters", formatCount(report.gater_macs), "gater_macs", report.gater_macs],
      ["Saved", formatPercent(report.saved_fraction), "saved_fraction", report.saved_fraction],
    ]),
  ];
}

function timingSummary(timings) {
  const ms = (value) => `${value.toFixed(2)} ms`;
  return definitions([
    ["Queued", ms(timings.queue_ms), "queue_ms", timings.queue_ms],
    ["Forward (its batch)", ms(timings.compute_ms), "compute_ms", timings.compute_ms],
    ["In the server", ms(timings.total_ms), "total_ms", timings.total_ms],
    ["Batch size", String(timings.batch_size), "batch_size", timings.batch_size],
  ]);
}

// Replace `container`'s content with the answer's first prediction.
export function showResult(container, answer) {
  const prediction = answer.predictions[0];
  const report = prediction.compute;
  const top = prediction.probabilities[prediction.class];
  const headline = element("p", { className: "headline" });
  headline.append(
    "Class ",
    element("strong", { id: "predicted-class", textContent: String(prediction.class) }),
    ` with probability ${formatPercent(top)}; `,
    element("strong", { id: "saved", textContent: formatPercent(report.saved_fraction) }),
    report.saved_fraction >= 0 ? " of the multiply-adds saved."
      : " saved: the gaters cost more than the blocks they skipped.",
  );
  const layers = element("div", { className: "layers", id: "layers" });
  report.blocks.forEach((_, layer) => layers.append(layerFigure(layer, report)));
  container.replaceChildren(
    headline,
    element("h3", { textContent: "Blocks on, per gated layer" }),
    layers,
    element("h3", { textContent: "Compute, gater included" }),
    ...computeSummary(report),
    element("h3", { textContent: "Probabilities" }),
    probabilityList(prediction.probabilities, prediction.class),
    element("h3", { textContent: "Server timings" }),
    timingSummary(answer.timings),
  );
  container.dataset.model = answer.model_name;
  container.dataset.version = answer.model_version;
}
