// The gate-map page: pick a served model, give it an input (drawn, typed, or one of its
// recorded test examples), and see what its gates ran. What is sent to the model is always
// exactly the numbers in the input field, whichever way they got there.

import {
  labelledExamples, listModels, pageQuery, predict, selectedFromUrl,
} from "./api.js";
import { DrawPad, imageSide, paintPixels } from "./draw-pad.js";
import { byId as $, element, formatCount, formatPercent } from "./dom.js";
import { LivePanel } from "./live-panel.js";
import { showResult } from "./result-view.js";

const DRAWN_DECIMALS = 4; // drawn pixels are shown (and sent) to 4 decimals; examples exactly
const THUMBNAIL_PIXELS = 56;

const state = { versions: [], current: null, side: 0, latestRequest: 0 };
const pad = new DrawPad($("draw-pad"), () => {
  showNumbers(pad.pixels());
  runPrediction();
});

function say(message, kind = "info") {
  const status = $("status");
  status.textContent = message;
  status.dataset.kind = kind;
}

function showNumbers(values, exact = false) {
  const text = exact ? values.map(String) : values.map((v) => String(+v.toFixed(DRAWN_DECIMALS)));
  $("numbers").value = text.join(" ");
  paintModelView(values);
}

function paintModelView(values) {
  const view = $("model-view");
  const context = view.getContext("2d");
  context.clearRect(0, 0, view.width, view.height);
  if (state.side) paintPixels(context, values, state.side, view.width / state.side);
}

// The numbers field read as the model's input; throws a message a person can act on.
function readNumbers() {
  const size = state.current.input_size;
  const parts = $("numbers").value.trim().split(/[\s,;]+/).filter(Boolean);
  if (parts.length !== size) {
    throw new Error(`The model takes ${size} numbers; the field holds ${parts.length}.`);
  }
  return parts.map((text, index) => {
    const value = Number(text);
    if (!Number.isFinite(value)) throw new Error(`Number ${index + 1}, "${text}", is not a number.`);
    return value;
  });
}

async function runPrediction(label = null) {
  if (!state.current) return;
  let values;
  try {
    values = readNumbers();
  } catch (error) {
    say(error.message, "error");
    return;
  }
  const request = ++state.latestRequest;
  const { name, version } = state.current;
  say("Running…");
  try {
    const answer = await predict(name, version, values);
    if (request !== state.latestRequest) return; // a newer input was sent meanwhile
    showResult($("result"), answer);
    $("result").hidden = false;
    const prediction = answer.predictions[0];
    const expected = label === null ? "" : ` The example's label is ${label}.`;
    say(`${name} version ${version} predicts class ${prediction.class}, running ` +
        `${formatPercent(1 - prediction.compute.saved_fraction)} of the dense multiply-adds.${expected}`);
  } catch (error) {
    if (request === state.latestRequest) say(`The server refused the input: ${error.message}`, "error");
  }
}

function thumbnail(values) {
  const canvas = element("canvas", { width: THUMBNAIL_PIXELS, height: THUMBNAIL_PIXELS,
    attributes: { "aria-hidden": "true" } });
  paintPixels(canvas.getContext("2d"), values, state.side, THUMBNAIL_PIXELS / state.side);
  return canvas;
}

async function showExamples(name, version) {
  const list = $("examples");
  list.replaceChildren();
  $("examples-note").textContent = "Loading…";
  let recorded;
  try {
    recorded = await labelledExamples(name, version);
  } catch (error) {
    $("examples-note").textContent = `Could not load the examples: ${error.message}`;
    return;
  }
  if (state.current.name !== name || state.current.version !== version) return;
  if (!recorded.examples.length) {
    $("examples-note").textContent = "This version's artifact records no examples.";
    return;
  }
  $("examples-note").textContent =
    `${recorded.examples.length} labelled examples from the ${recorded.split} split, never trained on.`;
  recorded.examples.forEach((example, index) => {
    const button = element("button", { type: "button", className: "example",
      dataset: { index: String(index), label: String(example.label) } });
    if (state.side) button.append(thumbnail(example.input));
    button.append(element("span", { textContent: `Example ${index + 1}: label ${example.label}` }));
    button.addEventListener("click", () => {
      if (state.side) pad.show(example.input);
      showNumbers(example.input, true);
      runPrediction(example.label);
    });
    const item = element("li");
    item.append(button);
    list.append(item);
  });
}

function describe(version) {
  const saving = version.expected_saved_fraction === null ? ""
    : ` Expected saving: ${formatPercent(version.expected_saved_fraction)}.`;
  return `${formatCount(version.input_size)} inputs, ${version.num_classes} classes, ` +
    `${version.gated_layers} gated layer(s) of ${version.blocks.join(", ")} blocks; ` +
    `served by ${version.backend} on ${version.device}.${saving}`;
}

function choose(index) {
  const version = state.versions[index];
  state.current = version;
  state.side = imageSide(version.input_size);
  history.replaceState(null, "", pageQuery(version.name, version.version));
  $("card-link").href = `model.html${pageQuery(version.name, version.version)}`;
  $("model-summary").textContent = describe(version);
  $("numbers-count").textContent = `${version.input_size} numbers`;
  $("draw-area").hidden = !state.side;
  $("paste-note").hidden = Boolean(state.side);
  if (state.side) {
    pad.resize(state.side);
    $("draw-size").textContent = `${state.side} × ${state.side} pixels`;
  }
  showNumbers(new Array(version.input_size).fill(0));
  $("result").hidden = true;
  $("result").replaceChildren();
  say(`Ready: ${version.name} version ${version.version}.`);
  showExamples(version.name, version.version);
}

async function start() {
  new LivePanel($("live-rows"), $("live-updated")).start();
  let listing;
  try {
    listing = await listModels();
  } catch (error) {
    say(`Could not list the models: ${error.message}`, "error");
    return;
  }
  state.versions = listing.models.flatMap((model) =>
    model.versions.map((version) => ({ ...version, name: model.name })));
  const select = $("model-select");
  select.replaceChildren(...state.versions.map((version, index) =>
    element("option", { value: String(index), textContent: `${version.name} (version ${version.version})` })));
  if (!state.versions.length) {
    say("The server has no model loaded.", "error");
    return;
  }
  const wanted = selectedFromUrl();
  const found = state.versions.findIndex((v) => v.name === wanted.name && v.version === wanted.version);
  select.value = String(Math.max(0, found));
  select.addEventListener("change", () => choose(Number(select.value)));
  choose(Number(select.value));
}

$("predict").addEventListener("click", () => runPrediction());
$("clear").addEventListener("click", () => {
  pad.clear();
  if (state.current) showNumbers(new Array(state.current.input_size).fill(0));
});
$("numbers").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    runPrediction();
  }
});
$("numbers").addEventListener("change", () => {
  try {
    const values = readNumbers();
    if (state.side) pad.show(values);
    paintModelView(values);
  } catch {
    // the count is wrong while someone types; Predict says so
  }
});
start();
