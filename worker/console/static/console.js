// Shared helpers of the console's pages: the session, a fetch wrapper that
// carries the CSRF token, error display, DOM building and formatting.
// Loaded as an ES module: no globals, no inline script (the CSP forbids it).

let current = null; // the session, once fetched: {operator, role, csrf}

const LOGIN = "/console/login";

// The signed-in operator; sends the browser to the login page without one.
// Also fills the nav (name, role) and the sign-out form's CSRF field.
export async function session() {
  if (current) return current;
  const response = await fetch("/console/api/session", { headers: { Accept: "application/json" } });
  if (response.status === 401) {
    window.location.assign(LOGIN);
    throw new Error("signed out");
  }
  if (!response.ok) throw new Error(await errorText(response));
  current = await response.json();
  setText(document.getElementById("operator"), current.operator);
  setText(document.getElementById("role"), current.role === "operate" ? "operator" : "read-only");
  const csrf = document.getElementById("csrf");
  if (csrf) csrf.value = current.csrf;
  return current;
}

// Whether the signed-in operator may act (pause, resume, replay, purge).
export function canOperate() {
  return current !== null && current.role === "operate";
}

// GET (no body) or POST (a JSON body) to the console's API; the parsed JSON,
// or an Error carrying the server's {"error": ...} text.
export async function api(path, body) {
  const init = { headers: { Accept: "application/json" } };
  if (body !== undefined) {
    const { csrf } = await session();
    init.method = "POST";
    init.headers["Content-Type"] = "application/json";
    init.headers["X-CSRF-Token"] = csrf;
    init.body = JSON.stringify(body);
  }
  const response = await fetch(`/console/api/${path}`, init);
  if (response.status === 401) {
    // The session ran out: the login page, rather than a page of errors.
    window.location.assign(LOGIN);
    throw new Error("signed out");
  }
  if (!response.ok) throw new Error(await errorText(response));
  return response.json();
}

async function errorText(response) {
  try {
    const data = await response.json();
    if (data && typeof data.error === "string") return data.error;
  } catch {
    // not JSON: fall through to the status line
  }
  return `${response.status} ${response.statusText}`.trim();
}

// Errors go to the page's one role="alert" element, so a screen reader says them.
export function showError(error) {
  const box = document.getElementById("error");
  if (!box) return;
  box.textContent = error instanceof Error ? error.message : String(error);
  box.hidden = false;
}

export function clearError() {
  const box = document.getElementById("error");
  if (box && !box.hidden) {
    box.textContent = "";
    box.hidden = true;
  }
}

// A short note that is not an error (what an action did).
export function showNotice(text) {
  const box = document.getElementById("notice");
  if (!box) return;
  box.textContent = text;
  box.hidden = !text;
}

// el("td", {class: "num", dataset: {field: "done"}}, "12"): an element with
// attributes and children (strings become text nodes, never HTML).
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  setAttrs(node, attrs);
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

const SVG_NS = "http://www.w3.org/2000/svg";

export function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  setAttrs(node, attrs);
  node.append(...children);
  return node;
}

function setAttrs(node, attrs) {
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "dataset") Object.assign(node.dataset, value);
    else if (name === "on") for (const [type, fn] of Object.entries(value)) node.addEventListener(type, fn);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
}

// Replace text only when it changed, so polling does not disturb a reader.
export function setText(node, text) {
  if (node && node.textContent !== text) node.textContent = text;
}

// Seconds as "45s", "1m05s", "2h03m", "3d04h"; "-" for null. A negative
// value (a token already expired) keeps its sign: "-1m05s".
export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "-";
  const sign = seconds < 0 ? "-" : "";
  let s = Math.abs(Math.round(seconds));
  const pad = (n) => String(n).padStart(2, "0");
  if (s < 60) return `${sign}${s}s`;
  if (s < 3600) return `${sign}${Math.floor(s / 60)}m${pad(s % 60)}s`;
  if (s < 86400) return `${sign}${Math.floor(s / 3600)}h${pad(Math.floor((s % 3600) / 60))}m`;
  s = Math.floor(s / 3600);
  return `${sign}${Math.floor(s / 24)}d${pad(s % 24)}h`;
}

// Epoch ms as the operator's local time, 24-hour: "12:03:04".
export function clock(ms) {
  return new Date(ms).toLocaleTimeString("en-GB", { hour12: false });
}

// Epoch ms as local "2026-11-26 12:03:04".
export function dateTime(ms) {
  if (ms === null || ms === undefined) return "-";
  const d = new Date(ms);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${clock(ms)}`;
}

export function isoTime(ms) {
  return new Date(ms).toISOString();
}

// Options of a <select> from [value, label] pairs, keeping the choice if it is still offered.
export function fillSelect(select, options, keep) {
  const wanted = keep ?? select.value;
  select.replaceChildren(...options.map(([value, label]) => el("option", { value }, label)));
  if (options.some(([value]) => value === wanted)) select.value = wanted;
}

// Run fn with the button disabled, so a double click cannot send twice.
export async function busy(button, fn) {
  button.disabled = true;
  try {
    return await fn();
  } finally {
    button.disabled = false;
  }
}

// The account names the overview knows, for the pages' account selects.
export async function accountNames() {
  const overview = await api("overview");
  return Object.keys(overview.accounts);
}
