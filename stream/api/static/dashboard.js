// The Customer Pulse dashboard: polls GET /v1/dashboard every 5 s and draws it with Chart.js.
// The API token comes from the URL fragment (#token=...) or the form, kept for this tab only.
"use strict";

const PALETTE = ["#3366cc", "#dc3912", "#ff9900", "#109618", "#990099", "#0099c6", "#dd4477", "#66aa00",
                 "#b82e2e", "#316395", "#994499", "#22aa99"];
const charts = {};
let latest = null;

function token() {
  const fromUrl = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromUrl) {
    sessionStorage.setItem("pulse-token", fromUrl);
    history.replaceState(null, "", location.pathname);
  }
  return sessionStorage.getItem("pulse-token") || "";
}

function draw(id, config) {
  const canvas = document.getElementById(id);
  if (charts[id]) {
    charts[id].data = config.data;
    charts[id].update("none");
  } else {
    charts[id] = new Chart(canvas, {...config, options: {animation: false, maintainAspectRatio: false,
                                                         ...(config.options || {})}});
  }
  const points = config.data.datasets.reduce((n, d) => n + d.data.filter(v => v !== null).length, 0);
  canvas.dataset.points = String(points);
}

function throughput(pipeline) {
  const samples = pipeline ? pipeline.samples : [];
  const labels = samples.map(s => s.at.slice(11, 19));
  const groups = samples.length ? Object.keys(samples[samples.length - 1].lag) : [];
  draw("throughput", {type: "line", data: {labels, datasets: [
    {label: "events/s", data: samples.map(s => s.events_per_s), borderColor: PALETTE[0], yAxisID: "y"},
    ...groups.map((g, i) => ({label: `lag ${g}`, data: samples.map(s => s.lag[g] ?? null),
                              borderColor: PALETTE[i + 1], yAxisID: "lag"}))]},
    options: {scales: {y: {beginAtZero: true}, lag: {position: "right", beginAtZero: true}}}});
}

function deadLetters(pipeline) {
  const counts = pipeline ? pipeline.dead_letters : {};
  draw("deadletters", {type: "bar", data: {labels: Object.keys(counts),
    datasets: [{label: "dead letters", data: Object.values(counts), backgroundColor: PALETTE[1]}]},
    options: {indexAxis: "y", plugins: {legend: {display: false}}}});
}

function segments(history) {
  draw("segments", {type: "line", data: {labels: history.days, datasets: Object.entries(history.sizes).map(
    ([name, sizes], i) => ({label: name, data: sizes, borderColor: PALETTE[i % PALETTE.length],
                            backgroundColor: PALETTE[i % PALETTE.length] + "55", fill: true, pointRadius: 0}))},
    options: {scales: {y: {stacked: true, beginAtZero: true}}, plugins: {legend: {position: "right"}}}});
}

function migration(matrices) {
  const matrix = matrices[document.getElementById("window").value] || {};
  const from = Object.keys(matrix).sort();
  const to = [...new Set(from.flatMap(f => Object.keys(matrix[f])))].sort();
  const max = Math.max(1, ...from.flatMap(f => Object.values(matrix[f])));
  const cell = n => n ? `<td style="background: rgba(51,102,204,${(0.1 + 0.8 * n / max).toFixed(2)})">${n}</td>`
                      : "<td></td>";
  const escape = s => s.replace(/[&<>"]/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;"}[c]));
  const html = from.length ? `<table class="matrix"><tr><th></th>${to.map(t => `<th>${escape(t)}</th>`).join("")}</tr>` +
    from.map(f => `<tr><th>${escape(f || "new")}</th>${to.map(t => cell(matrix[f][t] || 0)).join("")}</tr>`).join("") +
    "</table>" : "<p class=\"note\">no segment moves in this window</p>";
  const target = document.getElementById("migration");
  target.innerHTML = html;
  target.dataset.rows = String(from.length);
}

function risk(data) {
  const labels = data.bins.map((_, i) => `${(i / data.bins.length).toFixed(1)}–${((i + 1) / data.bins.length).toFixed(1)}`);
  draw("risk", {type: "bar", data: {labels, datasets: [{label: "customers", data: data.bins,
    backgroundColor: data.bins.map((_, i) => i >= 7 ? PALETTE[1] : i >= 4 ? PALETTE[2] : PALETTE[3])}]},
    options: {plugins: {legend: {display: false}}}});
  const bands = Object.entries(data.bands).map(([band, n]) => `${band} ${n}`).join(", ");
  document.getElementById("risknote").textContent = `churn probability of ${data.sampled} customers (${bands})`;
}

function value(data) {
  const money = x => x.toLocaleString("en", {maximumFractionDigits: 0});
  const labels = data.bins.map((_, i) => i === 0 ? `< ${money(data.edges[0])}`
    : i === data.edges.length ? `${money(data.edges[i - 1])}+` : `${money(data.edges[i - 1])}–${money(data.edges[i])}`);
  draw("value", {type: "bar", data: {labels, datasets: [{label: "customers", data: data.bins,
    backgroundColor: PALETTE[5]}]}, options: {plugins: {legend: {display: false}}}});
  const potential = Object.entries(data.potential).map(([band, n]) => `${band} ${n}`).join(", ");
  document.getElementById("valuenote").textContent = `predicted spend within the horizon of ${data.predicted} of ` +
    `${data.sampled} customers, ${money(data.total)} in all` + (potential ? ` (potential: ${potential})` : "");
}

function model(pipeline) {
  const records = pipeline ? pipeline.monitoring : [];
  const quality = records.filter(r => r.kind === "model_quality");
  const drift = records.filter(r => r.kind !== "model_quality" && r.kind !== "trainer_error");
  const labels = quality.map(r => r.sent_at.slice(0, 19).replace("T", " "));
  const at = r => { // a drift record on the quality record sent next after it
    const i = quality.findIndex(q => q.sent_at >= r.sent_at);
    return i < 0 ? quality.length - 1 : i;
  };
  const marks = quality.map(() => null);
  drift.forEach(r => { if (quality.length) marks[at(r)] = 0.5; });
  draw("model", {type: "line", data: {labels, datasets: [
    {label: "model AUC", data: quality.map(r => r.roc_auc ?? null), borderColor: PALETTE[0]},
    {label: "heuristic AUC", data: quality.map(r => r.heuristic_roc_auc ?? null), borderColor: PALETTE[2]},
    {label: "drift", data: marks, type: "scatter", pointStyle: "triangle", pointRadius: 8,
     backgroundColor: PALETTE[1], showLine: false}]},
    options: {scales: {y: {min: 0.4, max: 1}}}});
}

function alerts(items) {
  const list = document.getElementById("alerts");
  list.replaceChildren(...items.map(a => {
    const li = document.createElement("li");
    li.className = a.severity;
    li.textContent = `${a.event_time.slice(0, 10)} ${a.kind} ${a.customer_id}: ${a.reason}`;
    return li;
  }));
  list.dataset.items = String(items.length);
}

async function refresh() {
  const headers = token() ? {Authorization: `Bearer ${token()}`} : {};
  let answer;
  try {
    answer = await fetch("/v1/dashboard", {headers});
  } catch (error) {
    document.getElementById("status").textContent = `the API did not answer (${error})`;
    return;
  }
  if (answer.status === 401) {
    document.getElementById("login").classList.remove("hidden");
    document.getElementById("panels").classList.add("hidden");
    document.getElementById("status").textContent = "a token is needed";
    return;
  }
  if (!answer.ok) {
    document.getElementById("status").textContent = `the API answered ${answer.status}`;
    return;
  }
  latest = await answer.json();
  document.getElementById("login").classList.add("hidden");
  document.getElementById("panels").classList.remove("hidden");
  const customers = Object.values(latest.segments).reduce((a, b) => a + b, 0);
  const kafka = latest.pipeline && latest.pipeline.error ? ` · Kafka: ${latest.pipeline.error}` : "";
  document.getElementById("status").textContent = `${customers} customers in segments${kafka}`;
  document.getElementById("asof").textContent = latest.as_of_event_time
    ? `event time ${latest.as_of_event_time.slice(0, 16).replace("T", " ")}` : "";
  throughput(latest.pipeline);
  deadLetters(latest.pipeline);
  segments(latest.history);
  migration(latest.migration);
  risk(latest.risk);
  value(latest.value);
  model(latest.pipeline);
  alerts(latest.alerts);
  document.body.dataset.ready = "true";
}

document.getElementById("token-form").addEventListener("submit", event => {
  event.preventDefault();
  sessionStorage.setItem("pulse-token", document.getElementById("token").value.trim());
  refresh();
});
document.getElementById("window").addEventListener("change", () => latest && migration(latest.migration));
refresh();
setInterval(refresh, 5000);
