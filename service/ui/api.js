// The public JSON API, as the page calls it. Addresses are relative to the page (/ui/), so
// the page works wherever a proxy mounts the server. Errors come back as {"error": message}
// (the API's one error shape); they are thrown as Error(message) for the page to show.

const API_ROOT = new URL("../", document.baseURI);

function address(path) {
  return new URL(path, API_ROOT);
}

async function answer(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON: a proxy's error page, say; the status says enough
  }
  if (!response.ok) {
    const reason = body && typeof body.error === "string" ? body.error : response.statusText;
    throw new Error(`${response.status}: ${reason}`);
  }
  return body;
}

async function getJson(path) {
  return answer(await fetch(address(path), { headers: { Accept: "application/json" } }));
}

// One path segment: model names and versions are checked by the server, and encoded here so
// no name can change which route is called.
function versionPath(name, version) {
  return `v1/models/${encodeURIComponent(name)}/versions/${encodeURIComponent(version)}`;
}

export function listModels() {
  return getJson("v1/models");
}

export function modelCard(name, version) {
  return getJson(`${versionPath(name, version)}/card`);
}

export function labelledExamples(name, version) {
  return getJson(`${versionPath(name, version)}/examples`);
}

export function trafficSummary() {
  return getJson("v1/metrics/summary");
}

// One example through predict, with the blocks each gated layer turned on.
export async function predict(name, version, values) {
  const response = await fetch(address(`${versionPath(name, version)}:predict?gates=true`), {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify({ instances: [values] }),
  });
  return answer(response);
}

// The page's own address for a model: ?model=NAME&version=V, read back by `selectedFromUrl`.
export function pageQuery(name, version) {
  return `?${new URLSearchParams({ model: name, version: version })}`;
}

export function selectedFromUrl() {
  const query = new URLSearchParams(window.location.search);
  return { name: query.get("model"), version: query.get("version") };
}
