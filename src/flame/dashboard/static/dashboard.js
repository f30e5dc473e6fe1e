// Flame dashboard: keeps a server-rendered page current from the server-sent events of its topic.
// Elements opt in: data-live="a.b" (text), data-bar="a.b" (a progress bar of task counts),
// canvas[data-chart="series"][data-lines="x,y"] (line charts); #sessions and #failures are
// table bodies redrawn from the payload's lists. No library, no network but this page's server.
(function () {
  "use strict";
  var topic = document.body.getAttribute("data-topic");
  if (!topic || !window.EventSource) return;
  var STATES = ["succeed", "failed", "cancelled", "running", "pending"];
  var COLORS = ["#2f7de1", "#e8833a", "#3aa757", "#a05ad1", "#d64545"];

  function get(data, path) {
    return path.split(".").reduce(function (v, k) { return v == null ? v : v[k]; }, data);
  }
  function esc(text) {
    return String(text == null ? "\u2013" : text).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }
  function path() {
    return "/" + Array.prototype.map.call(arguments, encodeURIComponent).join("/");
  }
  function when(ms) {
    return new Date(ms).toISOString().replace("T", " ").replace("Z", "");
  }

  function bar(el, counts) {
    if (!counts) return;
    var total = Math.max(1, counts.total || 0);
    var segs = el.querySelectorAll(".seg");
    STATES.forEach(function (s, i) { if (segs[i]) segs[i].style.width = (100 * (counts[s] || 0) / total) + "%"; });
    var label = el.querySelector(".label");
    if (label) label.textContent = (counts.succeed + counts.failed + counts.cancelled) + "/" + (counts.total || 0);
  }
  function barHtml(counts) {
    var total = Math.max(1, counts.total || 0);
    var segs = STATES.map(function (s) {
      return '<span class="seg ' + s + '" style="width:' + (100 * (counts[s] || 0) / total) + '%"></span>';
    }).join("");
    var done = counts.succeed + counts.failed + counts.cancelled;
    return '<div class=bar>' + segs + '<span class=label>' + done + "/" + counts.total + "</span></div>";
  }

  function rows(tbody, items, cells, empty, columns) {
    if (!tbody) return;
    var html = !items.length ? '<tr class=empty><td colspan="' + columns + '">' + empty + "</td></tr>" :
      items.map(function (item) {
        return "<tr>" + cells(item).map(function (c) { return "<td>" + c + "</td>"; }).join("") + "</tr>";
      }).join("");
    if (tbody.lastHtml === html) return;  // redraw only what changed: links stay clickable
    tbody.innerHTML = html;
    tbody.lastHtml = html;
  }
  function sessionCells(s) {
    var c = s.counts;
    return ['<a href="' + path("sessions", s.id) + '">' + esc(s.id) + "</a>",
      '<a href="' + path("applications", s.application) + '">' + esc(s.application) + "</a>",
      esc(s.state), barHtml(c), c.pending, c.running, c.succeed, c.failed, s.executors];
  }
  function failureCells(f) {
    return [esc(when(f.time)), '<a href="' + path("sessions", f.session) + '">' + esc(f.session) + "</a>",
      '<a href="' + path("sessions", f.session, "tasks", f.task) + '">' + esc(f.task) + "</a>",
      "<span class=message>" + esc(f.message) + "</span>"];
  }

  function executorCells(x) {
    return ['<a href="' + path("executors", x.id) + '">' + esc(x.id) + "</a>",
      '<a href="' + path("nodes", x.node) + '">' + esc(x.node) + "</a>", esc(x.state), x.inflight, esc(when(x.created))];
  }

  function chart(canvas, series) {
    var names = (canvas.getAttribute("data-lines") || "").split(",");
    var ctx = canvas.getContext("2d");
    var w = canvas.width, h = canvas.height, pad = 28;
    ctx.clearRect(0, 0, w, h);
    var times = series.time || [];
    var max = 0;
    names.forEach(function (n) { (series[n] || []).forEach(function (v) { if (v != null && v > max) max = v; }); });
    max = max > 0 ? max * 1.1 : 1;
    ctx.strokeStyle = "#e3e6ea"; ctx.fillStyle = "#6b7280"; ctx.font = "11px sans-serif"; ctx.lineWidth = 1;
    for (var g = 0; g <= 2; g++) {
      var y = pad / 2 + (h - pad) * g / 2;
      ctx.beginPath(); ctx.moveTo(pad + 14, y); ctx.lineTo(w - 4, y); ctx.stroke();
      ctx.fillText(fmt(max * (1 - g / 2)), 2, y + 4);
    }
    if (times.length < 2) { ctx.fillText("collecting\u2026", w / 2 - 30, h / 2); return; }
    var t0 = times[0], span = Math.max(1, times[times.length - 1] - t0);
    names.forEach(function (n, i) {
      var values = series[n] || [];
      ctx.strokeStyle = COLORS[i % COLORS.length]; ctx.lineWidth = 2; ctx.beginPath();
      var started = false;
      values.forEach(function (v, j) {
        if (v == null) { started = false; return; }
        var x = pad + 14 + (w - pad - 18) * (times[j] - t0) / span;
        var y = pad / 2 + (h - pad) * (1 - v / max);
        if (started) ctx.lineTo(x, y); else { ctx.moveTo(x, y); started = true; }
      });
      ctx.stroke();
      ctx.fillStyle = COLORS[i % COLORS.length];
      ctx.fillText(n.replace("_", " "), w - 70 * (names.length - i), h - 4);
    });
    ctx.fillStyle = "#6b7280";
    ctx.fillText(Math.round(span / 1000) + " s", pad + 14, h - 4);
  }
  function fmt(v) { return v >= 1000 ? (v / 1000).toFixed(1) + "k" : v >= 10 ? Math.round(v) : v.toFixed(1); }

  function apply(data) {
    if (data.gone) { document.getElementById("live").className = "live gone"; return; }
    document.querySelectorAll("[data-live]").forEach(function (el) {
      var v = get(data, el.getAttribute("data-live"));
      if (v !== undefined) el.textContent = v == null ? "\u2013" : v;
    });
    document.querySelectorAll("[data-bar]").forEach(function (el) { bar(el, get(data, el.getAttribute("data-bar"))); });
    document.querySelectorAll("canvas[data-chart]").forEach(function (el) {
      var s = get(data, el.getAttribute("data-chart")); if (s) chart(el, s);
    });
    if (data.sessions) rows(document.getElementById("sessions"), data.sessions, sessionCells, "no open session", 9);
    if (data.executors && data.session) rows(document.getElementById("executors"), data.executors, executorCells, "no executor", 5);
    if (data.failures) rows(document.getElementById("failures"), data.failures, failureCells, "no failed task", 4);
    document.body.setAttribute("data-updated", String(data.time));
    document.body.setAttribute("data-points", String(data.series ? data.series.time.length : 0));
  }

  var source = new EventSource("/events?topic=" + encodeURIComponent(topic));
  var dot = document.getElementById("live");
  source.onmessage = function (msg) { dot.className = "live on"; apply(JSON.parse(msg.data)); };
  source.onerror = function () { dot.className = "live off"; };
})();
