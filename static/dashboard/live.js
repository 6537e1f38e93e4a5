/*
 * ariacluster dashboard: live updates over the /ws/dashboard/ websocket.
 *
 * The socket only carries change notices ({"type": "tasks"|"workers", "ids": [...]}). Notices are
 * coalesced (at most one refresh every MIN_INTERVAL ms); then every live region on the page
 * re-reads what changed from the server, rendered by the same template partials as the page:
 *
 *   data-live="tasks workers"   notice kinds the region listens to
 *   data-live-url               GET (HX-Request) returns the region itself, same id
 *   data-live-rows-url          GET ?ids=1,2 returns just those rows (ids "task-1", "worker-2")
 *   data-live-kind              which notice kind the rows are (default: the first listed)
 *   data-live-new="reload"      an id not on the page reloads the region (new rows appear)
 *   data-live-ids="7"           react to these ids only
 *   data-live-min-ms="1000"     refresh this region at most this often
 *
 * After a dropped connection it reconnects with backoff and re-reads every region, since the
 * channel layer may have dropped notices meanwhile. No inline scripts, no eval.
 */
(function () {
  "use strict";

  var MIN_INTERVAL = 500;
  var PREFIX = { tasks: "task-", workers: "worker-" };
  var wsPath = document.body && document.body.getAttribute("data-ws-url");
  var statusEl = document.getElementById("live-status");
  var changed = { tasks: new Set(), workers: new Set() };
  var fullRefresh = false;
  var timer = null;
  var inFlight = false;
  var lastFlush = 0;
  var attempts = 0;
  var everOpened = false;

  function setState(state, text) {
    if (statusEl) {
      statusEl.setAttribute("data-state", state);
      statusEl.textContent = text;
    }
  }

  function fetchHtml(url) {
    return fetch(url, {
      headers: { "HX-Request": "true", Accept: "text/html" },
      credentials: "same-origin",
      cache: "no-store",
    }).then(function (response) {
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.text();
    });
  }

  function parse(html) {
    var template = document.createElement("template");
    template.innerHTML = html;
    return template.content;
  }

  function checkedBoxes(root) {
    var out = new Set();
    root.querySelectorAll("input[type=checkbox]").forEach(function (box) {
      if (box.checked) out.add(box.name + "=" + box.value);
    });
    return out;
  }

  /* Swap in the fresh element, keeping the user's ticked boxes and keyboard focus. */
  function replace(current, fresh) {
    var active = document.activeElement;
    var focusedId = active && current.contains(active) ? active.id : null;
    var ticked = checkedBoxes(current);
    current.replaceWith(fresh);
    fresh.querySelectorAll("input[type=checkbox]").forEach(function (box) {
      if (ticked.has(box.name + "=" + box.value)) box.checked = true;
    });
    if (window.htmx) window.htmx.process(fresh);
    if (focusedId) {
      var again = document.getElementById(focusedId);
      if (again) again.focus();
    }
  }

  function refreshRegion(region) {
    region.liveLast = Date.now();
    return fetchHtml(region.getAttribute("data-live-url")).then(function (html) {
      var fresh = parse(html).getElementById(region.id);
      if (fresh && document.body.contains(region)) replace(region, fresh);
    });
  }

  /* Resolves true when a row on the page was not returned (gone, or no longer visible). */
  function refreshRows(region, kind, ids) {
    var url = region.getAttribute("data-live-rows-url");
    var prefix = PREFIX[kind];
    region.liveLast = Date.now();
    url += (url.indexOf("?") < 0 ? "?" : "&") + "ids=" + ids.join(",");
    return fetchHtml(url).then(function (html) {
      var fragment = parse(html);
      var missing = false;
      ids.forEach(function (id) {
        var current = document.getElementById(prefix + id);
        var fresh = fragment.getElementById(prefix + id);
        if (current && fresh) replace(current, fresh);
        else if (current) missing = true;
      });
      return missing;
    });
  }

  function updateRegion(region, notices, all) {
    if (all) return refreshRegion(region);
    var kinds = (region.getAttribute("data-live") || "").split(/\s+/).filter(Boolean);
    var only = region.getAttribute("data-live-ids");
    var onlyIds = only ? only.split(",") : null;
    var rowsUrl = region.getAttribute("data-live-rows-url");
    var rowKind = region.getAttribute("data-live-kind") || kinds[0];
    var reloadOnNew = region.getAttribute("data-live-new") === "reload";
    var relevant = [];
    var reload = false;
    var rowIds = [];
    kinds.forEach(function (kind) {
      var ids = (notices[kind] || []).filter(function (id) {
        return !onlyIds || onlyIds.indexOf(String(id)) >= 0;
      });
      if (!ids.length) return;
      relevant.push([kind, ids]);
      if (!rowsUrl || kind !== rowKind) {
        reload = true;
        return;
      }
      ids.forEach(function (id) {
        if (document.getElementById(PREFIX[kind] + id)) rowIds.push(id);
        else if (reloadOnNew) reload = true;
      });
    });
    if (!relevant.length) return Promise.resolve();
    var minMs = parseInt(region.getAttribute("data-live-min-ms") || "0", 10);
    if (minMs && region.liveLast && Date.now() - region.liveLast < minMs) {
      // Too soon for this region: keep the notices for a later pass.
      relevant.forEach(function (pair) {
        pair[1].forEach(function (id) { changed[pair[0]].add(id); });
      });
      return Promise.resolve();
    }
    if (reload) return refreshRegion(region);
    if (!rowIds.length) return Promise.resolve();
    return refreshRows(region, rowKind, rowIds).then(function (missing) {
      if (missing && reloadOnNew) return refreshRegion(region);
      return undefined;
    });
  }

  function pending() {
    return fullRefresh || changed.tasks.size > 0 || changed.workers.size > 0;
  }

  function schedule() {
    if (timer !== null) return;
    var wait = Math.max(0, lastFlush + MIN_INTERVAL - Date.now());
    timer = setTimeout(flush, wait);
  }

  function flush() {
    timer = null;
    if (inFlight) return; // rescheduled when the running pass ends
    var notices = { tasks: Array.from(changed.tasks), workers: Array.from(changed.workers) };
    var all = fullRefresh;
    changed.tasks.clear();
    changed.workers.clear();
    fullRefresh = false;
    lastFlush = Date.now();
    inFlight = true;
    var regions = Array.prototype.slice.call(document.querySelectorAll("[data-live]"));
    var jobs = regions.map(function (region) {
      return updateRegion(region, notices, all).catch(function () {
        fullRefresh = true; // a failed read is retried as a full re-read
      });
    });
    Promise.all(jobs).then(function () {
      inFlight = false;
      if (pending()) schedule();
    });
  }

  function connect() {
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + window.location.host + wsPath);
    setState("connecting", everOpened ? "reconnecting…" : "connecting…");
    socket.addEventListener("open", function () {
      var reconnected = everOpened;
      everOpened = true;
      attempts = 0;
      setState("live", "live");
      document.body.setAttribute("data-live-connected", "true");
      // Notices sent while we were away (or before we first connected) are lost: re-read.
      if (reconnected || window.performance.now() > 3000) {
        fullRefresh = true;
        schedule();
      }
    });
    socket.addEventListener("message", function (event) {
      var message;
      try {
        message = JSON.parse(event.data);
      } catch (error) {
        return;
      }
      var set = changed[message.type];
      if (!set || !Array.isArray(message.ids)) return;
      message.ids.forEach(function (id) { set.add(id); });
      schedule();
    });
    socket.addEventListener("close", function () {
      document.body.setAttribute("data-live-connected", "false");
      setState("offline", "reconnecting…");
      var delay = Math.min(10000, 500 * Math.pow(2, attempts));
      attempts += 1;
      setTimeout(connect, delay * (0.75 + Math.random() * 0.5));
    });
  }

  /* "Select all" boxes tick every box of the same name. */
  document.addEventListener("change", function (event) {
    var box = event.target;
    if (!box || !box.hasAttribute || !box.hasAttribute("data-select-all")) return;
    var name = box.getAttribute("data-select-all");
    document.querySelectorAll('input[type=checkbox][name="' + name + '"]').forEach(function (other) {
      other.checked = box.checked;
    });
  });

  if (wsPath && "WebSocket" in window) connect();
  else setState("offline", "not live");
})();
