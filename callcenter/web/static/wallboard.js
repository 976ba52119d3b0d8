import {
  api, clockTime, duration, el, label, liveSocket, percent, replaceChildren, requireSession,
  signOut,
} from "/static/common.js";

const $ = (id) => document.getElementById(id);
let agents = [];
// This supervisor's own listen / whisper / barge session (her softphone rings), if any.
let spy = null;
// Whether this deployment serves supervision (GET /api/me's features); no buttons if not.
let supervision = false;
const SPY_MODES = ["listen", "whisper", "barge"];

// Thresholds at which a figure turns amber / red on the wall.
const WAIT_WARN = 20;
const WAIT_ALARM = 60;

function waitClass(seconds) {
  if (seconds >= WAIT_ALARM) return "alarm";
  if (seconds >= WAIT_WARN) return "warn";
  return "";
}

function queueRow(figures, node, several) {
  const a = figures.agents || {};
  const name = figures.queue === null ? "All queues" : figures.queue;
  return el("tr", { class: figures.queue === null ? "overall" : "" },
    el("th", { scope: "row" }, several ? `${name} (${node})` : name),
    el("td", { class: `big ${figures.waiting ? "warn" : ""}` }, figures.waiting),
    el("td", { class: waitClass(figures.longest_wait) }, duration(figures.longest_wait)),
    el("td", {}, a.available ?? "—"),
    el("td", {}, a.on_call ?? "—"),
    el("td", {}, a.wrap_up ?? "—"),
    el("td", {}, a.paused ?? "—"),
    el("td", {}, figures.offered),
    el("td", {}, figures.answered),
    el("td", {}, figures.abandoned),
    el("td", {}, percent(figures.service_level)),
    el("td", {}, percent(figures.abandon_rate)),
    el("td", {}, duration(figures.average_speed_of_answer)),
    el("td", {}, duration(figures.average_handle_time)));
}

function renderQueues(nodes) {
  const several = nodes.length > 1;
  const rows = [];
  let waiting = 0;
  for (const snapshot of nodes) {
    for (const figures of snapshot.queues || []) rows.push(queueRow(figures, snapshot.node, several));
    if (snapshot.overall) {
      rows.push(queueRow(snapshot.overall, snapshot.node, several));
      waiting += snapshot.overall.waiting || 0;
    }
  }
  replaceChildren($("queue-rows"), ...rows);
  const available = agents.filter((a) => a.state === "available").length;
  $("totals").textContent = `${waiting} waiting · ${available} available`;
  drawChart(nodes);
}

function renderAgents() {
  const now = Date.now() / 1000;
  replaceChildren($("agent-rows"), ...agents.filter((a) => a.state !== "logged_out" || a.rostered).map((a) =>
    el("tr", {},
      el("th", { scope: "row" }, a.display_name),
      el("td", {}, a.role),
      el("td", {}, el("span", { class: `badge state-${a.state}` }, label(a.state))),
      el("td", {}, duration(now - a.since)),
      el("td", {}, label(a.reason)),
      el("td", { class: `phone-${a.softphone}` }, label(a.softphone)),
      el("td", { class: "token" }, a.call ? a.call.caller : ""),
      el("td", {}, spyButtons(a)))));
}

function spyButtons(agent) {
  const mine = spy && spy.agent === agent.username;
  if (!supervision || (agent.state !== "on_call" && !mine)) return "";
  const buttons = SPY_MODES.map((mode) => el("button", {
    type: "button", class: `quiet${mine && spy.mode === mode ? " active" : ""}`,
    "data-spy-agent": agent.username, "data-spy-mode": mode,
    disabled: Boolean(spy) && !mine,
  }, label(mode)));
  if (mine) {
    buttons.push(el("button", { type: "button", "data-spy-agent": agent.username,
      "data-spy-mode": "stop" }, "Stop"));
  }
  return el("span", { class: "spy-buttons" }, ...buttons);
}

function renderSpy() {
  $("spy-status").textContent = spy
    ? `${label(spy.mode)} on ${spy.agent}'s call${spy.connected ? "" : ": answer your phone"}.`
    : "";
  renderAgents();
}

async function supervise(agent, mode) {
  $("spy-error").hidden = true;
  try {
    if (mode === "stop") {
      await api("DELETE", "/api/supervision");
      spy = null;
    } else if (spy && spy.agent === agent) {
      spy = await api("PUT", "/api/supervision/mode", { mode });
    } else {
      spy = await api("POST", "/api/supervision", { agent, mode });
    }
  } catch (error) {
    $("spy-error").textContent = error.message;
    $("spy-error").hidden = false;
  }
  await refreshSpy();
}

async function refreshSpy() {
  try {
    spy = (await api("GET", "/api/supervision")).session;
  } catch (error) {
    spy = null; // not a supervisor, or supervision is off here: no buttons
  }
  renderSpy();
}

function renderAbandoned(calls) {
  replaceChildren($("abandoned-rows"), ...calls.slice(0, 50).map((c) => el("tr", {},
    el("td", {}, c.at_local || clockTime(c.at)),
    el("td", {}, c.queue),
    el("td", { class: "token" }, c.caller),
    el("td", {}, duration(c.wait)))));
}

// Referrals whose unit has not answered by the deadline: the supervisors chase them. No
// reason text on a wall screen, only the case reference and the unit.
function renderOverdueReferrals(referrals) {
  const rows = referrals.map((r) => el("tr", { class: r.escalation_level > 1 ? "alarm" : "warn" },
    el("th", { scope: "row" }, r.case_reference),
    el("td", {}, r.unit),
    el("td", {}, duration(r.overdue_minutes * 60)),
    el("td", {}, r.escalation_level ? `level ${r.escalation_level}` : "due now")));
  if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: "4", class: "muted" }, "None overdue")));
  replaceChildren($("overdue-referral-rows"), ...rows);
}

// Waiting callers (bars, left axis) and the day's service level (line, right axis, 0-100%)
// per minute; drawn by hand on a canvas, scaled for the screen it is on.
function drawChart(nodes) {
  const canvas = $("chart");
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 900;
  const height = canvas.clientHeight || 260;
  if (canvas.width !== Math.round(width * ratio)) {
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  const styles = getComputedStyle(document.body);
  const ink = styles.getPropertyValue("--ink").trim() || "#eee";
  const waitingColour = styles.getPropertyValue("--chart-waiting").trim() || "#f5a623";
  const levelColour = styles.getPropertyValue("--chart-level").trim() || "#4fc3f7";

  // One series across nodes: sum waiting, average the service level of nodes that have one.
  const byMinute = new Map();
  for (const snapshot of nodes) {
    for (const point of (snapshot.overall && snapshot.overall.series) || []) {
      const entry = byMinute.get(point.minute) || { waiting: 0, levels: [] };
      entry.waiting += point.waiting_max;
      if (point.service_level_today !== null) entry.levels.push(point.service_level_today);
      byMinute.set(point.minute, entry);
    }
  }
  const minutes = [...byMinute.keys()].sort((a, b) => a - b);
  const pad = { left: 40, right: 48, top: 12, bottom: 24 };
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  ctx.font = "12px system-ui, sans-serif";
  ctx.fillStyle = ink;
  ctx.strokeStyle = ink;
  ctx.globalAlpha = 0.3;
  ctx.strokeRect(pad.left, pad.top, plotW, plotH);
  ctx.globalAlpha = 1;
  if (!minutes.length) {
    ctx.fillText("No data yet", pad.left + 8, pad.top + 20);
    return;
  }
  const maxWaiting = Math.max(1, ...minutes.map((m) => byMinute.get(m).waiting));
  const step = plotW / minutes.length;
  ctx.fillStyle = waitingColour;
  minutes.forEach((minute, i) => {
    const h = (byMinute.get(minute).waiting / maxWaiting) * plotH;
    ctx.fillRect(pad.left + i * step + 1, pad.top + plotH - h, Math.max(1, step - 2), h);
  });
  ctx.strokeStyle = levelColour;
  ctx.lineWidth = 2;
  ctx.beginPath();
  let drawing = false;
  minutes.forEach((minute, i) => {
    const levels = byMinute.get(minute).levels;
    if (!levels.length) {
      drawing = false;
      return;
    }
    const level = levels.reduce((s, v) => s + v, 0) / levels.length;
    const x = pad.left + i * step + step / 2;
    const y = pad.top + plotH - level * plotH;
    if (drawing) ctx.lineTo(x, y);
    else ctx.moveTo(x, y);
    drawing = true;
  });
  ctx.stroke();
  ctx.fillStyle = ink;
  ctx.textAlign = "right";
  ctx.fillText(String(maxWaiting), pad.left - 6, pad.top + 10);
  ctx.fillText("0", pad.left - 6, pad.top + plotH);
  ctx.textAlign = "left";
  ctx.fillText("100%", width - pad.right + 6, pad.top + 10);
  ctx.fillText("0%", width - pad.right + 6, pad.top + plotH);
  ctx.fillText(clockTime(minutes[0]), pad.left, height - 6);
  ctx.textAlign = "right";
  ctx.fillText(clockTime(minutes[minutes.length - 1]), width - pad.right, height - 6);
  ctx.textAlign = "left";
}

function onMessage(message) {
  if (message.type === "wallboard") {
    agents = message.agents;
    renderQueues(message.queues);
    renderAgents();
    renderAbandoned(message.abandoned);
    renderOverdueReferrals(message.overdue_referrals || []);
    $("updated").textContent = `updated ${new Date(message.at * 1000).toLocaleTimeString()}`;
  } else if (message.type === "agent" && message.agent) {
    const index = agents.findIndex((a) => a.username === message.agent.username);
    if (index >= 0) agents[index] = message.agent;
    else agents.push(message.agent);
    renderAgents();
  }
}

async function start() {
  await requireSession();
  $("sign-out").addEventListener("click", signOut);
  $("agent-rows").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-spy-mode]");
    if (button) supervise(button.dataset.spyAgent, button.dataset.spyMode);
  });
  const { features } = await api("GET", "/api/me");
  supervision = (features || []).includes("transfers");
  if (supervision) refreshSpy();
  // Her phone answering, or the call ending, changes the session on the PBX side.
  setInterval(() => { if (supervision && spy) refreshSpy(); }, 5000);
  liveSocket("/ws/wallboard", onMessage, (up) => {
    $("link").textContent = up ? "live" : "offline";
    $("link").className = `link ${up ? "up" : "down"}`;
  });
}

start().catch((error) => console.error(error));
