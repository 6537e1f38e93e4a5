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
  var htmxBusy = 0; // htmx requests in flight: their swap targets must stay in the page

  /* While the user's own htmx request runs, live swaps wait (they would detach its target). */
  document.addEventListener("htmx:beforeRequest", function (event) {
    var xhr = event.detail && event.detail.xhr;
    if (!xhr) return;
    htmxBusy += 1;
    xhr.addEventListener("loadend", function () {
      htmxBusy = Math.max(0, htmxBusy - 1);
      if (pending()) schedule();
    });
  });

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

  function controlKey(control) {
    return (control.id || control.name) + "=" + (control.type === "checkbox" || control.type === "radio" ? control.value : "");
  }

  /* What the user changed in the region's form fields (vs. what the server rendered). */
  function userEdits(root) {
    var edits = new Map();
    root.querySelectorAll("input, select, textarea").forEach(function (control) {
      if (control.type === "checkbox" || control.type === "radio") {
        if (control.checked !== control.defaultChecked) edits.set(controlKey(control), control.checked);
      } else if (control.tagName === "SELECT") {
        var changed = Array.prototype.some.call(control.options, function (option) {
          return option.selected !== option.defaultSelected;
        });
        if (changed) edits.set(controlKey(control), control.value);
      } else if (control.type !== "hidden" && control.type !== "file" && control.value !== control.defaultValue) {
        edits.set(controlKey(control), control.value);
      }
    });
    return edits;
  }

  /* Swap in the fresh element, keeping the user's unsent edits (ticked boxes, typed values)
     and keyboard focus. */
  function replace(current, fresh) {
    var active = document.activeElement;
    var focusedId = active && current.contains(active) ? active.id : null;
    var edits = userEdits(current);
    current.replaceWith(fresh);
    if (edits.size) {
      fresh.querySelectorAll("input, select, textarea").forEach(function (control) {
        var key = controlKey(control);
        if (!edits.has(key)) return;
        if (control.type === "checkbox" || control.type === "radio") control.checked = edits.get(key);
        else control.value = edits.get(key);
      });
    }
    if (window.htmx) window.htmx.process(fresh);
    if (focusedId) {
      var again = document.getElementById(focusedId);
      if (again) again.focus();
    }
  }

  function refreshRegion(region) {
    region.liveLast = Date.now();
    return fetchHtml(region.getAttribute("data-live-url")).then(function (html) {
      if (htmxBusy) {
        fullRefresh = true; // read again once the user's request is done
        return;
      }
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
      if (htmxBusy) {
        ids.forEach(function (id) { changed[kind].add(id); });
        return false;
      }
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
    if (inFlight || htmxBusy) return; // rescheduled when the running pass / request ends
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
