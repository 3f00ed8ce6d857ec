// pgcue Jobs panel: keeps a server-rendered page live. No framework, nothing to build.
//
// The page was rendered at an event-log cursor (body[data-cursor]); the channel's stream
// (GET /api/events) opens from that cursor, so nothing that changed after the render is
// missed. A stream the server ends (a restart, a slow reader cut off) or a network that
// drops is resumed by the browser with Last-Event-ID; a stream that cannot be resumed that
// way (refused, or the browser gave up) is reopened here from the last id seen. Rows are
// keyed by job id and events by event id, so a resume never makes a duplicate.
//
// What changes a row's state is re-read from the server (GET /ui/fragments/rows): the
// server renders rows, this only places them. Progress, stage and output are patched in.
"use strict";

(function () {
  const csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  const body = document.body;
  const page = body.dataset.page || "";
  // What tests and curious people can read: every event received, in order.
  const seen = { events: [], received: [], ids: new Set(), opened: 0, errors: 0, lastId: body.dataset.cursor || "" };
  window.pgcuePanel = seen;

  // --- small helpers -------------------------------------------------------------------

  function notice(text, kind) {
    const box = document.getElementById("notice");
    if (!box) return;
    box.textContent = text;
    box.className = "notice" + (kind ? " notice-" + kind : "");
    box.hidden = false;
    clearTimeout(notice.timer);
    notice.timer = setTimeout(() => { box.hidden = true; }, kind === "error" ? 12000 : 6000);
  }

  async function api(method, url, payload) {
    const headers = { "Accept": "application/json", "X-CSRF-Token": csrf };
    const init = { method, headers, credentials: "same-origin" };
    if (payload !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(payload);
    }
    const response = await fetch(url, init);
    let data = null;
    const text = await response.text();
    if (text) {
      try { data = JSON.parse(text); } catch (e) { data = null; }
    }
    if (!response.ok) {
      if (response.status === 401) signedOut();
      const detail = (data && (data.detail || data.title)) || response.statusText;
      const err = new Error(detail);
      err.status = response.status;
      throw err;
    }
    return data;
  }

  async function fragment(url) {
    const response = await fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } });
    if (response.status === 401) { signedOut(); throw new Error("signed out"); }
    if (!response.ok) {
      const err = new Error("HTTP " + response.status);
      err.status = response.status;
      throw err;
    }
    return response.text();
  }

  function parse(html) {
    const t = document.createElement("template");
    t.innerHTML = html;
    return t.content;
  }

  function signedOut() {
    notice("Your session has ended. Sign in again to go on.", "error");
    setTimeout(() => { window.location.assign("/ui/login"); }, 1500);
  }

  function fmtNumber(n) { return Number(n).toLocaleString("en-US"); }

  function fmtDuration(ms) {
    const s = ms / 1000;
    if (s < 10) return s.toFixed(1) + " s";
    if (s < 60) return Math.round(s) + " s";
    let m = Math.floor(s / 60);
    const sec = Math.floor(s % 60);
    if (m < 60) return m + " min " + sec + " s";
    const h = Math.floor(m / 60);
    m = m % 60;
    if (h < 48) return h + " h " + m + " min";
    return Math.floor(h / 24) + " d " + (h % 24) + " h";
  }

  function clock(iso) {
    return iso ? iso.replace("T", " ").replace(/\.\d+Z$/, " UTC") : "—";
  }

  const WAITING = { children: "waiting for its stage", approval: "waiting for approval", provider: "waiting for the provider" };

  // One line of a job's history: the same text render.py's event_line writes.
  function eventLine(kind, d) {
    if (kind === "job:status") {
      let t = String(d.state || "?");
      if (d.waitingFor) t += ", " + (WAITING[d.waitingFor] || d.waitingFor);
      if (d.attempt !== undefined && d.attempt !== null && d.state === "running") {
        t += " (attempt " + d.attempt + (d.maxAttempts ? " of " + d.maxAttempts : "") + ")";
      }
      if (d.reason) t += " (" + d.reason + ")";
      if (d.cancelRequested) t += " (cancel requested)";
      if (d.errorMessage) t += ": " + d.errorMessage;
      if (d.retryAt) t += "; retries at " + d.retryAt;
      return t;
    }
    if (kind === "job:progress") return (d.progress || 0) + "%" + (d.message ? " " + d.message : "");
    if (kind === "stage:updated") {
      let t = "stage " + (d.stage || "?");
      if (d.state) t += " " + d.state;
      if (d.iteration) t += " (iteration " + d.iteration + ")";
      if (d.decision) t += ": " + d.decision;
      if (d.feedback) t += " — " + d.feedback;
      return t;
    }
    if (kind === "proposals:updated") return "new proposals";
    return kind;
  }

  const dialog = document.getElementById("confirm");
  function confirmDialog(title, text, ok) {
    if (!dialog || typeof dialog.showModal !== "function") return Promise.resolve(window.confirm(text));
    document.getElementById("confirm-title").textContent = title;
    document.getElementById("confirm-text").textContent = text;
    document.getElementById("confirm-ok").textContent = ok || "Go ahead";
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
      dialog.returnValue = "";
      dialog.showModal();
      document.getElementById("confirm-ok").focus();
    });
  }

  // --- signing out -----------------------------------------------------------------------

  document.addEventListener("click", async (ev) => {
    const button = ev.target.closest('[data-act="logout"]');
    if (!button) return;
    ev.preventDefault();
    try { await api("POST", "/ui/logout"); } catch (e) { /* signed out either way */ }
    window.location.assign("/ui/login");
  });

  // --- the jobs list and the job page ----------------------------------------------------

  const table = document.getElementById("jobs");
  const channel = body.dataset.channel || "";
  const filters = body.dataset.filters || "";
  const liveInserts = body.dataset.liveInserts === "1";

  function rowOf(id) { return document.getElementById("job-" + id); }

  function setStream(text, state) {
    const el = document.getElementById("stream-state");
    if (el) { el.textContent = text; el.dataset.state = state; }
  }

  // Rows whose state changed are re-read together, a moment after the first change.
  const pendingRows = new Set();
  let rowTimer = null;
  function scheduleRow(id) {
    if (!table) return;
    pendingRows.add(id);
    if (!rowTimer) rowTimer = setTimeout(refreshRows, 120);
  }

  async function refreshRows() {
    rowTimer = null;
    const ids = Array.from(pendingRows).slice(0, 100);
    ids.forEach((id) => pendingRows.delete(id));
    if (pendingRows.size) rowTimer = setTimeout(refreshRows, 120);
    if (!ids.length) return;
    let html;
    try {
      html = await fragment("/ui/fragments/rows?" + filters + "&ids=" + ids.join(","));
    } catch (e) {
      ids.forEach((id) => pendingRows.add(id));
      if (!rowTimer) rowTimer = setTimeout(refreshRows, 2000);
      return;
    }
    const tpl = parse(html).querySelector("template");
    const incoming = tpl ? Array.from(tpl.content.querySelectorAll("tbody")) : [];
    for (const fresh of incoming) {
      const id = fresh.dataset.jobId;
      const old = rowOf(id);
      if (fresh.dataset.absent) {
        const parent = fresh.dataset.parent;
        if (parent && rowOf(parent)) { scheduleRow(parent); childOf.set(id, parent); }
        if (old && page === "jobs") old.remove();
        continue;
      }
      if (old) {
        replaceRow(old, fresh);
      } else if (liveInserts) {
        insertRow(fresh);
      }
    }
    const empty = document.getElementById("no-jobs");
    if (empty) empty.hidden = !!table.querySelector("tbody.job");
  }

  // A refreshed row keeps its open details (and their live output) as they are.
  function replaceRow(old, fresh) {
    const oldDetail = old.querySelector("tr.detail");
    const freshDetail = fresh.querySelector("tr.detail");
    const expanded = oldDetail && !oldDetail.hidden;
    if (oldDetail && freshDetail) freshDetail.replaceWith(oldDetail);
    const focused = document.activeElement && old.contains(document.activeElement) ? document.activeElement : null;
    const focusKey = focused ? (focused.dataset.act || "") + (focused.dataset.run || "") : null;
    const typed = {};
    old.querySelectorAll("input.feedback-input").forEach((i) => { if (i.value) typed[i.id] = i.value; });
    old.replaceWith(fresh);
    fresh.querySelectorAll("input.feedback-input").forEach((i) => { if (typed[i.id]) i.value = typed[i.id]; });
    const button = fresh.querySelector("button.expand");
    if (button) button.setAttribute("aria-expanded", expanded ? "true" : "false");
    if (focusKey !== null) {
      const again = Array.from(fresh.querySelectorAll("button, input, a")).find(
        (el) => (el.dataset.act || "") + (el.dataset.run || "") === focusKey);
      (again || fresh.querySelector("button.expand")).focus();
    }
    if (expanded) scheduleDetail(fresh.dataset.jobId);
  }

  function insertRow(fresh) {
    const created = fresh.dataset.created;
    const id = fresh.dataset.jobId;
    for (const other of table.querySelectorAll("tbody.job")) {
      const c = other.dataset.created;
      if (c < created || (c === created && other.dataset.jobId < id)) {
        table.insertBefore(fresh, other);
        return;
      }
    }
    table.appendChild(fresh);
  }

  // --- an expanded row's details -----------------------------------------------------------

  const childOf = new Map(); // a pipeline run's stage job -> its run
  const loading = new Map(); // job id -> events that came while its details were being read
  const pendingDetails = new Set();
  let detailTimer = null;

  function scheduleDetail(id) {
    pendingDetails.add(id);
    if (!detailTimer) detailTimer = setTimeout(() => {
      detailTimer = null;
      const ids = Array.from(pendingDetails);
      pendingDetails.clear();
      ids.forEach(loadDetail);
    }, 150);
  }

  async function loadDetail(id) {
    const row = rowOf(id);
    if (!row) return;
    const box = row.querySelector(".detail-body");
    if (!box) return;
    if (!loading.has(id)) loading.set(id, []);
    let html;
    try {
      html = await fragment("/ui/fragments/detail/" + id);
    } catch (e) {
      loading.delete(id);
      if (e.status === 404) { box.textContent = "This job is gone."; }
      return;
    }
    const live = rowOf(id);
    if (!live) { loading.delete(id); return; }
    const target = live.querySelector(".detail-body");
    // Media keep playing across a refresh: the player is kept when the file did not change.
    const playing = Array.from(target.querySelectorAll("audio, video")).find((m) => !m.paused);
    const content = parse(html);
    if (playing) {
      const same = content.querySelector(playing.tagName.toLowerCase() + '[src="' + playing.getAttribute("src") + '"]');
      if (same) same.replaceWith(playing);
    }
    target.replaceChildren(content);
    target.dataset.loaded = "1";
    const buffered = loading.get(id) || [];
    loading.delete(id);
    buffered.forEach((ev) => applyToDetail(id, ev.kind, ev.data));
  }

  function detailOpen(id) {
    const row = rowOf(id);
    if (!row) return null;
    const detail = row.querySelector("tr.detail");
    if (!detail || detail.hidden) return null;
    return row.querySelector(".detail-body");
  }

  function applyToDetail(id, kind, data) {
    const box = detailOpen(id);
    if (!box) return;
    if (loading.has(id) || box.dataset.loaded !== "1") {
      if (loading.has(id)) loading.get(id).push({ kind, data });
      return;
    }
    const eid = String(data.eventId);
    if (kind === "job:output") {
      const pane = box.querySelector("pre.output");
      if (!pane || pane.querySelector('[data-eid="' + eid + '"]')) return;
      const span = document.createElement("span");
      span.dataset.eid = eid;
      span.textContent = data.text || "";
      const atEnd = pane.scrollTop + pane.clientHeight >= pane.scrollHeight - 4;
      pane.appendChild(span);
      if (atEnd) pane.scrollTop = pane.scrollHeight;
      return;
    }
    const list = box.querySelector("ol.history");
    if (!list || list.querySelector('[data-eid="' + eid + '"]')) return;
    const li = document.createElement("li");
    li.dataset.eid = eid;
    li.dataset.kind = kind;
    const time = document.createElement("time");
    time.dateTime = data.createdAt || "";
    time.textContent = clock(data.createdAt);
    const k = document.createElement("span");
    k.className = "kind";
    k.textContent = kind;
    li.append(time, " ", k, " " + eventLine(kind, data));
    list.appendChild(li);
  }

  function toggle(button) {
    const row = button.closest("tbody.job");
    const detail = row.querySelector("tr.detail");
    const open = detail.hidden;
    detail.hidden = !open;
    button.setAttribute("aria-expanded", open ? "true" : "false");
    if (open) {
      const box = row.querySelector(".detail-body");
      if (box.dataset.loaded !== "1") {
        box.textContent = "Loading…";
        loadDetail(row.dataset.jobId);
      }
    }
  }

  // --- live events -------------------------------------------------------------------------

  function patchProgress(id, data) {
    const row = rowOf(id);
    if (!row) return;
    const cell = row.querySelector(".c-progress");
    let bar = cell.querySelector("progress");
    if (!bar) {
      bar = document.createElement("progress");
      bar.max = 100;
      bar.setAttribute("aria-label", "Progress of " + id.slice(-8));
      const pct = document.createElement("span");
      pct.className = "pct";
      cell.prepend(bar, pct);
    }
    bar.value = data.progress || 0;
    const pct = cell.querySelector(".pct");
    if (pct) pct.textContent = (data.progress || 0) + "%";
    const text = cell.querySelector(".stage-text");
    if (text && data.message) {
      const stage = text.dataset.stage || "";
      text.textContent = [stage, data.message].filter(Boolean).join(" · ");
    }
  }

  function patchStage(id, data) {
    const row = rowOf(id);
    if (!row) return;
    const text = row.querySelector(".c-progress .stage-text");
    if (text) { text.dataset.stage = data.stage || ""; text.textContent = data.stage || ""; }
  }

  let summaryTimer = null;
  function scheduleSummary() {
    if (page !== "jobs" || summaryTimer) return;
    summaryTimer = setTimeout(refreshSummary, 800);
  }

  async function refreshSummary() {
    summaryTimer = null;
    const box = document.getElementById("summary");
    if (!box) return;
    if (Array.from(box.querySelectorAll("audio, video")).some((m) => !m.paused)) {
      summaryTimer = setTimeout(refreshSummary, 3000); // not while a result card plays
      return;
    }
    try {
      const html = await fragment("/ui/fragments/summary?" + filters);
      box.replaceChildren(parse(html));
    } catch (e) { /* next event tries again */ }
  }

  function onEvent(ev) {
    let data;
    try { data = JSON.parse(ev.data); } catch (e) { return; }
    if (ev.lastEventId) seen.lastId = ev.lastEventId;
    if (ev.type === "shutdown") return;
    const eid = data.eventId;
    seen.received.push(eid);
    if (eid !== undefined) {
      if (seen.ids.has(eid)) return; // the stream promises none; a page never shows one twice
      seen.ids.add(eid);
    }
    seen.events.push({ kind: ev.type, eventId: eid, jobId: data.jobId, state: data.state || null });
    const id = data.jobId;
    const parent = childOf.get(id);
    switch (ev.type) {
      case "job:status":
        scheduleRow(id);
        if (parent) scheduleRow(parent);
        applyToDetail(id, ev.type, data);
        if (detailOpen(id)) scheduleDetail(id);
        scheduleSummary();
        break;
      case "job:progress":
        patchProgress(id, data);
        applyToDetail(id, ev.type, data);
        break;
      case "stage:updated":
        if (data.position !== undefined && data.position !== null) {
          scheduleRow(id); // a pipeline stage moved: the run's row shows its stages
          if (detailOpen(id)) scheduleDetail(id);
        } else {
          patchStage(id, data);
        }
        applyToDetail(id, ev.type, data);
        break;
      case "job:output":
        applyToDetail(id, ev.type, data);
        break;
      case "proposals:updated":
        scheduleSummary();
        break;
    }
  }

  let source = null;
  let retryDelay = 1000;
  function openStream() {
    if (!channel) return;
    const url = "/api/events?channelId=" + encodeURIComponent(channel) +
      (seen.lastId ? "&lastEventId=" + encodeURIComponent(seen.lastId) : "");
    source = new EventSource(url);
    for (const kind of ["job:status", "job:output", "job:progress", "stage:updated", "proposals:updated", "shutdown"]) {
      source.addEventListener(kind, onEvent);
    }
    source.onopen = () => {
      seen.opened += 1;
      retryDelay = 1000;
      setStream("live", "live");
    };
    source.onerror = () => {
      seen.errors += 1;
      if (source.readyState === EventSource.CONNECTING) {
        setStream("reconnecting…", "reconnecting"); // the browser resumes with Last-Event-ID
        return;
      }
      // Closed for good (refused, or the browser gave up): reopen from the last id seen.
      source.close();
      setStream("reconnecting…", "reconnecting");
      const wait = retryDelay;
      retryDelay = Math.min(retryDelay * 2, 30000);
      setTimeout(async () => {
        try {
          await fragment("/ui/fragments/summary?" + filters); // a 401 here: signed out
        } catch (e) {
          if (e.message === "signed out") return;
        }
        openStream();
      }, wait);
    };
  }

  // A tab woken from sleep may hold a dead connection the browser has not noticed yet.
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && source && source.readyState === EventSource.CLOSED) openStream();
  });

  // Clocks of running jobs.
  function tick() {
    const now = Date.now();
    document.querySelectorAll("[data-since]").forEach((cell) => {
      const since = Date.parse(cell.dataset.since);
      if (!isNaN(since)) cell.textContent = fmtDuration(Math.max(0, now - since));
    });
  }

  // --- actions ---------------------------------------------------------------------------

  const ACTION_TEXT = { cancel: "Cancel requested", retry: "Queued again", delete: "Deleted" };

  async function act(button) {
    const action = button.dataset.act;
    const row = button.closest("tbody.job");
    const id = row ? row.dataset.jobId : null;
    button.disabled = true;
    try {
      if (action === "cancel" || action === "retry") {
        await api("POST", "/api/jobs/" + id + "/" + action);
        notice(ACTION_TEXT[action] + ": " + row.dataset.type + " " + id.slice(-8));
        scheduleRow(id);
      } else if (action === "delete") {
        if (!(await confirmDialog("Delete this job?", "Delete " + row.dataset.type + " " + id.slice(-8) +
          ", its history and its files?", "Delete"))) { button.disabled = false; return; }
        await api("DELETE", "/api/jobs/" + id);
        notice("Deleted " + row.dataset.type + " " + id.slice(-8));
        if (page === "job") window.location.assign("/ui?channelId=" + encodeURIComponent(channel));
        else row.remove();
      } else if (action === "approve" || action === "reject") {
        const run = button.dataset.run;
        const input = button.closest(".decide").querySelector("input.feedback-input");
        const feedback = input ? input.value.trim() : "";
        if (action === "reject" && !feedback) {
          notice("Say what to change: a rejection sends its feedback to the next try.", "error");
          if (input) input.focus();
          button.disabled = false;
          return;
        }
        const payload = action === "approve" ? { decision: "approve" } : { decision: "reject", feedback };
        if (action === "approve" && feedback) payload.feedback = feedback;
        await api("POST", "/api/jobs/" + run + "/resume", payload);
        notice(action === "approve" ? "Approved" : "Sent back with your feedback");
        scheduleRow(run);
      } else if (action === "clear") {
        const ch = button.dataset.channel;
        if (!(await confirmDialog("Clear finished jobs?", "Delete every completed, failed and cancelled job of " +
          ch + ", with their history and files?", "Clear"))) { button.disabled = false; return; }
        const done = await api("POST", "/api/channels/" + encodeURIComponent(ch) + "/clear");
        notice("Deleted " + fmtNumber(done.deleted) + " finished jobs");
        refreshAllRows();
        scheduleSummary();
      }
    } catch (e) {
      notice(e.message, "error");
    }
    button.disabled = false;
  }

  function refreshAllRows() {
    if (!table) return;
    table.querySelectorAll("tbody.job").forEach((row) => scheduleRow(row.dataset.jobId));
  }

  const BULK = {
    retry: { verb: "Retry", done: "Retried", what: "failed or cancelled" },
    cancel: { verb: "Cancel", done: "Cancelled", what: "queued or running" },
    delete: { verb: "Delete", done: "Deleted", what: "finished" },
  };

  function bulkFilter() {
    const params = new URLSearchParams(filters);
    const f = { channelId: channel };
    if (params.get("type")) f.type = params.get("type");
    if (params.get("state")) f.state = params.get("state");
    const since = params.get("since");
    const seconds = { "1h": 3600, "24h": 86400, "7d": 604800, "30d": 2592000 }[since];
    if (seconds) f.createdAfter = new Date(Date.now() - seconds * 1000).toISOString();
    return f;
  }

  async function bulk(button) {
    const action = button.dataset.bulk;
    const words = BULK[action];
    const filter = bulkFilter();
    button.disabled = true;
    try {
      const count = await api("POST", "/api/jobs/bulk", Object.assign({ action, dryRun: true }, filter));
      if (!count.matched) {
        notice("No " + (filter.state || words.what) + " job matches the filter.");
        button.disabled = false;
        return;
      }
      const n = (count.capped ? "more than " : "") + fmtNumber(count.matched);
      const described = [filter.state || words.what, filter.type].filter(Boolean).join(" ");
      const ok = await confirmDialog(words.verb + " " + n + " job" + (count.matched === 1 && !count.capped ? "" : "s") + "?",
        words.verb + " " + n + " " + described + " job" + (count.matched === 1 ? "" : "s") + " in " + channel +
        " — every one the filter matches, not only this page.", words.verb + " " + n);
      if (!ok) { button.disabled = false; return; }
      let changed = 0;
      let cursor = null;
      do {
        const step = Object.assign({ action, createdBefore: count.asOf }, filter);
        if (cursor) step.cursor = cursor;
        const done = await api("POST", "/api/jobs/bulk", step);
        changed += done.changed;
        cursor = done.nextCursor;
        notice(words.done + " " + fmtNumber(changed) + " of " + n + " jobs…");
      } while (cursor);
      notice(words.done + " " + fmtNumber(changed) + " job" + (changed === 1 ? "" : "s") + ".");
      refreshAllRows();
      scheduleSummary();
      setTimeout(scheduleSummary, 3500); // the counts' snapshot is a few seconds old at most
    } catch (e) {
      notice(e.message, "error");
    }
    button.disabled = false;
  }

  // --- the operator view -------------------------------------------------------------------

  const operator = document.getElementById("operator");
  async function refreshOperator() {
    if (!operator) return;
    if (operator.contains(document.activeElement) && document.activeElement.tagName === "INPUT") return;
    try {
      const html = await fragment("/ui/fragments/operator");
      const focusKey = document.activeElement && operator.contains(document.activeElement)
        ? (document.activeElement.dataset.act || "") + (document.activeElement.dataset.type || document.activeElement.dataset.channel || "")
        : null;
      operator.replaceChildren(parse(html));
      if (focusKey) {
        const again = Array.from(operator.querySelectorAll("button")).find(
          (b) => (b.dataset.act || "").replace(/^(pause|resume)/, "") + (b.dataset.type || b.dataset.channel || "") ===
            focusKey.replace(/^(pause|resume)/, ""));
        if (again) again.focus();
      }
    } catch (e) { /* the next refresh tries again */ }
  }

  async function operatorAct(button) {
    const action = button.dataset.act;
    let url;
    if (action === "pause-type" || action === "resume-type") {
      url = "/api/types/" + encodeURIComponent(button.dataset.type) + "/" + action.split("-")[0];
    } else if (action === "resume-channel") {
      url = "/api/channels/" + encodeURIComponent(button.dataset.channel) + "/resume";
    } else if (action === "pause-channel") {
      const input = document.getElementById("pause-channel-id");
      const ch = input ? input.value.trim() : "";
      if (!ch) { notice("Name the channel to pause.", "error"); if (input) input.focus(); return; }
      url = "/api/channels/" + encodeURIComponent(ch) + "/pause";
      input.value = "";
    } else {
      return;
    }
    button.disabled = true;
    try {
      const done = await api("POST", url);
      notice((done.type || done.channelId) + (done.paused ? " paused" : " resumed"));
    } catch (e) {
      notice(e.message, "error");
    }
    button.disabled = false;
    refreshOperator();
  }

  document.addEventListener("click", (ev) => {
    const button = ev.target.closest("button");
    if (!button || button.disabled) return;
    const action = button.dataset.act;
    if (action === "expand") { toggle(button); return; }
    if (button.dataset.bulk) { bulk(button); return; }
    if (["cancel", "retry", "delete", "approve", "reject", "clear"].includes(action)) { act(button); return; }
    if (action && /^(pause|resume)-(type|channel)$/.test(action)) { operatorAct(button); }
  });

  // Enter in a feedback box rejects with it.
  document.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && ev.target.classList && ev.target.classList.contains("feedback-input")) {
      ev.preventDefault();
      const reject = ev.target.closest(".decide").querySelector('[data-act="reject"]');
      if (reject) reject.click();
    }
    if (ev.key === "/" && !/^(INPUT|TEXTAREA|SELECT)$/.test(document.activeElement.tagName)) {
      const search = document.querySelector('input[name="q"]');
      if (search) { ev.preventDefault(); search.focus(); }
    }
  });

  if (page === "jobs" || page === "job") {
    openStream();
    tick();
    setInterval(tick, 1000);
  }
  if (page === "operator") setInterval(refreshOperator, 5000);
})();
