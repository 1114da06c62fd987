// A model version's card (?model=NAME&version=V), from GET .../card: what it is, how it was
// trained, and how well it did on its test split.

import { listModels, modelCard, pageQuery, selectedFromUrl } from "./api.js";
import { byId as $, element, formatCount, formatPercent } from "./dom.js";

const UNKNOWN = "not recorded";

function percent(fraction) {
  return fraction === null ? UNKNOWN : formatPercent(fraction);
}

function percentages(values) {
  return values === null ? UNKNOWN : values.map(formatPercent).join(", ");
}

function estimatorText(estimator) {
  if (!estimator) return UNKNOWN;
  const facts = [estimator.family, estimator.unbiased ? "unbiased" : null,
    estimator.binary === false ? "continuous gates" : null].filter(Boolean);
  return facts.length ? `${estimator.name} (${facts.join(", ")})` : String(estimator.name);
}

function dataText(data) {
  if (!data || !data.name) return UNKNOWN;
  const sizes = data.sizes ? Object.entries(data.sizes)
    .map(([split, count]) => `${formatCount(count)} ${split}`).join(", ") : "";
  return sizes ? `${data.name} (${sizes})` : data.name;
}

function rows(card) {
  return [
    ["Name", card.name, "name"],
    ["Version", card.version, "version"],
    ["Served by", card.backend, "backend"],
    ["Inputs and classes", `${formatCount(card.input_size)} inputs, ${card.num_classes} classes`, "shape"],
    ["Estimator", estimatorText(card.estimator), "estimator"],
    ["Target density", percent(card.target_density), "target_density"],
    ["Measured test density", percentages(card.test_density), "test_density"],
    ["Test error", percent(card.test_error), "test_error"],
    ["Main-path weights", card.block_weights, "block_weights"],
    ["Dense multiply-adds", formatCount(card.dense_macs), "dense_macs"],
    ["Gater multiply-adds", formatCount(card.gater_macs), "gater_macs"],
    ["Expected saving", percent(card.expected_saved_fraction), "expected_saved_fraction"],
    ["Trained on", dataText(card.data), "data"],
    ["Labelled examples recorded", String(card.examples), "examples"],
  ];
}

function showCard(card) {
  const list = $("card");
  list.replaceChildren();
  for (const [term, text, field] of rows(card)) {
    list.append(element("dt", { textContent: term }),
      element("dd", { textContent: text, dataset: { field } }));
  }
  const command = element("dd", { dataset: { field: "training_command" } });
  command.append(card.training_command === null ? UNKNOWN
    : element("code", { textContent: card.training_command }));
  list.append(element("dt", { textContent: "Trained by" }), command);
  $("layers-rows").replaceChildren(...card.architecture.layers.map((layer, index) => {
    const tr = element("tr");
    tr.append(element("th", { scope: "row", textContent: String(index + 1) }));
    for (const text of [layer.gated ? "yes" : "no", formatCount(layer.blocks),
      formatCount(layer.block_size), layer.activation,
      layer.gated ? formatCount(layer.gater_hidden) : "–"]) {
      tr.append(element("td", { textContent: text }));
    }
    return tr;
  }));
  document.title = `sparsegate: ${card.name} version ${card.version}`;
  $("card-heading").textContent = `${card.name}, version ${card.version}`;
  $("try-link").href = `./${pageQuery(card.name, card.version)}`;
}

async function start() {
  let { name, version } = selectedFromUrl();
  try {
    if (!name || !version) { // no model named: the first one served
      const first = (await listModels()).models[0];
      if (!first) throw new Error("the server has no model loaded");
      name = first.name;
      version = first.versions[0].version;
    }
    showCard(await modelCard(name, version));
    $("card-status").textContent = "";
  } catch (error) {
    $("card-status").textContent = `Could not load the card: ${error.message}`;
  }
}

start();
