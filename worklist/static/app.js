// The worklist page: plain DOM, no build step. Patient data is only ever set as text (never HTML).
"use strict";

const state = { token: sessionStorage.getItem("triage-token"), queue: "trauma", revision: null, study: null, boxes: [] };
const $ = (selector) => document.querySelector(selector);
const SVG = "http://www.w3.org/2000/svg";

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  if (options.body && typeof options.body !== "string") {
    headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(options.body);
  }
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (response.status === 401) { showSignIn(); throw new Error("signed out"); }
  if (!response.ok) {
    let detail = response.statusText;
    try { const body = await response.json(); detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail); } catch (e) { /* not JSON */ }
    throw new Error(detail);
  }
  return response;
}

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text == null ? "" : String(text);
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

function badge(verdict, label, extra) {
  const span = document.createElement("span");
  span.className = `badge v-${verdict}` + (extra ? ` ${extra}` : "");
  span.textContent = label;
  return span;
}

function when(iso) { return iso ? new Date(iso).toLocaleString() : ""; }

function showSignIn() {
  state.token = null;
  sessionStorage.removeItem("triage-token");
  $("#main").hidden = true;
  $("#audit").hidden = true;
  $("#operations").hidden = true;
  $("#sign-out").hidden = true;
  $("#who").textContent = "";
  $("#sign-in").hidden = false;
  fetch("/api/oidc").then((r) => r.json()).then((b) => { $("#sign-in-provider").hidden = !b.enabled; }).catch(() => {});
}

// Signing in with the identity provider: this tab makes a random mark and keeps it; the API hands
// it back beside the ID token, so a token in a link someone else made (login CSRF) is not taken.
$("#sign-in-provider a").addEventListener("click", (event) => {
  event.preventDefault();
  const mark = new Uint8Array(24);
  crypto.getRandomValues(mark);
  const tab = Array.from(mark, (b) => b.toString(16).padStart(2, "0")).join("");
  sessionStorage.setItem("triage-oidc-tab", tab);
  location.assign(`/api/oidc/login?tab=${tab}`);
});

// Sent here by a PACS's "triage result" button (/IHEInvokeImageDisplay): open that study once signed
// in. Kept across a sign-in through the identity provider, which replaces the fragment.
(function takeTheStudyToOpen() {
  const found = new URLSearchParams(location.hash.slice(1));
  if (!found.has("study-uid")) return;
  sessionStorage.setItem("triage-open-study", found.get("study-uid"));
  history.replaceState(null, "", location.pathname);
})();

async function openRequestedStudy() {
  const uid = sessionStorage.getItem("triage-open-study");
  if (!uid) return;
  sessionStorage.removeItem("triage-open-study");
  const response = await api(`/api/studies/by-uid/${encodeURIComponent(uid)}`);
  if (response.ok) await openStudy((await response.json()).study_id);
  else $("#empty").textContent = "The study the PACS asked for is not in triage.";
}

async function openInViewer(studyId) {
  const response = await api(`/api/studies/${studyId}/viewer`, { method: "POST" });
  if (response.ok) window.open((await response.json()).url, "_blank", "noopener");
}

// Back from the identity provider: the ID token (or why not) is in the fragment, never sent anywhere.
(function takeTheFragment() {
  const found = new URLSearchParams(location.hash.slice(1));
  if (!found.has("token") && !found.has("sign-in-error")) return;
  history.replaceState(null, "", location.pathname);
  const started = sessionStorage.getItem("triage-oidc-tab");
  sessionStorage.removeItem("triage-oidc-tab");
  let error = found.get("sign-in-error");
  if (found.has("token") && started && found.get("tab") === started) {
    state.token = found.get("token");
    sessionStorage.setItem("triage-token", state.token);
    return;
  }
  if (found.has("token")) error = "this sign-in was not started on this page: sign in again";
  setTimeout(() => { $("#sign-in-error").textContent = error; }, 0);
})();

async function start() {
  try {
    const me = await (await api("/api/me")).json();
    $("#who").textContent = `${me.name} (${me.roles.join(", ")})`;
    $("#sign-in").hidden = true;
    $("#sign-out").hidden = false;
    $("#main").hidden = false;
    $("#audit").hidden = !me.roles.includes("admin");
    $("#operations").hidden = !me.roles.includes("admin");
    state.me = me.name;
    if (me.roles.includes("admin")) loadOperations().catch(() => {});
    if (!me.roles.includes("radiologist")) {
      $("#worklist").hidden = true;
      $("#empty").hidden = false;
      $("#empty").textContent = "The worklist needs the radiologist role.";
      return;
    }
    await selectQueue(state.queue);
    await openRequestedStudy();
  } catch (error) { showSignIn(); }
}

$("#sign-in").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  $("#sign-in-error").textContent = "";
  try {
    const body = await (await fetch("/api/session", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ username: form.get("username"), password: form.get("password") }),
    })).json();
    if (!body.token) throw new Error(body.detail || "sign-in failed");
    state.token = body.token;
    sessionStorage.setItem("triage-token", body.token);
    event.target.reset();
    start();
  } catch (error) { $("#sign-in-error").textContent = error.message; }
});

$("#sign-out").addEventListener("click", async () => {
  try { await api("/api/session", { method: "DELETE" }); } finally { showSignIn(); }
});

document.querySelectorAll("#queues button").forEach((button) =>
  button.addEventListener("click", () => selectQueue(button.dataset.queue)));
$("#filters").addEventListener("submit", (event) => { event.preventDefault(); loadQueue(); });

function selectQueue(queue) {
  state.queue = queue;
  document.querySelectorAll("#queues button").forEach((b) => b.classList.toggle("active", b.dataset.queue === queue));
  return loadQueue();
}

function queueQuery() {
  const form = new FormData($("#filters"));
  const params = new URLSearchParams({ queue: state.queue });
  if (form.get("from")) params.set("received_from", new Date(`${form.get("from")}T00:00:00`).toISOString());
  if (form.get("to")) params.set("received_to", new Date(`${form.get("to")}T23:59:59.999`).toISOString());
  if (form.get("state")) params.set("state", form.get("state"));
  if (form.get("search")) params.set("search", form.get("search"));
  return params;
}

// The Recall queue heads the page while it has patients in it; a row leaves it only when a
// radiologist records how the patient was contacted and what was done.
async function loadRecall() {
  const open = await (await api("/api/recall")).json();
  $("#recall").hidden = open.length === 0;
  $("#recall-count").textContent = String(open.length);
  const body = $("#recall-table tbody");
  body.replaceChildren();
  for (const d of open) {
    const row = document.createElement("tr");
    row.dataset.discrepancy = d.id;
    cell(row, when(d.found_at));
    cell(row, d.label);
    cell(row, d.patient_name);
    cell(row, d.patient_id);
    cell(row, d.accession_number);
    cell(row, d.source);
    cell(row, d.notified_at ? `notified ${when(d.notified_at)}` : (d.notify_error || "not yet"));
    const form = document.createElement("form");
    const note = document.createElement("input");
    note.name = "note";
    note.required = true;
    note.minLength = 3;
    note.placeholder = "how contacted, what was done";
    const button = document.createElement("button");
    button.type = "submit";
    button.textContent = "Record contact";
    form.append(note, button);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        await api(`/api/recall/${d.id}/close`, { method: "POST", body: { note: note.value } });
        $("#recall-status").textContent = `Recorded: ${d.label}, ${d.patient_id}`;
        await loadRecall();
      } catch (error) { $("#recall-status").textContent = error.message; }
    });
    cell(row, "").appendChild(form);
    body.appendChild(row);
  }
}

async function loadQueue() {
  loadRecall().catch((error) => { $("#recall-status").textContent = error.message; });
  const page = await (await api(`/api/worklist?${queueQuery()}`)).json();
  state.revision = page.revision;
  state.pacsViewer = page.pacs_viewer;
  $("#threshold").textContent = `Single reading: score ≤ ${page.single_read_max_score}`;
  $("#refreshed").textContent = `updated ${new Date().toLocaleTimeString()}`;
  $("#storage-degraded").hidden = !page.storage_degraded;
  $("#degraded").hidden = page.degraded.length === 0;
  $("#degraded").textContent = page.degraded.length ? `Degraded: ${page.degraded.join("; ")}` : "";
  $("#switched-off").hidden = page.switched_off.length === 0;
  $("#switched-off").textContent = page.switched_off.join(" ");
  const body = $("#worklist tbody");
  body.replaceChildren();
  for (const item of page.items) {
    const row = document.createElement("tr");
    row.dataset.studyId = item.study_id;
    row.dataset.verdict = item.verdict;
    if (item.delivery === "failed") row.classList.add("delivery-failed");
    const verdict = cell(row, "");
    verdict.appendChild(badge(item.verdict, item.verdict_label));
    if (item.high_risk) verdict.appendChild(badge("HIGH_RISK", "HIGH RISK", "high-risk"));
    cell(row, item.patient_name);
    cell(row, item.patient_id);
    cell(row, item.accession_number);
    cell(row, item.study_description || item.pipeline);
    cell(row, when(item.received_at));
    cell(row, item.score == null ? "" : `${item.score} / 10 (single ≤ ${item.single_read_max_score})`);
    cell(row, item.model_name ? `${item.model_name} ${item.model_version}` : "");
    cell(row, item.delivery === "failed" ? "FAILED" : item.delivery, item.delivery === "failed" ? "failed" : "");
    cell(row, item.feedback_count || "");
    let note = "";
    if (item.eligible_for_discharge) note = "Eligible for discharge per local protocol; over-read later";
    else if (item.verdict === "NORMAL_READING") note = "Rule-out not enabled for this model: read as usual (AI score advisory)";
    else if (item.not_enabled["single reading"]) note = "Single reading not enabled for this model: double read (score advisory)";
    else if (item.verdict === "NOT_ANALYSED" || item.verdict === "IGNORED") note = item.reason;
    else if (item.verdict === "PENDING") note = `AI pending (${item.state}): read as usual if it cannot wait`;
    if (item.conflict) note = `Conflicting images received. ${note}`;
    cell(row, note);
    const viewer = cell(row, "");
    if (page.pacs_viewer) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "open-viewer";
      button.textContent = "Open";
      button.addEventListener("click", (event) => { event.stopPropagation(); openInViewer(item.study_id); });
      viewer.appendChild(button);
    }
    row.addEventListener("click", () => openStudy(item.study_id));
    body.appendChild(row);
  }
  $("#empty").hidden = page.items.length > 0;
}

async function poll() {
  if (!state.token || $("#main").hidden) return;
  try {
    const { revision } = await (await api("/api/worklist/revision")).json();
    if (state.revision !== null && revision !== state.revision) {
      await loadQueue();
      if (state.study) await openStudy(state.study.item.study_id, true);
    }
  } catch (error) { /* shown on the next action */ }
}
setInterval(poll, 5000);

async function openStudy(studyId, keepBoxes) {
  const study = await (await api(`/api/studies/${studyId}`)).json();
  state.study = study;
  if (!keepBoxes) state.boxes = [];
  const item = study.item;
  $("#detail").hidden = false;
  $("#detail-title").textContent = `${item.patient_name} · ${item.patient_id} · ${item.accession_number} · ${item.study_description}`;
  const verdict = $("#detail-verdict");
  verdict.replaceChildren(badge(item.verdict, item.verdict_label));
  const words = [];
  // The model's 0-1 output is a score, not a calibrated probability (its card gives the calibration
  // error); a screen shows its 1-10 score instead.
  if (item.probability != null && item.score == null) words.push(`${item.verdict === "NORMAL_READING" ? "advisory " : ""}AI score ${item.probability.toFixed(2)} (not a probability)`);
  if (item.score != null) words.push(`score ${item.score} of 10 (single reading ≤ ${item.single_read_max_score})`);
  if (item.eligible_for_discharge) words.push("eligible for discharge per local protocol; over-read later");
  if (item.model_name) words.push(`model ${item.model_name} ${item.model_version}`);
  for (const [decision, why] of Object.entries(item.not_enabled)) {
    words.push(decision.startsWith("localisation") ? `Localisation is not validated for this model, boxes hidden: ${why}` : `${decision} not enabled: ${why}`);
  }
  for (const [decision, why] of Object.entries(item.overridden)) words.push(`OVERRIDE: ${decision} ${why}`);
  words.push(`state ${item.state}${item.reason ? `: ${item.reason}` : ""}`);
  words.push(`results to PACS: ${item.delivery}`);
  verdict.appendChild(document.createTextNode(` ${words.join(" · ")}`));
  $("#open-viewer").hidden = !state.pacsViewer;
  $("#open-viewer").onclick = () => openInViewer(item.study_id);
  $("#fracture-fields").hidden = item.pipeline !== "fracture";
  $("#screen-fields").hidden = item.pipeline !== "breast";
  $("#feedback").hidden = !["fracture", "breast"].includes(item.pipeline);
  await showImages(study);
  fillTable("#readings", study.feedback, (f) => [when(f.at), f.author, `${f.kind}: ${f.value ? "yes" : "no"}`, f.boxes.length || "", f.judges_model, f.comment]);
  const history = [];
  for (const v of study.versions) for (const c of v.history) history.push([v.number, when(c.at), c.state, c.reason]);
  fillTable("#history", history, (h) => h);
  const deliveries = [];
  for (const v of study.versions) for (const d of v.deliveries) deliveries.push({ v: v.number, d });
  fillTable("#deliveries", deliveries, ({ v, d }) => [v, d.kind.toUpperCase(), d.state, d.attempts, d.last_error],
    ({ d }) => (d.state === "FAILED" ? "delivery-failed" : ""));
  const messages = [];
  for (const v of study.versions) for (const m of v.hl7_messages) messages.push({ v: v.number, m });
  const status = { P: "preliminary", C: "correction" };
  fillTable("#hl7-messages", messages, ({ v, m }) => [v, `${m.control_id} (${status[m.result_status] || m.result_status})`, m.state, m.attempts, m.ack_code, m.last_error],
    ({ m }) => (m.state === "FAILED" ? "delivery-failed" : ""));
}

function fillTable(selector, rows, columns, rowClass) {
  const body = document.querySelector(`${selector} tbody`);
  body.replaceChildren();
  for (const data of rows) {
    const row = document.createElement("tr");
    if (rowClass) row.className = rowClass(data);
    for (const value of columns(data)) cell(row, value);
    body.appendChild(row);
  }
}

async function showImages(study) {
  const container = $("#images");
  const old = [...container.querySelectorAll("img")].map((img) => img.src);
  container.replaceChildren();
  old.forEach((url) => URL.revokeObjectURL(url));
  for (const instance of study.instances.filter((i) => i.shown)) {
    const figure = document.createElement("figure");
    figure.dataset.sopInstanceUid = instance.sop_instance_uid;
    const img = document.createElement("img");
    img.alt = `${instance.laterality} ${instance.view} ${instance.body_part_examined}`.trim();
    figure.appendChild(img);
    const caption = document.createElement("figcaption");
    caption.textContent = `${instance.laterality} ${instance.view} ${instance.body_part_examined} · version ${instance.version}`;
    const read = document.createElement("button");
    read.className = "read";
    read.textContent = "Read";
    read.title = "Open in the reading viewer (full bit depth, window/level, zoom)";
    read.addEventListener("click", () => openReader(study, instance.sop_instance_uid));
    caption.appendChild(read);
    figure.appendChild(caption);
    container.appendChild(figure);
    try {
      const response = await api(`/api/studies/${study.item.study_id}/images/${instance.sop_instance_uid}?size=1024`);
      const columns = Number(response.headers.get("X-Source-Columns"));
      const rows = Number(response.headers.get("X-Source-Rows"));
      img.src = URL.createObjectURL(await response.blob());
      await img.decode();
      const svg = document.createElementNS(SVG, "svg");
      svg.setAttribute("viewBox", `0 0 ${columns} ${rows}`);
      svg.setAttribute("preserveAspectRatio", "none");
      svg.style.height = `${img.clientHeight}px`;
      for (const mark of instance.marks) svg.appendChild(rect(mark.corners, mark.kind));
      const recorded = study.feedback.flatMap((f) => f.boxes);
      for (const box of [...recorded, ...state.boxes].filter((b) => b.sop_instance_uid === instance.sop_instance_uid)) svg.appendChild(rect(box.corners, "reader"));
      drawable(svg, instance.sop_instance_uid, columns, rows);
      figure.insertBefore(svg, caption);
    } catch (error) {
      caption.textContent += ` · image not shown: ${error.message}`;
    }
  }
}

function rect(corners, kind) {
  const [x0, y0, x1, y1] = corners;
  const r = document.createElementNS(SVG, "rect");
  r.setAttribute("x", x0); r.setAttribute("y", y0);
  r.setAttribute("width", Math.max(1, x1 - x0)); r.setAttribute("height", Math.max(1, y1 - y0));
  r.setAttribute("class", kind);
  return r;
}

function drawable(svg, sopInstanceUid, columns, rows) {
  let start = null;
  let live = null;
  const point = (event) => {
    const box = svg.getBoundingClientRect();
    return [
      Math.min(columns, Math.max(0, ((event.clientX - box.left) / box.width) * columns)),
      Math.min(rows, Math.max(0, ((event.clientY - box.top) / box.height) * rows)),
    ];
  };
  svg.addEventListener("mousedown", (event) => {
    if (!state.study || state.study.item.pipeline !== "fracture") return;
    event.preventDefault();
    start = point(event);
    live = rect([...start, ...start], "reader");
    svg.appendChild(live);
  });
  svg.addEventListener("mousemove", (event) => {
    if (!start) return;
    const [x, y] = point(event);
    live.replaceWith((live = rect([Math.min(start[0], x), Math.min(start[1], y), Math.max(start[0], x), Math.max(start[1], y)], "reader")));
  });
  svg.addEventListener("mouseup", (event) => {
    if (!start) return;
    const [x, y] = point(event);
    const corners = [Math.min(start[0], x), Math.min(start[1], y), Math.max(start[0], x), Math.max(start[1], y)];
    start = null;
    if (corners[2] - corners[0] < 2 || corners[3] - corners[1] < 2) { live.remove(); return; }
    state.boxes.push({ sop_instance_uid: sopInstanceUid, corners: corners.map((c) => Math.round(c * 10) / 10) });
    $("#feedback-status").textContent = `${state.boxes.length} box(es) marked`;
  });
}

$("#audit-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const patientId = new FormData(event.target).get("patient_id");
  const entries = await (await api(`/api/audit?${new URLSearchParams({ patient_id: patientId })}`)).json();
  fillTable("#audit-log", entries, (e) => [when(e.at), e.actor, e.action, e.source, e.accession_number, e.detail]);
});

$("#close-detail").addEventListener("click", () => { $("#detail").hidden = true; state.study = null; });

$("#feedback").addEventListener("submit", async (event) => {
  event.preventDefault();
  const study = state.study;
  if (!study) return;
  const form = new FormData(event.target);
  const readings = [];
  if (study.item.pipeline === "fracture" && form.get("fracture")) {
    readings.push({ kind: "FRACTURE", value: form.get("fracture") === "true", boxes: state.boxes });
  }
  if (study.item.pipeline === "breast") {
    if (form.get("recall")) readings.push({ kind: "RECALL", value: form.get("recall") === "true", boxes: [] });
    if (form.get("cancer")) readings.push({ kind: "CANCER", value: form.get("cancer") === "true", boxes: [] });
  }
  if (!readings.length) { $("#feedback-status").textContent = "Choose a reading first."; return; }
  try {
    for (const reading of readings) {
      reading.comment = form.get("comment") || "";
      reading.version = study.item.version;
      await api(`/api/studies/${study.item.study_id}/feedback`, { method: "POST", body: reading });
    }
    event.target.reset();
    state.boxes = [];
    $("#feedback-status").textContent = "Reading recorded.";
    await openStudy(study.item.study_id);
    await loadQueue();
  } catch (error) { $("#feedback-status").textContent = `Not recorded: ${error.message}`; }
});

start();

// The admins' view of what the models may decide: each decision's switch and its live figure (a bar:
// the 95 % interval, the value, the card's claim as a red line), and the score drift per scanner (the
// share of studies in each of the model's reference deciles; a tenth each is no drift).
function plot(children) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "plot");
  svg.setAttribute("viewBox", "0 0 100 10");
  svg.setAttribute("preserveAspectRatio", "none");
  for (const [tag, attributes] of children) {
    const element = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, value);
    svg.appendChild(element);
  }
  return svg;
}

async function loadOperations() {
  const decisions = await (await api("/api/decisions")).json();
  const body = $("#decisions-table tbody");
  body.replaceChildren();
  for (const d of decisions) {
    const row = document.createElement("tr");
    row.dataset.decision = d.decision;
    cell(row, d.pipeline);
    cell(row, d.decision);
    cell(row, d.switched_off ? `OFF: ${d.reason}` : "on", d.switched_off ? "failed" : "");
    const figure = cell(row, d.positives ? `${d.hits}/${d.positives} (${d.ci95_low.toFixed(3)}-${d.ci95_high.toFixed(3)}), claim ${d.claim == null ? "none" : d.claim.toFixed(3)}` : "no outcomes yet");
    if (d.positives) {
      const shapes = [
        ["rect", { class: "interval", x: d.ci95_low * 100, y: 2, width: Math.max(0.5, (d.ci95_high - d.ci95_low) * 100), height: 6 }],
        ["rect", { class: "value", x: d.live_value * 100 - 0.5, y: 1, width: 1, height: 8 }],
      ];
      if (d.claim != null) shapes.push(["line", { class: "claim", x1: d.claim * 100, x2: d.claim * 100, y1: 0, y2: 10 }]);
      figure.appendChild(plot(shapes));
    }
    cell(row, d.discordances);
    cell(row, d.model);
    body.appendChild(row);
  }
  const drift = await (await api("/api/drift")).json();
  const driftBody = $("#drift-table tbody");
  driftBody.replaceChildren();
  for (const d of drift) {
    const row = document.createElement("tr");
    cell(row, d.pipeline);
    cell(row, d.scanner || "(not given)");
    cell(row, d.studies);
    const most = Math.max(...d.counts, 1);
    const bars = d.counts.map((count, k) => ["rect", { class: "bar", x: k * 10 + 1, width: 8, y: 10 - (count / most) * 10, height: (count / most) * 10 }]);
    const expected = 10 - ((d.studies / 10) / most) * 10;
    bars.push(["line", { class: "expected", x1: 0, x2: 100, y1: expected, y2: expected }]);
    cell(row, "").appendChild(plot(bars));
    cell(row, d.psi == null ? "too few studies" : d.psi.toFixed(3), d.psi != null && d.psi > 0.25 ? "failed" : "");
    driftBody.appendChild(row);
  }
  await Promise.all([loadPerformance(), loadChanges()]);
}

// The live performance: the rule-out's specificity, NOT ANALYSED per pipeline, and the screening
// programme month by month (each share a bar: its 95 % interval and its value).
function shareText(s) {
  return s.value == null ? "none counted" : `${(s.value * 100).toFixed(1)} % (${(s.ci95_low * 100).toFixed(1)}-${(s.ci95_high * 100).toFixed(1)} %, n=${s.n})`;
}

function shareCell(row, s) {
  const td = cell(row, shareText(s));
  if (s.value != null) {
    td.appendChild(plot([
      ["rect", { class: "interval", x: s.ci95_low * 100, y: 2, width: Math.max(0.5, (s.ci95_high - s.ci95_low) * 100), height: 6 }],
      ["rect", { class: "value", x: s.value * 100 - 0.5, y: 1, width: 1, height: 8 }],
    ]));
  }
}

async function loadPerformance() {
  const found = await (await api("/api/decisions/performance")).json();
  const missing = Object.entries(found.not_analysed).map(([pipeline, n]) => {
    const reasons = Object.entries(n.by_reason).map(([why, count]) => `${why} (${count})`).join(", ");
    return `${pipeline} ${shareText(n.rate)}${reasons ? `: ${reasons}` : ""}`;
  });
  const latency = Object.entries(found.completion_to_report).map(([pipeline, t]) =>
    t.n ? `${pipeline} median ${t.p50_seconds} s, p95 ${t.p95_seconds} s (n=${t.n})` : `${pipeline} none yet`);
  $("#performance-summary").textContent = `Rule-out specificity among studies read as fracture-free: ${shareText(found.rule_out_specificity)}. NOT ANALYSED: ${missing.join("; ")}. Completion to SR acknowledged: ${latency.join("; ")}.`;
  const body = $("#screening-table tbody");
  body.replaceChildren();
  for (const month of found.screening_by_month) {
    const row = document.createElement("tr");
    row.dataset.month = month.month;
    cell(row, month.month);
    cell(row, month.screens);
    shareCell(row, month.share_at_or_below_threshold);
    const per = month.cancers_per_1000;
    cell(row, `${per.single == null ? "-" : per.single} / ${per.double == null ? "-" : per.double}`);
    shareCell(row, month.cancers_in_single_read_arm);
    body.appendChild(row);
  }
}

// Decision changes: one admin proposes (the what-if on the site's own recent studies comes back and
// stays with the proposal), another approves; the server refuses the proposer's own approval too.
function whatIfText(whatIf) {
  return Object.entries(whatIf).map(([key, value]) =>
    `${key.replaceAll("_", " ")}: ${value !== null && typeof value === "object" ? shareText(value) : value}`).join("; ");
}

async function loadChanges() {
  const changes = await (await api("/api/decisions/changes")).json();
  const body = $("#changes-table tbody");
  body.replaceChildren();
  for (const c of changes) {
    const row = document.createElement("tr");
    row.dataset.change = c.id;
    cell(row, c.id);
    const model = c.model_name ? ` for ${c.model_name} ${c.model_version}` : "";
    const threshold = c.single_read_max_score == null ? "" : ` at scores up to ${c.single_read_max_score}`;
    cell(row, `${c.pipeline} ${c.decision}${model}${threshold}: ${c.reason}`);
    cell(row, when(c.effective_at));
    cell(row, whatIfText(c.what_if));
    cell(row, `${c.proposed_by}, ${when(c.proposed_at)}`);
    const approval = cell(row, c.approved_by ? `approved by ${c.approved_by}, ${when(c.approved_at)}` : "awaiting a second admin");
    if (!c.approved_by && c.proposed_by !== state.me) {
      const button = document.createElement("button");
      button.textContent = "Approve";
      button.addEventListener("click", async () => {
        try {
          await api(`/api/decisions/changes/${c.id}/approve`, { method: "POST" });
          $("#change-status").textContent = `Change ${c.id} approved.`;
          await loadChanges();
        } catch (error) { $("#change-status").textContent = `Not approved: ${error.message}`; }
      });
      approval.appendChild(button);
    }
    body.appendChild(row);
  }
}

$("#change-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const [pipeline, decision] = String(form.get("kind")).split("/");
  const [model_name, model_version] = String(form.get("model") || "").split(":");
  const body = {
    pipeline, decision, reason: form.get("reason"),
    model_name: model_name || "", model_version: model_version || "",
    effective_at: form.get("effective_at") ? new Date(form.get("effective_at")).toISOString() : new Date().toISOString(),
  };
  if (form.get("threshold") !== "") body.single_read_max_score = Number(form.get("threshold"));
  try {
    const change = await (await api("/api/decisions/changes", { method: "POST", body })).json();
    $("#change-status").textContent = `Change ${change.id} proposed: nothing changes until a second admin approves it.`;
    event.target.reset();
    await loadChanges();
  } catch (error) { $("#change-status").textContent = `Not proposed: ${error.message}`; }
});
