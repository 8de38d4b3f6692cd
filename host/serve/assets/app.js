// The Integrations page, IT Glue tab. Plain ES2020 module, no build step.
// Every string that comes from the server is placed with textContent or
// createElement, never parsed as markup.
"use strict";

const API = "/api/v1";
const ITGLUE = `${API}/integrations/itglue`;
const KINDS = ["organization", "configuration"];
const REGIONS = { us: "United States", eu: "Europe", au: "Australia" };
const REGION_HOSTS = { us: "api.itglue.com", eu: "api.eu.itglue.com", au: "api.au.itglue.com" };
const KIND_PLURAL = { organization: "Organizations", configuration: "Configurations" };
const POLL_MS = 700;
const SEARCH_DEBOUNCE_MS = 250;
const MAX_POLL_FAILURES = 20;

const $ = (id) => document.getElementById(id);

const el = {
  loading: $("loading"),
  accountBar: $("account-bar"),
  accountName: $("account-name"),
  accountRole: $("account-role"),
  signout: $("signout-button"),
  tabs: $("tabs"),
  signin: $("signin"),
  token: $("token"),
  signinButton: $("signin-button"),
  signinError: $("signin-error"),
  panel: $("itglue-panel"),
  notAvailableBox: $("not-available-box"),
  notAvailable: $("not-available"),
  integration: $("integration"),
  viewerNote: $("viewer-note"),
  connectCard: $("connect-card"),
  connectForm: $("connect-form"),
  reconnectNote: $("reconnect-note"),
  region: $("region"),
  regionHost: $("region-host"),
  apiKey: $("api-key"),
  testButton: $("test-button"),
  badge: $("verified-badge"),
  connectButton: $("connect-button"),
  testResult: $("test-result"),
  keyError: $("key-error"),
  connection: $("connection"),
  connectionRegion: $("connection-region"),
  connectionVerified: $("connection-verified"),
  connectionSchedule: $("connection-schedule"),
  connectionError: $("connection-error"),
  disconnect: $("disconnect-button"),
  activity: $("activity"),
  message: $("message"),
};

const state = {
  session: null,
  status: null,
  verifiedFor: null,
  runs: { organization: null, configuration: null },
  finished: new Set(),
  fieldSeq: 0,
};

/** An error answer from the API, or a failure to reach it. */
class ApiError extends Error {
  constructor(status, code, message, hints) {
    super(message);
    this.status = status;
    this.code = code;
    this.hints = hints;
  }
}

function isAdmin() {
  return state.session !== null && state.session.role === "admin";
}

function text(value) {
  return value === null || value === undefined ? "" : String(value);
}

function count(value) {
  return typeof value === "number" && Number.isFinite(value) ? String(value) : "0";
}

/** An ISO timestamp as the browser's local date and time, or the raw text. */
function fmtDate(value) {
  if (!value) return "";
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? String(value) : date.toLocaleString();
}

function node(tag, className, content) {
  const made = document.createElement(tag);
  if (className) made.className = className;
  if (content !== undefined && content !== null) made.textContent = String(content);
  return made;
}

function show(element, visible) {
  element.hidden = !visible;
}

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    if (signal) {
      signal.addEventListener("abort", () => {
        clearTimeout(timer);
        reject(new DOMException("Aborted", "AbortError"));
      }, { once: true });
    }
  });
}

function say(message) {
  el.message.textContent = message;
}

// ---- requests ------------------------------------------------------------

function requestInit(method, body, signal, accept) {
  const headers = { "X-Requested-With": "scopable", Accept: accept || "application/json" };
  const init = { method, credentials: "same-origin", headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  if (signal) init.signal = signal;
  return init;
}

async function errorFrom(response) {
  let data = null;
  try {
    data = await response.json();
  } catch (_) {
    data = null;
  }
  const err = data && typeof data === "object" && data.error && typeof data.error === "object" ? data.error : {};
  const message = typeof err.message === "string" && err.message ? err.message : `The request failed (HTTP ${response.status}).`;
  const hints = Array.isArray(err.hints) ? err.hints.filter((h) => typeof h === "string" && h) : [];
  return new ApiError(response.status, typeof err.code === "string" ? err.code : "", message, hints);
}

/** One JSON request; resolves to the parsed body (null for 204), rejects with ApiError. */
async function api(method, path, body, options = {}) {
  let response;
  try {
    response = await fetch(path, requestInit(method, body, options.signal));
  } catch (e) {
    if (e && e.name === "AbortError") throw e;
    throw new ApiError(0, "network", "Could not reach the server. Check your connection and try again.", []);
  }
  if (!response.ok) {
    const error = await errorFrom(response);
    if (response.status === 401 && !options.quiet401) signedOut("Your session has ended. Sign in again.");
    throw error;
  }
  if (response.status === 204) return null;
  try {
    return await response.json();
  } catch (_) {
    return null;
  }
}

function fillError(container, error) {
  container.replaceChildren();
  container.append(node("p", "error-message", error.message));
  if (error.hints && error.hints.length) {
    const list = node("ul", "error-hints");
    for (const hint of error.hints) list.append(node("li", null, hint));
    container.append(list);
  }
}

// ---- session -------------------------------------------------------------

function stopAllRuns() {
  for (const kind of KINDS) {
    const run = state.runs[kind];
    if (run) run.controller.abort();
    state.runs[kind] = null;
  }
}

function signedOut(message) {
  stopAllRuns();
  state.session = null;
  state.status = null;
  state.verifiedFor = null;
  el.apiKey.value = "";
  clearAccountData();
  show(el.loading, false);
  show(el.accountBar, false);
  show(el.tabs, false);
  show(el.panel, false);
  show(el.signin, true);
  el.signinError.textContent = message || "";
  el.signinButton.disabled = false;
  el.token.focus();
}

/** Forgets what the previous session showed, so another account never sees it. */
function clearAccountData() {
  el.accountName.textContent = "";
  el.accountRole.textContent = "";
  el.notAvailable.textContent = "";
  el.testResult.textContent = "";
  show(el.badge, false);
  clearKeyError();
  for (const kind of KINDS) {
    unplacedCard(kind).querySelector(".unplaced-list").replaceChildren();
    show(unplacedCard(kind), false);
    show(syncCard(kind), false);
  }
  el.activity.querySelector(".activity-list").replaceChildren();
  show(el.activity, false);
  show(el.connection, false);
}

async function loadSession() {
  let session;
  try {
    session = await api("GET", `${API}/session`, undefined, { quiet401: true });
  } catch (error) {
    if (error.status === 401) {
      signedOut("");
      return;
    }
    show(el.loading, true);
    el.loading.textContent = error.message;
    return;
  }
  if (!session || typeof session !== "object") {
    signedOut("");
    return;
  }
  state.session = session;
  el.accountName.textContent = text(session.account_name || session.account);
  el.accountRole.textContent = session.role === "viewer" ? "Viewer" : "Admin";
  show(el.loading, false);
  show(el.signin, false);
  show(el.accountBar, true);
  show(el.tabs, true);
  show(el.panel, true);
  applyRole();
  await loadAll();
}

async function signIn(event) {
  event.preventDefault();
  const token = el.token.value.trim();
  el.signinError.textContent = "";
  if (!token) {
    el.signinError.textContent = "Enter your access token.";
    el.token.focus();
    return;
  }
  el.signinButton.disabled = true;
  try {
    await api("POST", `${API}/session`, { token }, { quiet401: true });
  } catch (error) {
    el.signinButton.disabled = false;
    el.signinError.textContent = error.message;
    el.token.focus();
    return;
  }
  el.token.value = "";
  el.signinButton.disabled = false;
  say("");
  await loadSession();
}

async function signOut() {
  el.signout.disabled = true;
  try {
    await api("DELETE", `${API}/session`, undefined, { quiet401: true });
  } catch (error) {
    if (error.status !== 401) {
      el.signout.disabled = false;
      say(error.message);
      return;
    }
  }
  el.signout.disabled = false;
  el.token.value = "";
  signedOut("");
  say("Signed out");
}

// ---- roles ---------------------------------------------------------------

function applyRole() {
  const admin = isAdmin();
  show(el.viewerNote, !admin);
  show(el.connectCard, admin);
  el.testButton.disabled = !admin;
  show(el.disconnect, admin);
  el.disconnect.disabled = !admin;
  for (const kind of KINDS) {
    const button = syncCard(kind).querySelector(".sync-button");
    show(button, admin);
    button.disabled = !admin || state.runs[kind] !== null;
  }
  updateConnectButton();
}

// ---- status and the connect card ----------------------------------------

function syncCard(kind) {
  return $(`sync-${kind}`);
}

function unplacedCard(kind) {
  return $(`unplaced-${kind}`);
}

async function loadAll() {
  await Promise.all([loadStatus(), loadActivity()]);
}

async function loadStatus() {
  let status;
  try {
    status = await api("GET", ITGLUE);
  } catch (error) {
    if (error.status === 403 && error.code === "not-available") {
      el.notAvailable.textContent = error.message;
      show(el.notAvailable, true);
      show(el.notAvailableBox, true);
      show(el.integration, false);
      return;
    }
    if (error.status === 401) return;
    show(el.notAvailableBox, false);
    show(el.integration, true);
    say(error.message);
    return;
  }
  show(el.notAvailable, false);
  show(el.notAvailableBox, false);
  show(el.integration, true);
  renderStatus(status && typeof status === "object" ? status : {});
  await Promise.all(KINDS.map(loadUnplaced));
}

function renderStatus(status) {
  state.status = status;
  const connected = status.connected === true;
  show(el.connection, connected);
  show(el.reconnectNote, connected);
  if (connected) {
    const region = REGIONS[status.region];
    el.connectionRegion.textContent = region ? `IT Glue · ${region}` : `IT Glue · ${text(status.endpoint)}`;
    el.connectionVerified.textContent = status.verified_at
      ? `Key last verified: ${fmtDate(status.verified_at)}`
      : "Key last verified: unknown";
    const every = status.schedule && status.schedule.every;
    show(el.connectionSchedule, Boolean(every));
    el.connectionSchedule.textContent = every ? `Syncs automatically every ${text(every)}.` : "";
    if (!el.apiKey.value && REGIONS[status.region]) {
      el.region.value = status.region;
      updateRegionHost();
    }
  }
  const running = status.running && typeof status.running === "object" ? status.running : {};
  for (const kind of KINDS) {
    renderSyncCard(kind, status[kind] || null, connected);
    const runId = running[kind];
    if (connected && runId !== null && runId !== undefined) follow(kind, String(runId));
  }
  const seen = connected || KINDS.some((kind) => status[kind]);
  for (const kind of KINDS) show(unplacedCard(kind), seen);
}

function updateRegionHost() {
  el.regionHost.textContent = REGION_HOSTS[el.region.value] || "";
}

function currentAttempt() {
  return { region: el.region.value, key: el.apiKey.value.trim() };
}

function attemptMatches(attempt) {
  const now = currentAttempt();
  return attempt !== null && attempt.region === now.region && attempt.key === now.key && now.key !== "";
}

function updateConnectButton() {
  el.connectButton.disabled = !isAdmin() || !attemptMatches(state.verifiedFor);
}

function clearKeyError() {
  show(el.keyError, false);
  el.keyError.querySelector(".error-message").textContent = "";
  el.keyError.querySelector(".error-hints").replaceChildren();
  show(el.keyError.querySelector(".key-advice"), false);
}

function showKeyError(error) {
  const hints = error.hints || [];
  el.keyError.querySelector(".error-message").textContent = error.message;
  const list = el.keyError.querySelector(".error-hints");
  list.replaceChildren(...hints.map((hint) => node("li", null, hint)));
  show(list, hints.length > 0);
  const advice = el.keyError.querySelector(".key-advice");
  const rejected = error.code === "key-rejected";
  for (const paragraph of advice.querySelectorAll("p")) show(paragraph, !hints.includes(paragraph.textContent));
  show(advice, rejected);
  show(el.keyError, true);
}

function invalidateTest() {
  if (!attemptMatches(state.verifiedFor)) {
    state.verifiedFor = null;
    show(el.badge, false);
    el.testResult.textContent = "";
  }
  updateRegionHost();
  updateConnectButton();
}

function keyBody(attempt) {
  return { region: attempt.region, api_key: attempt.key, endpoint: null };
}

async function testConnection(event) {
  event.preventDefault();
  if (!isAdmin()) return;
  const attempt = currentAttempt();
  clearKeyError();
  state.verifiedFor = null;
  show(el.badge, false);
  updateConnectButton();
  if (!attempt.key) {
    el.testResult.textContent = "";
    showKeyError(new ApiError(0, "missing-key", "Paste your IT Glue API key first.", []));
    el.apiKey.focus();
    return;
  }
  el.testButton.disabled = true;
  el.testButton.setAttribute("aria-busy", "true");
  el.testResult.textContent = "Testing connection…";
  try {
    const result = await api("POST", `${ITGLUE}/test`, keyBody(attempt));
    const stillCurrent = attemptMatches(attempt);
    if (result && result.verified === true && stillCurrent) {
      state.verifiedFor = attempt;
      show(el.badge, true);
      el.testResult.textContent = text(result.detail) || "Verified: the key works.";
    } else if (!stillCurrent) {
      el.testResult.textContent = "The key or region changed during the test. Test again.";
    } else {
      el.testResult.textContent = "The key could not be verified.";
    }
  } catch (error) {
    el.testResult.textContent = "";
    showKeyError(error);
  } finally {
    el.testButton.disabled = !isAdmin();
    el.testButton.removeAttribute("aria-busy");
    updateConnectButton();
  }
}

async function connect() {
  if (!isAdmin() || !attemptMatches(state.verifiedFor)) return;
  const attempt = state.verifiedFor;
  clearKeyError();
  el.connectButton.disabled = true;
  el.testButton.disabled = true;
  el.testResult.textContent = "Connecting…";
  try {
    const status = await api("POST", `${ITGLUE}/connect`, keyBody(attempt));
    el.apiKey.value = "";
    state.verifiedFor = null;
    show(el.badge, false);
    el.testResult.textContent = "Connected. The key is stored encrypted and is never shown again.";
    say("Connected");
    renderStatus(status && typeof status === "object" ? status : {});
    await Promise.all([...KINDS.map(loadUnplaced), loadActivity()]);
  } catch (error) {
    el.testResult.textContent = "";
    if (error.code === "key-rejected") {
      state.verifiedFor = null;
      show(el.badge, false);
    }
    showKeyError(error);
  } finally {
    el.testButton.disabled = !isAdmin();
    updateConnectButton();
  }
}

async function disconnect() {
  if (!isAdmin()) return;
  const ok = window.confirm("Disconnect IT Glue? The stored key is deleted; links stay.");
  if (!ok) return;
  el.connectionError.replaceChildren();
  el.disconnect.disabled = true;
  try {
    await api("DELETE", `${ITGLUE}/connection`);
    say("Disconnected");
    await loadAll();
    if (isAdmin()) el.region.focus();
  } catch (error) {
    fillError(el.connectionError, error);
  } finally {
    el.disconnect.disabled = !isAdmin();
  }
}

// ---- sync cards ----------------------------------------------------------

function renderSyncCard(kind, summary, connected) {
  const card = syncCard(kind);
  show(card, connected);
  const lastSync = card.querySelector(".last-sync");
  const lastOk = card.querySelector(".last-ok");
  const syncError = card.querySelector(".sync-error");
  const okSummary = summary && summary.last_ok && typeof summary.last_ok === "object" ? summary.last_ok : null;
  let counts = summary;
  show(lastOk, false);
  show(syncError, false);
  if (!summary) {
    lastSync.textContent = "Never synced";
  } else if (summary.status === "ok") {
    lastSync.textContent = `Last sync: ${fmtDate(summary.finished_at || summary.started_at)}`;
  } else if (summary.status === "failed") {
    lastSync.textContent = `Last sync: ${fmtDate(summary.finished_at || summary.started_at)} (failed)`;
    syncError.textContent = `Sync failed: ${text(summary.error) || "unknown error"}`;
    show(syncError, true);
    if (okSummary) {
      counts = okSummary;
      lastOk.textContent = `Counts from the last successful sync, ${fmtDate(okSummary.finished_at)}.`;
      show(lastOk, true);
    }
  } else {
    lastSync.textContent = okSummary ? `Last sync: ${fmtDate(okSummary.finished_at)}` : "Never synced";
    counts = okSummary || summary;
  }
  for (const name of ["linked", "skipped", "errored"]) {
    card.querySelector(`.count-${name}`).textContent = count(counts ? counts[name] : 0);
  }
  const button = card.querySelector(".sync-button");
  button.disabled = !isAdmin() || state.runs[kind] !== null;
  if (state.runs[kind] === null) show(card.querySelector(".sync-progress"), false);
}

function showProgress(kind, run) {
  const card = syncCard(kind);
  const box = card.querySelector(".sync-progress");
  const bar = box.querySelector("progress");
  const label = box.querySelector(".sync-progress-text");
  const progress = run && run.progress && typeof run.progress === "object" ? run.progress : {};
  const done = typeof progress.pages_done === "number" ? progress.pages_done : 0;
  const total = typeof progress.pages_total === "number" && progress.pages_total > 0 ? progress.pages_total : null;
  if (total !== null) {
    bar.max = total;
    bar.value = Math.min(done, total);
  } else {
    bar.removeAttribute("value");
    bar.removeAttribute("max");
  }
  if (!run || run.status === "queued") label.textContent = "Waiting to start…";
  else label.textContent = total !== null ? `Page ${done} of ${total}` : `Page ${done}`;
  show(box, true);
  card.setAttribute("aria-busy", "true");
}

function isFinal(run) {
  return Boolean(run) && (run.status === "ok" || run.status === "failed");
}

async function startSync(kind) {
  if (!isAdmin() || state.runs[kind]) return;
  const card = syncCard(kind);
  const button = card.querySelector(".sync-button");
  const syncError = card.querySelector(".sync-error");
  show(syncError, false);
  button.disabled = true;
  try {
    const run = await api("POST", `${ITGLUE}/syncs`, { kind, dry_run: false });
    if (!run || run.id === undefined || run.id === null) throw new ApiError(0, "", "The sync was not started.", []);
    say(`${KIND_PLURAL[kind]} sync started`);
    follow(kind, String(run.id), run);
  } catch (error) {
    syncError.textContent = error.message;
    show(syncError, true);
    button.disabled = !isAdmin() || state.runs[kind] !== null;
  }
}

/** Tracks one run until it ends: the event stream first, polling if the stream fails. */
function follow(kind, id, initial) {
  const current = state.runs[kind];
  if ((current && current.id === id) || state.finished.has(`${kind}:${id}`)) return;
  if (current) current.controller.abort();
  const controller = new AbortController();
  state.runs[kind] = { id, controller };
  syncCard(kind).querySelector(".sync-button").disabled = true;
  showProgress(kind, initial || { status: "queued" });
  const update = (run) => {
    if (state.runs[kind] && state.runs[kind].id === id) showProgress(kind, run);
  };
  streamRun(id, controller.signal, update)
    .then((final) => final || pollRun(id, controller.signal, update))
    .then((final) => finishRun(kind, id, final, null))
    .catch((error) => {
      if (error && error.name === "AbortError") return;
      finishRun(kind, id, null, error);
    });
}

async function streamRun(id, signal, update) {
  const url = `${ITGLUE}/syncs/${encodeURIComponent(id)}/events`;
  let response;
  try {
    response = await fetch(url, requestInit("GET", undefined, signal, "text/event-stream"));
  } catch (e) {
    if (signal.aborted) throw e;
    return null;
  }
  if (response.status === 401) {
    signedOut("Your session has ended. Sign in again.");
    throw new DOMException("Aborted", "AbortError");
  }
  if (!response.ok || !response.body) return null;
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let data = [];
  let final = null;
  const dispatch = () => {
    if (!data.length) return;
    const payload = data.join("\n");
    data = [];
    let run;
    try {
      run = JSON.parse(payload);
    } catch (_) {
      return;
    }
    if (!run || typeof run !== "object") return;
    update(run);
    if (isFinal(run)) final = run;
  };
  try {
    while (final === null) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      for (;;) {
        const at = buffer.search(/[\r\n]/);
        if (at < 0) break;
        if (buffer[at] === "\r" && at === buffer.length - 1) break;
        const line = buffer.slice(0, at);
        buffer = buffer.slice(buffer[at] === "\r" && buffer[at + 1] === "\n" ? at + 2 : at + 1);
        if (line === "") dispatch();
        else if (line.startsWith("data:")) data.push(line.slice(line[5] === " " ? 6 : 5));
        if (final !== null) break;
      }
    }
    if (final === null) dispatch();
  } catch (e) {
    if (signal.aborted) throw e;
    return null;
  } finally {
    reader.cancel().catch(() => {});
  }
  return final;
}

async function pollRun(id, signal, update) {
  const url = `${ITGLUE}/syncs/${encodeURIComponent(id)}`;
  let failures = 0;
  for (;;) {
    await sleep(POLL_MS, signal);
    let run;
    try {
      run = await api("GET", url, undefined, { signal });
    } catch (error) {
      if (error && error.name === "AbortError") throw error;
      if (error.status === 401) throw new DOMException("Aborted", "AbortError");
      if (error.status === 404) throw error;
      failures += 1;
      if (failures >= MAX_POLL_FAILURES) throw error;
      continue;
    }
    failures = 0;
    if (run && typeof run === "object") {
      update(run);
      if (isFinal(run)) return run;
    }
  }
}

async function finishRun(kind, id, run, error) {
  const current = state.runs[kind];
  if (!current || current.id !== id) return;
  state.runs[kind] = null;
  state.finished.add(`${kind}:${id}`);
  const card = syncCard(kind);
  card.removeAttribute("aria-busy");
  show(card.querySelector(".sync-progress"), false);
  card.querySelector(".sync-button").disabled = !isAdmin();
  if (error) {
    say(`Lost track of the ${kind} sync: ${error.message}`);
  } else if (run && run.status === "ok") {
    say(`${KIND_PLURAL[kind]} synced: ${count(run.linked)} linked, ${count(run.skipped)} skipped, ${count(run.errored)} errored`);
  } else if (run) {
    say(`${KIND_PLURAL[kind]} sync failed`);
  }
  if (state.session) await loadAll();
}

// ---- unplaced records ----------------------------------------------------

async function loadUnplaced(kind) {
  const card = unplacedCard(kind);
  const loadError = card.querySelector(".load-error");
  let records;
  try {
    records = await api("GET", `${ITGLUE}/unplaced?kind=${encodeURIComponent(kind)}`);
  } catch (error) {
    if (error.status === 401) return;
    loadError.textContent = error.message;
    show(loadError, true);
    return;
  }
  show(loadError, false);
  renderUnplaced(kind, Array.isArray(records) ? records : []);
}

function renderUnplaced(kind, records) {
  const card = unplacedCard(kind);
  const list = card.querySelector(".unplaced-list");
  list.replaceChildren(...records.filter((r) => r && typeof r === "object").map((r) => unplacedItem(kind, r)));
  show(list, list.children.length > 0);
  show(card.querySelector(".empty"), list.children.length === 0);
}

/** Names for a list of ids, falling back to the id where a name is missing. */
function namesOf(ids, names) {
  const idList = Array.isArray(ids) ? ids : [];
  const nameList = Array.isArray(names) ? names : [];
  return Array.from({ length: Math.max(idList.length, nameList.length) }, (_, i) => text(nameList[i] || idList[i]));
}

function unplacedItem(kind, record) {
  const sourceId = text(record.source_id !== undefined ? record.source_id : record.itglue_id);
  const item = node("li", "unplaced");
  item.dataset.sourceId = sourceId;

  const head = node("div", "record-head");
  head.append(node("span", "record-name", text(record.name) || "(no name)"));
  head.append(node("span", "reason-badge", text(record.reason_label || record.reason)));
  item.append(head);

  const meta = [];
  if (record.itglue_id !== undefined && record.itglue_id !== null) meta.push(`IT Glue ID ${text(record.itglue_id)}`);
  if (record.scopable_name) meta.push(`In Scopable: ${text(record.scopable_name)}`);
  if (meta.length) item.append(node("p", "record-meta", meta.join(" · ")));
  if (kind === "configuration" && (record.organization_name || record.organization_id)) {
    item.append(node("p", "record-organization", `Organization: ${text(record.organization_name || record.organization_id)}`));
  }
  if (record.reason_text) item.append(node("p", "reason-text", text(record.reason_text)));

  const candidates = namesOf(record.candidates, record.candidate_names);
  const suggestions = namesOf(record.suggestions, record.suggestion_names);
  if (candidates.length) item.append(node("p", "candidates", `Candidates: ${candidates.join(", ")}`));
  if (suggestions.length) item.append(node("p", "suggestions", `Suggestions: ${suggestions.join(", ")}`));

  const feedback = node("div", "record-error error");
  feedback.setAttribute("role", "alert");

  if (isAdmin() && sourceId) {
    const actions = node("div", "record-actions");
    const linkButton = node("button", "button secondary link-button", "Link…");
    linkButton.type = "button";
    linkButton.setAttribute("aria-expanded", "false");
    const ignoreButton = node("button", "button ghost ignore-button", "Ignore");
    ignoreButton.type = "button";
    actions.append(linkButton, ignoreButton);
    item.append(actions);

    let panel = null;
    linkButton.addEventListener("click", () => {
      if (!panel) {
        panel = linkPanel(kind, sourceId, item, feedback);
        actions.after(panel);
      }
      const open = panel.hidden;
      show(panel, open);
      linkButton.setAttribute("aria-expanded", String(open));
      if (open) panel.querySelector(".link-search").focus();
    });
    ignoreButton.addEventListener("click", () => {
      decide(kind, sourceId, { ignore: true }, "Ignored", feedback, ignoreButton);
    });
  }
  item.append(feedback);
  return item;
}

function linkPanel(kind, sourceId, item, feedback) {
  state.fieldSeq += 1;
  const inputId = `link-search-${kind}-${state.fieldSeq}`;
  const panel = node("div", "link-panel");
  panel.hidden = true;
  panel.setAttribute("role", "group");
  panel.setAttribute("aria-label", kind === "organization" ? "Link to a client" : "Link to a configuration");
  const label = node("label", null, kind === "organization" ? "Find a client" : "Find a configuration");
  label.setAttribute("for", inputId);
  const input = node("input", "link-search");
  input.id = inputId;
  input.type = "search";
  input.autocomplete = "off";
  input.spellcheck = false;
  const status = node("p", "search-status muted");
  status.setAttribute("aria-live", "polite");
  status.id = `${inputId}-status`;
  input.setAttribute("aria-describedby", status.id);
  const results = node("ul", "search-results");
  panel.append(label, input, status, results);

  const link = (id, button) => decide(kind, sourceId, { link: id, take: false }, "Linked", feedback, button);

  let timer = null;
  let seq = 0;
  const search = async () => {
    const q = input.value.trim();
    seq += 1;
    const mine = seq;
    if (!q) {
      results.replaceChildren();
      status.textContent = "";
      return;
    }
    status.textContent = "Searching…";
    const path = kind === "organization" ? `${API}/clients` : `${API}/configurations`;
    let found;
    try {
      found = await api("GET", `${path}?q=${encodeURIComponent(q)}`);
    } catch (error) {
      if (mine === seq) status.textContent = error.message;
      return;
    }
    if (mine !== seq) return;
    const rows = Array.isArray(found) ? found.filter((r) => r && typeof r === "object" && r.id !== undefined) : [];
    results.replaceChildren(...rows.map((row) => {
      const li = node("li");
      const button = node("button", "search-result");
      button.type = "button";
      button.dataset.id = text(row.id);
      button.append(node("span", "result-name", text(row.name) || text(row.id)));
      if (row.client_name) button.append(node("span", "result-client", text(row.client_name)));
      button.addEventListener("click", () => link(text(row.id), button));
      li.append(button);
      return li;
    }));
    status.textContent = rows.length ? `${rows.length} found` : "No matches.";
  };
  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(search, SEARCH_DEBOUNCE_MS);
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      show(panel, false);
      const toggle = item.querySelector(".link-button");
      toggle.setAttribute("aria-expanded", "false");
      toggle.focus();
    }
  });
  return panel;
}

async function decide(kind, sourceId, body, done, feedback, button) {
  const path = `${ITGLUE}/decisions/${encodeURIComponent(kind)}/${encodeURIComponent(sourceId)}`;
  feedback.replaceChildren();
  if (button) button.disabled = true;
  try {
    await api("PUT", path, body);
  } catch (error) {
    if (button) button.disabled = false;
    fillError(feedback, error);
    if (error.status === 409 && error.code === "target-taken" && body.link !== undefined) {
      const take = node("button", "button danger take-button", "Take it");
      take.type = "button";
      take.addEventListener("click", () => decide(kind, sourceId, { link: body.link, take: true }, done, feedback, take));
      feedback.append(take);
      take.focus();
    }
    return;
  }
  say(done);
  unplacedCard(kind).querySelector("h2").focus();
  await loadAll();
}

// ---- activity ------------------------------------------------------------

const VERBS = { link: "linked", ignore: "ignored", reset: "reset", take: "took", unlink: "unlinked" };

function activityLine(entry) {
  const kind = text(entry.kind);
  if (kind === "sync") {
    const what = entry.sync_kind === "configuration" ? "configurations" : entry.sync_kind === "organization" ? "organizations" : text(entry.sync_kind);
    let line = `Sync ${what}: ${text(entry.status)}`;
    if (entry.linked !== undefined || entry.fetched !== undefined) {
      line += ` — ${count(entry.fetched)} fetched, ${count(entry.linked)} linked, ${count(entry.skipped)} skipped, ${count(entry.errored)} errored`;
    }
    if (entry.error) line += ` — ${text(entry.error)}`;
    return line;
  }
  if (kind === "decision") {
    const verb = VERBS[entry.action] || text(entry.action);
    let line = `${text(entry.actor) || "Someone"} ${verb} ${text(entry.record_kind)} ${text(entry.source_id)}`;
    if (entry.scopable_id) line += ` → ${text(entry.scopable_id)}`;
    return line;
  }
  if (kind === "event") {
    const action = text(entry.action) || "event";
    let line = action.charAt(0).toUpperCase() + action.slice(1);
    if (entry.actor) line += ` by ${text(entry.actor)}`;
    if (entry.detail) line += ` — ${text(entry.detail)}`;
    return line;
  }
  if (kind === "request") {
    let line = `${text(entry.method)} ${text(entry.host)}${text(entry.path)}`;
    const outcome = [entry.decision, entry.status].filter((v) => v !== null && v !== undefined && v !== "").map(text);
    if (outcome.length) line += ` — ${outcome.join(", ")}`;
    return line;
  }
  return kind || "activity";
}

async function loadActivity() {
  const loadError = el.activity.querySelector(".load-error");
  let entries;
  try {
    entries = await api("GET", `${ITGLUE}/activity?limit=20`);
  } catch (error) {
    if (error.status === 401 || error.status === 403) return;
    loadError.textContent = error.message;
    show(loadError, true);
    show(el.activity, true);
    return;
  }
  show(loadError, false);
  const list = el.activity.querySelector(".activity-list");
  const rows = (Array.isArray(entries) ? entries : []).filter((e) => e && typeof e === "object").slice(0, 20);
  list.replaceChildren(...rows.map((entry) => {
    const li = node("li", `activity-entry activity-${text(entry.kind).replace(/[^a-z]/g, "")}`);
    const time = node("time", "activity-time", fmtDate(entry.at));
    if (entry.at) time.setAttribute("datetime", text(entry.at));
    li.append(time, node("span", "activity-text", activityLine(entry)));
    return li;
  }));
  show(list, rows.length > 0);
  show(el.activity.querySelector(".empty"), rows.length === 0);
  show(el.activity, true);
}

// ---- wiring --------------------------------------------------------------

el.signin.addEventListener("submit", signIn);
el.signout.addEventListener("click", signOut);
el.connectForm.addEventListener("submit", testConnection);
el.connectButton.addEventListener("click", connect);
el.apiKey.addEventListener("input", invalidateTest);
el.region.addEventListener("change", invalidateTest);
el.disconnect.addEventListener("click", disconnect);
for (const kind of KINDS) {
  syncCard(kind).querySelector(".sync-button").addEventListener("click", () => startSync(kind));
}
updateRegionHost();
loadSession();
