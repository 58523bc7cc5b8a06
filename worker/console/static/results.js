// Look up a job's records by job id, or by campaign and number. The lookup is
// a POST with a JSON body: a phone number never appears in a URL, so it stays
// out of access logs, history and Referer headers.
import {
  accountNames, api, busy, clearError, dateTime, el, fillSelect, session, setText, showError,
} from "./console.js";

const form = document.getElementById("lookup");
const accountSelect = document.getElementById("account");
const body = document.querySelector("table.results tbody");
const input = (id) => document.getElementById(id).value.trim();

function emptyRow(text) {
  return el("tr", { class: "empty-row" }, el("td", { colspan: 10 }, text));
}

function row(account, record) {
  const phone = el("td", { class: "phone" }, record.phone);
  const reveal = el("button", { type: "button", class: "small secondary", dataset: { action: "reveal" } }, "Reveal");
  reveal.addEventListener("click", async () => {
    try {
      const answer = await busy(reveal, () => api("reveal", { account, job_id: record.job_id }));
      phone.textContent = answer.phone;
      phone.classList.add("revealed");
      reveal.disabled = true;
      reveal.textContent = "Revealed";
    } catch (error) {
      showError(error);
    }
  });
  return el("tr", { dataset: { job: record.job_id } },
    el("td", {}, record.job_id), el("td", {}, record.state), el("td", {}, record.outcome ?? "-"),
    el("td", {}, record.reason || "-"), el("td", { class: "message" }, record.message || "-"),
    el("td", { class: "num" }, String(record.attempts ?? "-")), el("td", {}, record.campaign),
    phone, el("td", { class: "when" }, dateTime(record.finished_at_ms)), el("td", {}, reveal));
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const account = accountSelect.value;
  const jobId = input("job-id");
  const campaign = input("campaign");
  const phone = input("phone");
  if (!jobId && !(campaign && phone)) {
    showError("Give a job id, or both a campaign and a number.");
    return;
  }
  const query = jobId ? { account, job_id: jobId } : { account, campaign, phone };
  try {
    const answer = await busy(form.querySelector("button[type=submit]"), () => api("lookup", query));
    clearError();
    body.replaceChildren(...(answer.results.length
      ? answer.results.map((record) => row(account, record)) : [emptyRow("No record found.")]));
    setText(document.getElementById("searched"), jobId ? ""
      : `Searched the newest ${answer.searched} records${answer.found ? "" : "; none matched"}.`);
  } catch (error) {
    showError(error);
  }
});

async function start() {
  await session();
  fillSelect(accountSelect, (await accountNames()).map((name) => [name, name]));
  body.replaceChildren(emptyRow("Look up a job to see its records."));
}

start().catch(showError);
