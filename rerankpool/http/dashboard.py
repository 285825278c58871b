# ruff: noqa: E501  (PAGE is an HTML page, its lines as a browser reads them)
"""``GET /dashboard``: the pool live in a browser. One page, no build step, no library, works offline.

The page fetches ``/dashboard/data`` (the broker's ``stats`` with its history) every second
and draws it: throughput, latency percentiles, the stage breakdown and the queue as SVG lines;
hosts (CPU, steal, memory, GPUs), workers (flagged silent or slow by the broker), models and
recent errors as tables. A broker that does not answer shows as such, with the last figures
greyed out. Elements carry ids and ``data-`` attributes so that a test (or a script) can read
the figures back.
"""

from __future__ import annotations

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>rerankpool</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{display:flex;gap:16px;align-items:center;padding:10px 18px;background:#1d2330;color:#fff}
header h1{font-size:18px;margin:0}#status{padding:2px 10px;border-radius:10px;font-weight:600}
.ok{background:#1f9d55}.down{background:#cc1f1a}.warn{background:#d69e2e}
main{padding:14px 18px;display:grid;gap:14px}
.tiles{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:10px}
.tile{background:#fff;border-radius:8px;padding:10px 12px;box-shadow:0 1px 2px #0002}
.tile b{display:block;font-size:22px}.tile span{color:#667}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:10px}
.chart{background:#fff;border-radius:8px;padding:8px 12px;box-shadow:0 1px 2px #0002}
.chart h2,section h2{font-size:14px;margin:2px 0 6px}svg{width:100%;height:140px}
.legend span{margin-right:12px;font-size:12px}.legend i{display:inline-block;width:10px;height:3px;margin-right:4px;vertical-align:middle}
section{background:#fff;border-radius:8px;padding:8px 12px;box-shadow:0 1px 2px #0002;overflow-x:auto}
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:3px 8px;border-bottom:1px solid #eee;white-space:nowrap}
tr[data-state=silent] td{background:#fde8e8}tr[data-state=slow] td{background:#fdf6e3}
.stale{opacity:.45}
</style></head>
<body data-ready="0">
<header><h1>rerankpool</h1><span id="status" class="warn">connecting</span><span id="summary"></span></header>
<main id="main">
<div class="tiles">
 <div class="tile"><span>pairs/s (10 s)</span><b id="pairs-per-s">-</b></div>
 <div class="tile"><span>requests/s (10 s)</span><b id="requests-per-s">-</b></div>
 <div class="tile"><span>latency p50 / p95 / p99</span><b id="latency">-</b></div>
 <div class="tile"><span>queued pairs</span><b id="queued-pairs">-</b></div>
 <div class="tile"><span>requests in flight</span><b id="in-flight">-</b></div>
 <div class="tile"><span>workers live / lost</span><b><span id="workers-live">-</span> / <span id="workers-lost">-</span></b></div>
 <div class="tile"><span>pairs scored</span><b id="pairs-scored">-</b></div>
 <div class="tile"><span>padding (since start)</span><b id="padding">-</b></div>
</div>
<div class="charts">
 <div class="chart"><h2>Throughput, pairs/s</h2><svg id="chart-throughput"></svg><div class="legend" id="legend-throughput"></div></div>
 <div class="chart"><h2>Request latency, ms</h2><svg id="chart-latency"></svg><div class="legend" id="legend-latency"></div></div>
 <div class="chart"><h2>Where a batch's time goes, ms (mean)</h2><svg id="chart-stages"></svg><div class="legend" id="legend-stages"></div></div>
 <div class="chart"><h2>Queue, pairs</h2><svg id="chart-queue"></svg><div class="legend" id="legend-queue"></div></div>
</div>
<section><h2>Hosts</h2><table id="hosts"></table></section>
<section><h2>Workers</h2><table id="workers"></table></section>
<section><h2>Models</h2><table id="models"></table></section>
<section><h2>Recent errors</h2><table id="errors"></table></section>
</main>
<script>
const COLORS = ["#2b6cb0", "#d69e2e", "#c53030", "#2f855a", "#6b46c1"];
const $ = id => document.getElementById(id);
const fmt = (v, d = 1) => v === null || v === undefined ? "-" : Number(v).toFixed(d);
const esc = s => String(s).replace(/[&<>"]/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c]));

function chart(id, rows, series) {
  const svg = $("chart-" + id), w = svg.clientWidth || 400, h = 140, pad = 28;
  const values = series.flatMap(s => rows.map(r => r[s.key]).filter(v => v !== null && v !== undefined));
  const top = Math.max(1e-9, ...values, 0) * 1.1;
  const x = i => pad + (w - pad - 4) * (rows.length > 1 ? i / (rows.length - 1) : 1);
  const y = v => h - 16 - (h - 24) * v / top;
  let out = `<line x1="${pad}" y1="${h - 16}" x2="${w}" y2="${h - 16}" stroke="#ccc"/>` +
            `<text x="2" y="12" font-size="10" fill="#667">${fmt(top, top < 10 ? 2 : 0)}</text>` +
            `<text x="2" y="${h - 18}" font-size="10" fill="#667">0</text>`;
  series.forEach((s, k) => {
    const pts = rows.map((r, i) => r[s.key] === null || r[s.key] === undefined ? null : `${x(i)},${y(r[s.key])}`)
                    .filter(p => p !== null).join(" ");
    out += `<polyline fill="none" stroke="${COLORS[k]}" stroke-width="1.8" points="${pts}"/>`;
  });
  svg.innerHTML = out;
  $("legend-" + id).innerHTML = series.map((s, k) => `<span><i style="background:${COLORS[k]}"></i>${s.label}</span>`).join("");
}

function table(id, head, rows, attrs) {
  $(id).innerHTML = "<tr>" + head.map(h => `<th>${h}</th>`).join("") + "</tr>" +
    rows.map((r, i) => `<tr ${attrs ? attrs(i) : ""}>` + r.map(c => `<td>${esc(c)}</td>`).join("") + "</tr>").join("");
}

function draw(s) {
  window.lastStats = s;  // what was drawn, for a script or a test to read back
  const rows = s.history.rows, last = rows[rows.length - 1] || {workers: {}, models: {}}, recent = s.recent;
  $("pairs-per-s").textContent = fmt(recent.pairs_per_s);
  $("requests-per-s").textContent = fmt(recent.requests_per_s);
  $("latency").textContent = `${fmt(recent.latency_p50_ms)} / ${fmt(recent.latency_p95_ms)} / ${fmt(recent.latency_p99_ms)} ms`;
  $("queued-pairs").textContent = s.queue_pairs;
  $("in-flight").textContent = s.requests_in_flight;
  $("workers-live").textContent = s.workers.length;
  $("workers-lost").textContent = s.workers_lost;
  $("pairs-scored").textContent = s.pairs_scored;
  const m = s.metrics, padded = m.padded_tokens;
  $("padding").textContent = padded ? fmt(100 * (padded - m.real_tokens) / padded) + " %" : "-";
  $("summary").textContent = `${s.host}, up ${fmt(s.uptime_s / 60, 1)} min, v${s.version}` +
    (s.default_model ? `, default model ${s.default_model}` : "");
  chart("throughput", rows, [{key: "pairs_per_s", label: "pairs/s"}, {key: "requests_per_s", label: "requests/s"}]);
  chart("latency", rows, [{key: "latency_p50_ms", label: "p50"}, {key: "latency_p95_ms", label: "p95"},
                          {key: "latency_p99_ms", label: "p99"}]);
  chart("stages", rows, [{key: "queue_ms", label: "queue"}, {key: "tokenize_ms", label: "tokenize"},
                         {key: "inference_ms", label: "inference"}]);
  chart("queue", rows, [{key: "queued_pairs", label: "queued pairs"}, {key: "requests_in_flight", label: "requests in flight"}]);
  const hosts = Object.entries(s.history.hosts);
  table("hosts", ["host", "CPU %", "steal %", "memory MiB", "GPUs (util %, MiB)", "sample age s"], hosts.map(([name, h]) => {
    const gpus = Object.keys(h).filter(k => /^gpu\\.\\d+\\.util_pct$/.test(k)).map(k => {
      const i = k.split(".")[1];
      return `${i}: ${fmt(h[k], 0)} %, ${fmt(h[`gpu.${i}.mem_used_mb`], 0)}/${fmt(h[`gpu.${i}.mem_total_mb`], 0)}`;
    });
    return [name, fmt(h["system.cpu_pct"]), fmt(h["system.cpu_steal_pct"]),
            `${fmt(h["system.mem_used_mb"], 0)} / ${fmt(h["system.mem_total_mb"], 0)}`, gpus.join("; ") || "none",
            fmt(Date.now() / 1000 - h.t)];
  }));
  const workers = Object.entries(last.workers);
  table("workers", ["worker", "model", "state", "in flight", "pairs/s", "batches/s", "p95 batch ms", "errors", "heartbeat age s"],
    workers.map(([name, w]) => [name, w.model, w.state, w.in_flight, fmt(w.pairs_per_s), w.batches, fmt(w.batch_p95_ms),
                               w.errors, fmt(w.heartbeat_age_s)]),
    i => `data-worker="${esc(workers[i][0])}" data-state="${workers[i][1].state}"`);
  table("models", ["model", "default", "live workers", "queued pairs", "pairs scored", "label"],
    s.models.map(mm => [mm.name, mm.default ? "yes" : "", mm.workers, mm.queued_pairs, mm.pairs_scored, mm.label]),
    i => `data-model="${esc(s.models[i].name)}"`);
  table("errors", ["time", "code", "message"], s.history.errors.slice().reverse().map(e =>
    [new Date(e.t * 1000).toLocaleTimeString(), e.code, e.message]));
}

async function refresh() {
  let reply;
  try { reply = await (await fetch("dashboard/data", {cache: "no-store"})).json(); }
  catch (err) { reply = {ok: false, error: "the gateway does not answer: " + err}; }
  const status = $("status");
  if (reply.ok) {
    draw(reply.stats);
    const healthy = reply.stats.workers.length > 0;
    status.textContent = healthy ? "serving" : "no workers";
    status.className = healthy ? "ok" : "warn";
    $("main").classList.remove("stale");
    document.body.dataset.updated = String(reply.stats.uptime_s);
    document.body.dataset.ready = "1";
  } else {
    status.textContent = "broker unreachable";
    status.className = "down";
    status.title = reply.error;
    $("summary").textContent = reply.error;
    $("main").classList.add("stale");
    document.body.dataset.ready = "down";
  }
}
refresh();
setInterval(refresh, 1000);
</script></body></html>
"""
