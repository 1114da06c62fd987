// Small helpers the page's modules share: making elements (never from HTML strings) and
// writing numbers as people read them.

// document.createElement(tag) with properties set; `dataset` entries become data- attributes,
// `attributes` entries attributes (role, aria-*).
export function element(tag, properties = {}) {
  const made = document.createElement(tag);
  for (const [key, value] of Object.entries(properties)) {
    if (key === "dataset") Object.assign(made.dataset, value);
    else if (key === "attributes") {
      for (const [name, text] of Object.entries(value)) made.setAttribute(name, text);
    } else made[key] = value;
  }
  return made;
}

export function byId(id) {
  return document.getElementById(id);
}

const counts = new Intl.NumberFormat("en");

export function formatCount(value) {
  return counts.format(value);
}

export function formatPercent(fraction) {
  return `${(fraction * 100).toFixed(1)} %`;
}

export function formatMs(value) {
  return value === null || value === undefined ? "–" : value.toFixed(2);
}
