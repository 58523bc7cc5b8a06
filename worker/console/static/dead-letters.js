// Dead letters of one account, a page at a time (oldest first), filtered by
// reason; replay one, a reason or all; purge behind a confirmation dialog;
// reveal one masked number (the server records who did).
import {
  accountNames, api, busy, canOperate, clearError, dateTime, el, fillSelect, session, setText,
  showError, showNotice,
} from "./console.js";

const PAGE_SIZE = 50;
const accountSelect = document.getElementById("account");
const reasonSelect = document.getElementById("reason");
const body = document.querySelector("table.letters tbody");
const nextButton = document.getElementById("next-page");
const firstButton = document.getElementById("first-page");

// Where the page stands: the cursor of the shown page and of the next one.
let cursor = null;
let next = null;
let pageNumber = 1;
let byReason = {};
let bulk = null; // the operator's bulk buttons, when the role allows them

function query() {
  const params = new URLSearchParams({ account: accountSelect.value, limit: String(PAGE_SIZE) });
  if (reasonSelect.value) params.set("reason", reasonSelect.value);
  if (cursor) params.set("after", cursor);
  return `dead-letters?${params}`;
}

async function load() {
  const asked = reasonSelect.value;
  const answer = await api(query());
  next = answer.next;
  byReason = answer.by_reason;
  const total = allLetters();
  fillSelect(reasonSelect, [["", `All (${total})`],
    ...Object.entries(byReason).sort().map(([reason, n]) => [reason, `${reason} (${n})`])]);
  if (reasonSelect.value !== asked) {
    // The chosen reason has no letters left (replayed or purged): show them all.
    cursor = null;
    pageNumber = 1;
    return load();
  }
  body.replaceChildren(...(answer.letters.length ? answer.letters.map(row)
    : [el("tr", { class: "empty-row" }, el("td", { colspan: 7 }, "No dead letters here."))]));
  nextButton.disabled = !next;
  firstButton.disabled = !cursor;
  const first = (pageNumber - 1) * PAGE_SIZE;
  setText(document.getElementById("page-info"), answer.letters.length
    ? `Letters ${first + 1}–${first + answer.letters.length} of ${shownLetters()}` : "");
  if (bulk) {
    const chosen = reasonSelect.value;
    bulk.replayReason.disabled = !chosen;
    bulk.replayReason.textContent = chosen ? `Replay “${chosen}”` : "Replay reason";
    bulk.replayAll.disabled = total === 0;
    bulk.purge.disabled = total === 0;
  }
}

function allLetters() {
  return Object.values(byReason).reduce((sum, n) => sum + n, 0);
}

// How many letters the chosen filter covers.
function shownLetters() {
  return reasonSelect.value ? byReason[reasonSelect.value] ?? 0 : allLetters();
}

function row(letter) {
  const phone = el("td", { class: "phone" }, letter.phone);
  const reveal = el("button", { type: "button", class: "small secondary", dataset: { action: "reveal" } }, "Reveal");
  reveal.addEventListener("click", () => revealNumber(reveal, phone, letter.id));
  const buttons = el("td", { class: "row-actions" });
  if (canOperate()) {
    const replay = el("button", { type: "button", class: "small", dataset: { action: "replay" },
      disabled: !letter.replayable, title: letter.replayable ? null : "Not a job: nothing to replay" }, "Replay");
    replay.addEventListener("click", () => act(replay, "replay", { id: letter.id }));
    buttons.append(replay);
  }
  buttons.append(reveal);
  return el("tr", { dataset: { id: letter.id } },
    el("td", { class: "when" }, dateTime(letter.failed_at_ms)),
    el("td", {}, letter.campaign),
    phone,
    el("td", {}, letter.reason),
    el("td", { class: "message" }, letter.message),
    el("td", { class: "num" }, String(letter.attempts)),
    buttons);
}

async function revealNumber(button, cell, letterId) {
  try {
    const { phone } = await busy(button, () =>
      api("reveal", { account: accountSelect.value, letter_id: letterId }));
    cell.textContent = phone;
    cell.classList.add("revealed");
    clearError();
    button.disabled = true;
    button.textContent = "Revealed";
  } catch (error) {
    showError(error);
  }
}

function summary(counts) {
  const parts = [`${counts.replayed} replayed`];
  if (counts.already_queued) parts.push(`${counts.already_queued} already queued`);
  if (counts.unreplayable) parts.push(`${counts.unreplayable} not replayable`);
  if (counts.gone) parts.push(`${counts.gone} already gone`);
  return `${parts.join(", ")}.`;
}

// Replay or purge, then reload from the first page: the letters acted on are gone.
async function act(button, path, extra) {
  try {
    const answer = await busy(button, () => api(path, { account: accountSelect.value, ...extra }));
    clearError();
    showNotice(path === "purge" ? `${answer.purged} purged.` : summary(answer));
    cursor = null;
    pageNumber = 1;
    await load();
  } catch (error) {
    showError(error);
  }
}

// Built only for operators who may act: a read-only one gets none of these.
function buildBulk() {
  const replayReason = el("button", { type: "button", class: "secondary", dataset: { action: "replay-reason" } }, "Replay reason");
  const replayAll = el("button", { type: "button", class: "secondary", dataset: { action: "replay-all" } }, "Replay all");
  const purge = el("button", { type: "button", class: "danger", dataset: { action: "purge" } }, "Purge…");
  replayReason.addEventListener("click", () => act(replayReason, "replay", { reason: reasonSelect.value }));
  replayAll.addEventListener("click", () => act(replayAll, "replay", { all: true }));

  const question = el("p", {});
  const confirm = el("button", { type: "button", class: "danger", dataset: { action: "confirm" } }, "Purge");
  const cancel = el("button", { type: "button", class: "secondary" }, "Cancel");
  const dialog = el("dialog", { id: "confirm-purge", "aria-labelledby": "confirm-purge-title" },
    el("h2", { id: "confirm-purge-title" }, "Purge dead letters?"), question,
    el("div", { class: "buttons" }, cancel, confirm));
  document.body.append(dialog);
  purge.addEventListener("click", () => {
    const chosen = reasonSelect.value;
    question.textContent = `${shownLetters()} ` +
      `dead letters${chosen ? ` with reason “${chosen}”` : ""} of account ${accountSelect.value} ` +
      "will be deleted for good. They cannot be replayed afterwards.";
    dialog.showModal();
  });
  cancel.addEventListener("click", () => dialog.close());
  confirm.addEventListener("click", async () => {
    const chosen = reasonSelect.value;
    await act(confirm, "purge", { ...(chosen ? { reason: chosen } : { all: true }), confirm: "purge" });
    dialog.close();
  });
  document.getElementById("bulk-actions").append(replayReason, replayAll, purge);
  return { replayReason, replayAll, purge };
}

function reload() {
  cursor = null;
  pageNumber = 1;
  load().catch(showError);
}

async function start() {
  await session();
  fillSelect(accountSelect, (await accountNames()).map((name) => [name, name]));
  if (canOperate()) bulk = buildBulk();
  accountSelect.addEventListener("change", () => {
    reasonSelect.value = "";
    reload();
  });
  reasonSelect.addEventListener("change", reload);
  firstButton.addEventListener("click", reload);
  nextButton.addEventListener("click", () => {
    cursor = next;
    pageNumber += 1;
    load().catch(showError);
  });
  await load();
}

start().catch(showError);
