// ppjax app: drop photos, protect them on this computer, see and download the results.
"use strict";

const token = new URLSearchParams(location.search).get("token") || "";
const withToken = (url) => url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token);
const api = (path, options = {}) =>
  fetch(path, { ...options, headers: { "X-Ppjax-Token": token, ...(options.headers || {}) } });

const el = (id) => document.getElementById(id);
const drop = el("drop"), input = el("files"), list = el("photos"), statusLine = el("status"), modelLine = el("model-status");
const protectButton = el("protect"), cancelButton = el("cancel"), zipLink = el("zip"), againButton = el("again");
const STATE_WORDS = {
  uploading: "uploading", ready: "ready", queued: "waiting", compiling: "preparing (once for this size)",
  protecting: "protecting", verifying: "checking the written file", done: "done", error: "could not be protected",
  skipped: "skipped", cancelled: "cancelled", refused: "not taken",
};
const STATE_PROGRESS = {
  uploading: 5, ready: 10, queued: 15, compiling: 25, protecting: 55, verifying: 85, done: 100, error: 100, skipped: 100, cancelled: 100, refused: 100,
};

let job = null, uploads = [], cards = new Map(), events = null, started = false, modelReady = false, modelFailed = false;
// The batch's job is asked of the server when the page opens and on "New batch"; photos chosen before
// it answers (a slow or busy server) wait for it rather than go to a job that does not exist yet.
let jobMade = Promise.resolve();

async function newJob() {
  job = null; uploads = []; cards = new Map(); started = false; list.textContent = "";
  zipLink.hidden = true; againButton.hidden = true; cancelButton.hidden = true;
  protectButton.hidden = false; say("");
  updateProtectButton();
  let response;
  try {
    response = await api("/api/jobs", { method: "POST" });
  } catch (e) {
    say("The ppjax server does not answer; is it still running?"); return;
  }
  if (!response.ok) { say((await response.json().catch(() => ({}))).error || "The server refused the page."); return; }
  job = (await response.json()).job;
  updateProtectButton();
}

function startNewJob() { jobMade = newJob(); return jobMade; }

function say(text) { statusLine.textContent = text; }

async function readyCount() { return (await Promise.all(uploads)).filter(Boolean).length; }

async function updateProtectButton() {
  const ready = await readyCount();
  protectButton.disabled = started || !modelReady || ready === 0;
}

// The model the page protects against may still be downloading or loading: say how far, or what to do.
async function watchModel() {
  let status;
  try {
    const response = await api("/api/status");
    status = await response.json();
  } catch (e) {
    modelLine.textContent = "The ppjax server does not answer; is it still running?";
    modelLine.dataset.state = "failed";
    modelLine.hidden = false;
    setTimeout(watchModel, 3000);
    return;
  }
  modelLine.dataset.state = status.state;
  if (status.state === "ready") {
    modelReady = true; modelLine.hidden = true; updateProtectButton(); return;
  }
  modelLine.hidden = false;
  if (status.state === "downloading" && status.total) {
    const mb = (n) => (n / 1e6).toFixed(1);
    modelLine.textContent = `Downloading the ${status.model} model (once): ${mb(status.done)} of ${mb(status.total)} MB.`;
  } else if (status.state === "failed") {
    modelFailed = true;
    modelLine.textContent = `The ${status.model} model is not available, so photos cannot be protected yet. ${status.message}`;
    return;  // no retry: the server says what to do, then it must be started again
  } else {
    modelLine.textContent = `Getting the ${status.model} model ready: ${status.message}. You can add photos meanwhile.`;
  }
  setTimeout(watchModel, 700);
}

function addCard(name) {
  const card = el("card").content.firstElementChild.cloneNode(true);
  card.querySelector(".name").textContent = name;
  list.append(card);
  return card;
}

function setCard(card, state, message) {
  card.dataset.state = state;
  card.querySelector(".state").textContent = STATE_WORDS[state] || state;
  card.querySelector(".bar > div").style.width = (STATE_PROGRESS[state] || 0) + "%";
  card.querySelector(".message").textContent = message || "";
}

function seen(summary) {
  if (!summary) return "(cannot be read)";
  const first = summary.top[0];
  const name = first.label.replace(/^\/[a-z]\//, "").replace(/\//g, " ").replace(/_/g, " ");
  let text = `${name} (${Math.round(first.prob * 100)}%)`;
  if (summary.has_sensitive_group) text += summary.sensitive ? ", a sensitive scene" : ", not a sensitive scene";
  return text;
}

// A preview that fails to load (the server busy at the end of a batch) is asked for again, a few times.
function showPreview(img, url, tries = 4) {
  img.onerror = () => {
    if (tries > 1) setTimeout(() => showPreview(img, url, tries - 1), 1500);
    else img.alt = "preview not available";
  };
  img.src = withToken(url) + "&try=" + tries;
}

function showResult(card, index, result) {
  const compare = card.querySelector(".compare");
  const [before, after] = compare.querySelectorAll("img");
  showPreview(before, `/api/jobs/${job}/photos/${index}/before.jpg`);
  showPreview(after, `/api/jobs/${job}/photos/${index}/after.jpg`);
  card.querySelector(".seen-before").textContent = seen(result.before);
  card.querySelector(".seen-after").textContent = seen(result.after);
  compare.hidden = false;
  const verdict = card.querySelector(".verdict");
  verdict.hidden = false;
  verdict.textContent = result.protected
    ? `Protected: the classifier was fooled on all ${result.variants} checks of the shared file (as written, re-saved as JPEG, resized).`
    : `Written, but not fooled on every check: ${result.variants_protected} of ${result.variants}.`;
  verdict.className = "verdict " + (result.protected ? "good" : "warn");
  const quality = card.querySelector(".quality");
  quality.hidden = false;
  const seenAs = result.visibility
    ? `How visible: ${result.visibility.words} (colour difference CIEDE2000 ${result.visibility.ciede2000.toFixed(1)} on average, ` +
      `${result.visibility.ciede2000_p95.toFixed(1)} at the 95th percentile; ${(100 * result.visibility.blocks_seen).toFixed(0)}% of 16×16 blocks changed enough to see at a glance; ` +
      `${(100 * result.visibility.blocks_mottled).toFixed(0)}% of smooth blocks mottled). `
    : "";
  const psnr = result.psnr === null || result.psnr === undefined ? "PSNR ∞ (unchanged)" : `PSNR ${result.psnr.toFixed(1)} dB`;
  quality.textContent = seenAs + psnr + (result.ssim ? `, SSIM ${result.ssim.toFixed(3)}` : "") + "." + (result.edit ? ` Edit: ${result.edit}.` : "");
  const saved = card.querySelector(".saved-as");
  saved.hidden = false;
  saved.textContent = result.renamed_from
    ? `Saved as ${result.output_name}: another photo of this batch is also called ${result.renamed_from}.`
    : `Saved as ${result.output_name}.`;
  const link = card.querySelector(".download");
  link.href = withToken(`/api/jobs/${job}/photos/${index}/download`);
  link.setAttribute("download", result.output_name);
  link.hidden = false;
}

async function upload(file) {
  const card = addCard(file.name);
  setCard(card, "uploading");
  const pending = jobMade
    .then(() => {
      if (job === null) throw new Error("no batch");
      return api(withToken(`/api/jobs/${job}/photos`) + "&name=" + encodeURIComponent(file.name), { method: "POST", body: file });
    })
    .then(async (response) => {
      const body = await response.json().catch(() => ({ error: "the server did not answer" }));
      if (!response.ok) { setCard(card, "refused", body.error); return null; }
      cards.set(body.index, card);
      card.querySelector(".name").textContent = body.name;
      setCard(card, "ready", `${body.width}×${body.height} pixels`);
      return body;
    })
    .catch(() => { setCard(card, "refused", `${file.name}: the upload failed`); return null; });
  uploads.push(pending);
  const done = await pending;
  const ready = await readyCount();
  updateProtectButton();
  if (done) say(`${ready} photo${ready === 1 ? "" : "s"} ready.` + (modelReady || modelFailed ? "" : " Waiting for the model."));
}

function take(files) {
  if (started) { say("This batch is running; start a new batch to add photos."); return; }
  for (const file of files) upload(file);
}

input.addEventListener("change", () => { take(input.files); input.value = ""; });
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); take(e.dataTransfer.files); });

protectButton.addEventListener("click", async () => {
  started = true; protectButton.disabled = true;
  await Promise.all(uploads);
  const strength = document.querySelector("input[name=strength]:checked").value;
  const look = document.querySelector("input[name=look]:checked").value;
  const keep = el("keep-metadata").checked;
  const privateNames = el("private-names").checked;
  const response = await api(`/api/jobs/${job}/start`, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ strength, look, keep_metadata: keep, private_names: privateNames }),
  });
  if (!response.ok) { say((await response.json()).error); started = false; updateProtectButton(); return; }
  cancelButton.hidden = false;
  say("Protecting… the first photo of each size also prepares the program for it (once).");
  listen();
});

cancelButton.addEventListener("click", async () => {
  cancelButton.disabled = true;
  await api(`/api/jobs/${job}/cancel`, { method: "POST" });
  cancelButton.disabled = false;
});

againButton.addEventListener("click", startNewJob);

const written = () => [...cards.values()].filter((card) => card.dataset.state === "done").length;

function listen() {
  if (events) events.close();
  events = new EventSource(withToken(`/api/jobs/${job}/events`));
  events.onmessage = (message) => {
    const event = JSON.parse(message.data);
    const progress = `${event.finished} of ${event.total} done`;
    if (event.type === "photo") {
      const card = cards.get(event.index);
      if (card) {
        setCard(card, event.state, event.state === "done" ? "" : event.message);
        if (event.state === "done" && event.result) showResult(card, event.index, event.result);
        if (event.state === "done") { zipLink.href = withToken(`/api/jobs/${job}/zip`); zipLink.hidden = false; }
      }
      if (statusLine.dataset.ended !== job) say(`Protecting: ${progress}.`);
    } else if (event.type === "job") {
      if (event.state === "running" || event.state === "queued") say(`Protecting: ${progress}.`);
      if (event.state === "done" || event.state === "cancelled") {
        statusLine.dataset.ended = job;
        say(event.state === "done"
          ? `Done: ${progress}. The protected photos are also in the output folder.`
          : `Cancelled: ${written()} of ${event.total} written; the others were not.`);
        cancelButton.hidden = true; protectButton.hidden = true; againButton.hidden = false;
      }
    }
  };
  events.addEventListener("end", () => events.close());
}

watchModel();
startNewJob();
