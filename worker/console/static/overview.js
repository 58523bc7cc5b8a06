// The overview: per account the numbers of `status --json` plus the limiter's
// window and the workers, pause and resume, recent actions, a rate chart, and
// the drains. Polls every 2 s and updates the page in place (no reload), so a
// reason being typed or a focused button survives a refresh.
import {
  api, busy, canOperate, clearError, clock, duration, el, isoTime, session, setText,
  showError, showNotice, svg,
} from "./console.js";

const POLL_MS = 2000;
const sections = new Map(); // account name -> the nodes a refresh updates
// Each chart's last data and width: redrawn at once when the window resizes.
const drawn = new WeakMap();
const resized = new ResizeObserver((entries) => {
  for (const { target } of entries) {
    const last = drawn.get(target);
    if (last && Math.round(target.getBoundingClientRect().width) !== last.width) drawChart(target, last.rate);
  }
});
let pollFailed = false;

// Plain counts, each shown in a <dd data-field=...> whose text is the number.
const COUNTS = [
  ["queued-urgent", "Queued, urgent", (a) => a.queued.urgent],
  ["queued-bulk", "Queued, bulk", (a) => a.queued.bulk],
  ["in-flight", "In flight", (a) => a.in_flight],
  ["delayed", "Delayed (retries)", (a) => a.delayed],
  ["done", "Done", (a) => a.done],
  ["dead", "Dead", (a) => a.dead],
  ["eta", "ETA", (a) => duration(a.eta_s)],
  ["workers", "Workers", (a) => a.workers],
  ["rate-last-min", "Sent, last minute", (a) => a.rate_last_min],
];

const VERBS = { pause: "paused", resume: "resumed", replay: "replayed", purge: "purged", reveal: "revealed" };

function stat(label, ...value) {
  return el("div", { class: "stat" }, el("dt", {}, label), el("dd", {}, ...value));
}

function field(name) {
  return el("span", { dataset: { field: name } }, "");
}

function buildSection(name, index) {
  const id = `account-${index}`;
  const fields = {};
  const keep = (node) => (fields[node.dataset.field] = node);
  const state = keep(el("span", { class: "state", dataset: { field: "state" } }));
  const reason = el("span", { class: "reason" });
  const stats = el("dl", { class: "stats" });
  for (const [key, label] of COUNTS) stats.append(stat(label, keep(field(key))));
  // The windows are the account's own (the vendor's minute, an hour of
  // token budget), filled in on refresh.
  const permitWindow = el("span");
  const budgetWindow = el("span");
  stats.append(
    stat(el("span", {}, "Permits, ", permitWindow, " window"), keep(field("permits")),
      el("span", { class: "of" }, " of ", keep(field("limit")))),
    stat("Token expires in", keep(field("token-expiry"))),
    stat(el("span", {}, "Token generations, ", budgetWindow), keep(field("token-generations")),
      el("span", { class: "of" }, " of ", keep(field("token-budget")))),
  );
  const chart = svg("svg", { class: "rate-chart", "data-account": name, role: "img", "aria-label": "Loading" });
  resized.observe(chart);
  const actions = el("ol", { class: "actions" });
  const section = el("section", { class: "account panel", "data-account": name, "aria-labelledby": id },
    el("div", { class: "account-head" }, el("h2", { id }, `Account ${name}`), state, reason),
    stats,
  );
  const parts = { section, fields, state, reason, permitWindow, budgetWindow, chart, actions, resume: null };
  if (canOperate()) section.append(controls(name, index, parts));
  section.append(
    el("figure", { class: "chart-wrap" }, chart,
      el("figcaption", {}, "Requests granted per minute over the last hour; the dashed line is the limit per minute.")),
    el("h3", {}, "Recent actions"),
    actions,
  );
  return parts;
}

// Pause (with a reason, which every worker logs and status shows) and resume.
// Only built for operators who may act: a read-only one gets no buttons at all.
function controls(name, index, parts) {
  const input = el("input", { id: `pause-reason-${index}`, name: "reason", type: "text",
    maxlength: 200, required: true, autocomplete: "off" });
  const pause = el("button", { type: "submit", class: "danger", dataset: { action: "pause" } }, "Pause");
  const form = el("form", { class: "pause-form" },
    el("div", { class: "field" }, el("label", { for: input.id }, "Pause reason"), input), pause);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    act(pause, "pause", { account: name, reason: input.value.trim() }, () => {
      input.value = "";
      return `Paused ${name}: every worker stops sending within a permit.`;
    });
  });
  parts.resume = el("button", { type: "button", class: "secondary", dataset: { action: "resume" } }, "Resume");
  parts.resume.addEventListener("click", () =>
    act(parts.resume, "resume", { account: name }, (answer) =>
      answer.was_paused ? `Resumed ${name}.` : `${name} was not paused.`));
  return el("div", { class: "controls" }, form, parts.resume);
}

async function act(button, path, body, describe) {
  try {
    await busy(button, async () => {
      const answer = await api(path, body);
      clearError();
      showNotice(describe(answer));
    });
    await refresh();
  } catch (error) {
    showError(error);
  }
}

function render(name, account, parts) {
  const { fields } = parts;
  for (const [key, , value] of COUNTS) setText(fields[key], String(value(account)));
  setText(fields.state, account.state);
  parts.state.className = `state state-${account.state}`;
  const why = account.halted ?? account.paused ?? account.token.waiting;
  setText(parts.reason, why ? `(${why})` : "");
  setText(fields.permits, String(account.permits_window));
  setText(fields.limit, String(account.limit));
  setText(parts.permitWindow, duration(account.window_s));
  setText(parts.budgetWindow, duration(account.token.budget_window_s));
  setText(fields["token-expiry"], duration(account.token.expires_in_s));
  setText(fields["token-generations"], String(account.token.generations_in_window));
  setText(fields["token-budget"], `${account.token.budget}`);
  if (parts.resume) parts.resume.disabled = !(account.paused || account.halted);
  parts.actions.replaceChildren(...account.actions.map((action) => {
    const verb = VERBS[action.action] ?? action.action;
    // A resume's detail is the state it ended ("paused: reason"), not a reason of its own.
    const detail = !action.detail ? "" : action.action === "resume" ? ` (was ${action.detail})` : `: ${action.detail}`;
    const what = `${action.operator} ${verb}${detail} — `;
    return el("li", {}, what, el("time", { datetime: isoTime(action.at_ms) }, clock(action.at_ms)));
  }));
}

// One bar per minute (zero-filled by the API), the limit per minute as a
// dashed line, labels on both axes. Sized to the element's own width so the
// text stays legible on a narrow window.
function drawChart(node, rate) {
  const width = Math.max(240, Math.round(node.getBoundingClientRect().width) || 720);
  drawn.set(node, { rate, width });
  const height = 200;
  const pad = { left: 44, right: 12, top: 16, bottom: 26 };
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const perMinute = Math.round((rate.limit * 60) / rate.window_s);
  const counts = rate.minutes.map((m) => m.requests);
  const peak = Math.max(0, ...counts);
  const top = Math.max(perMinute, peak, 1) * 1.15;
  const y = (value) => pad.top + plotH - (value / top) * plotH;
  const slot = plotW / Math.max(counts.length, 1);
  const parts = [];
  rate.minutes.forEach((minute, i) => {
    const h = (minute.requests / top) * plotH;
    parts.push(svg("rect", { class: "bar", x: (pad.left + i * slot + slot * 0.15).toFixed(1),
      y: (pad.top + plotH - h).toFixed(1), width: (slot * 0.7).toFixed(1), height: h.toFixed(1) },
    svg("title", {}, `${clock(minute.minute_ms).slice(0, 5)}: ${minute.requests} requests`)));
  });
  const limitY = y(perMinute).toFixed(1);
  const base = (pad.top + plotH).toFixed(1);
  const label = (x, yy, anchor, text, cls) =>
    svg("text", { x, y: yy, "text-anchor": anchor, class: cls }, text);
  parts.push(
    svg("line", { class: "axis", x1: pad.left, x2: width - pad.right, y1: base, y2: base }),
    svg("line", { class: "axis", x1: pad.left, x2: pad.left, y1: pad.top, y2: base }),
    svg("line", { class: "limit", x1: pad.left, x2: width - pad.right, y1: limitY, y2: limitY }),
    label(pad.left - 6, Number(base) + 4, "end", "0"),
    label(pad.left - 6, Number(limitY) + 4, "end", String(perMinute)),
    label(width - pad.right, Number(limitY) - 5, "end", `limit ${perMinute}/min`, "limit-label"),
    label(pad.left, height - 6, "start", "60 min ago"),
    label(pad.left + plotW / 2, height - 6, "middle", "30 min ago"),
    label(width - pad.right, height - 6, "end", "now"),
  );
  node.setAttribute("viewBox", `0 0 ${width} ${height}`);
  node.setAttribute("width", String(width));
  node.setAttribute("height", String(height));
  node.replaceChildren(...parts);
  const now = counts.length ? counts[counts.length - 1] : 0;
  node.setAttribute("aria-label", `Requests per minute for account ${rate.account} over the last ` +
    `60 minutes: ${now} this minute, peak ${peak}, limit ${perMinute} per minute.`);
}

function renderDrains(answer, nowMs) {
  const body = document.querySelector("table.drains tbody");
  const note = (text) => body.replaceChildren(el("tr", { class: "empty-row" }, el("td", { colspan: 11 }, text)));
  if (answer instanceof Error) return note(`The drains could not be read: ${answer.message}`);
  const { drains } = answer;
  if (!drains.length) return note("No drains recorded.");
  const num = (n) => el("td", { class: "num" }, String(n));
  body.replaceChildren(...drains.map((d) => {
    const finished = d.done + d.dead + d.rejected;
    const share = d.rows ? Math.round((100 * finished) / d.rows) : 0;
    const progress = d.rows
      ? el("progress", { max: d.rows, value: finished, "aria-label": `${d.tag}: ${share}% finished` })
      : null;
    return el("tr", { dataset: { tag: d.tag } },
      el("td", {}, d.account), el("td", {}, d.tag), el("td", {}, d.file), el("td", {}, d.phase),
      el("td", {}, progress, d.rows ? ` ${share}%` : "-"),
      num(d.rows), num(d.queued), num(d.done), num(d.dead), num(d.rejected),
      el("td", { class: "when" }, `${duration(Math.max(0, (nowMs - d.updated_ms) / 1000))} ago`));
  }));
}

async function refresh() {
  // The drains table failing to load must not blank the accounts above it.
  const [overview, drains] = await Promise.all([api("overview"), api("drains").catch((e) => e)]);
  const names = Object.keys(overview.accounts);
  const rates = await Promise.all(
    names.map((name) => api(`rate?account=${encodeURIComponent(name)}`)));
  const holder = document.getElementById("accounts");
  for (const [name, parts] of sections) {
    if (!names.includes(name)) {
      parts.section.remove();
      sections.delete(name);
    }
  }
  names.forEach((name, i) => {
    if (!sections.has(name)) sections.set(name, buildSection(name, sections.size));
    const parts = sections.get(name);
    if (holder.children[i] !== parts.section) holder.insertBefore(parts.section, holder.children[i] ?? null);
    render(name, overview.accounts[name], parts);
    drawChart(parts.chart, rates[i]);
  });
  renderDrains(drains, overview.server_time_ms);
  setText(document.getElementById("updated"), `Last update ${clock(overview.server_time_ms)} (server clock).`);
}

// A chain of timeouts rather than an interval: a slow answer never piles up requests.
async function poll() {
  try {
    await refresh();
    if (pollFailed) clearError();
    pollFailed = false;
  } catch (error) {
    pollFailed = true;
    showError(error);
  }
  window.setTimeout(poll, POLL_MS);
}

session().then(poll, showError);
