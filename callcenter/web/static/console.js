import {
  api, clockTime, duration, el, label, liveSocket, replaceChildren, requireSession, signOut,
} from "/static/common.js";

// Flags that change how she answers: a silent caller cannot speak, a danger flag means
// someone may be with her. They are shown first, large, and in colour.
const LOUD_FLAGS = new Set(["silent", "danger"]);

const $ = (id) => document.getElementById(id);
let me = null;
let lastCall = null;
let lastPhase = null;
let lastState = null;
let wrapUpFor = null; // the call whose category the wrap-up form was last started on
let wrapUpSuggestions = {};
// A warm transfer she started and has not completed or cancelled yet.
let consulting = false;

function showError(id, error) {
  const node = $(id);
  node.textContent = error ? error.message : "";
  node.hidden = !error;
}

async function command(path, body) {
  showError("control-error", null);
  try {
    const result = await api("POST", path, body);
    if (result && result.agent) render(result.agent);
  } catch (error) {
    showError("control-error", error);
  }
}

function render(agent) {
  me = agent;
  if (!agent) {
    $("state").textContent = "not on duty";
    return;
  }
  const state = agent.state;
  $("state").textContent = label(state === "paused" && agent.reason ? `paused: ${agent.reason}` : state);
  $("state").className = `badge state-${state}`;
  $("softphone").textContent = `phone ${label(agent.softphone)}`;
  $("softphone").className = `badge phone-${agent.softphone}`;
  $("pause-reason").textContent = agent.reason ? `Reason: ${label(agent.reason)}` : "";
  $("queues").textContent = agent.queues.length ? `Queues: ${agent.queues.join(", ")}` : "In no queue.";
  $("go-available").disabled = state !== "logged_out";
  $("unpause").disabled = state !== "paused";
  $("leave").disabled = state === "logged_out";
  $("pause-form").querySelector("button").disabled = state !== "available";
  const inWrapUp = state === "wrap_up";
  $("wrapup-submit").disabled = !inWrapUp;
  if (state !== "on_call") consulting = false;
  renderTransfer(state);
  $("wrapup-deadline").textContent = inWrapUp && agent.wrap_up_deadline
    ? `Wrap-up ends at ${clockTime(agent.wrap_up_deadline)}.` : "";
  if (agent.call) renderCall(agent.call, state === "on_call" ? "connected" : state === "ringing" ? "ringing" : lastPhase, null);
  else if (state === "available" || state === "logged_out" || state === "paused") renderCall(null);
  if (lastState !== state && (state === "available" || state === "wrap_up")) loadRecent();
  lastState = state;
  tick();
}

function renderCall(card, phase, earlier) {
  lastCall = card;
  lastPhase = phase;
  $("call-card").hidden = !card;
  $("call-empty").hidden = Boolean(card);
  if (!card) return;
  $("call-phase").textContent = phase ? label(phase) : "";
  $("call-phase").className = `call-phase phase-${phase || "none"}`;
  $("call-caller").textContent = card.caller;
  const flags = [...card.flags].sort((a, b) => Number(LOUD_FLAGS.has(b)) - Number(LOUD_FLAGS.has(a)));
  replaceChildren($("call-flags"), ...flags.map((flag) =>
    el("span", { class: `flag${LOUD_FLAGS.has(flag) ? ` flag-${flag}` : ""}` }, label(flag))));
  // An outbound callback or follow-up (the dialplan flags it): she has not called us now.
  $("callback-notice").hidden = !card.flags.includes("callback");
  $("call-risk").textContent = label(card.risk);
  $("call-risk").className = `risk-${card.risk || "none"}`;
  $("call-category").textContent = label(card.category);
  $("call-language").textContent = card.language || "—";
  $("call-queue").textContent = card.queue || "—";
  $("call-callback").textContent = card.callback_ok === null ? "not asked" : card.callback_ok ? "yes" : "no";
  $("call-ivr").textContent = card.ivr_path || "—";
  if (earlier) {
    replaceChildren($("call-earlier"), ...(earlier.length ? earlier.map((contact) => el("li", {},
      `${clockTime(contact.started_at)} · ${label(contact.category)} · ${label(contact.outcome)}`,
      contact.case_reference ? ` · case ${contact.case_reference}` : null)) : [el("li", { class: "muted" }, "None.")]));
  }
  suggestWrapUp(`${card.node}/${card.linkedid}`, card.category);
}

// The form starts on the call's category once per call; every later update of the card
// (hang-up, wrap-up, a colleague's note) leaves what she chose alone. A category the form
// does not offer leaves the placeholder, so she has to choose rather than file a default.
function suggestWrapUp(callKey, category) {
  if (!callKey || callKey === wrapUpFor) return;
  wrapUpFor = callKey;
  $("wrapup-category").value = wrapUpSuggestions[category] || "";
}

function renderTransfer(state) {
  const onCall = state === "on_call";
  for (const id of ["transfer-blind", "transfer-warm", "transfer-conference"]) {
    $(id).disabled = !onCall || consulting;
  }
  $("transfer-complete").disabled = !consulting;
  $("transfer-cancel").disabled = !consulting;
  $("consult-buttons").hidden = !consulting;
}

function transferTarget() {
  // A colleague's phone wins over the list: "agent2" -> "agent:PJSIP/agent2".
  const colleague = $("transfer-colleague").value.trim().replace(/^PJSIP\//i, "");
  return colleague ? `agent:PJSIP/${colleague}` : $("transfer-destination").value;
}

async function transfer(kind) {
  showError("transfer-error", null);
  try {
    const result = await api("POST", "/api/me/transfer",
      { destination: transferTarget(), kind, note: $("transfer-note").value });
    consulting = kind === "warm";
    $("transfer-status").textContent = kind === "warm"
      ? `Consulting ${result.handover.destination}; she hears music.`
      : `${label(kind)} to ${result.handover.destination}.`;
    $("transfer-note").value = "";
  } catch (error) {
    showError("transfer-error", error);
  }
  renderTransfer(me ? me.state : null);
}

async function endConsult(how) {
  showError("transfer-error", null);
  try {
    await api("POST", `/api/me/transfer/${how}`);
    consulting = false;
    $("transfer-status").textContent = how === "complete"
      ? "Transferred: she is with your colleague." : "Back with the caller.";
  } catch (error) {
    showError("transfer-error", error);
  }
  renderTransfer(me ? me.state : null);
}

function renderHandover(handover) {
  $("handover").hidden = !handover;
  if (!handover) return;
  $("handover-from").textContent = handover.from_agent;
  $("handover-kind").textContent = label(handover.kind);
  $("handover-caller").textContent = handover.caller;
  replaceChildren($("handover-flags"), ...handover.flags.map((flag) =>
    el("span", { class: `flag${LOUD_FLAGS.has(flag) ? ` flag-${flag}` : ""}` }, label(flag))));
  $("handover-category").textContent = label(handover.category);
  $("handover-case").textContent = handover.case_reference || "—";
  $("handover-destination").textContent = handover.destination;
  replaceChildren($("handover-notes"), ...(handover.notes.length
    ? handover.notes.map((note) => el("li", {}, note)) : [el("li", { class: "muted" }, "None.")]));
  if (!lastCall) suggestWrapUp(`handover:${handover.caller}`, handover.category);
}

function tick() {
  if (me) $("since").textContent = duration(Date.now() / 1000 - me.since);
}

async function loadRecent() {
  try {
    const { calls } = await api("GET", "/api/me/calls");
    replaceChildren($("recent-calls"), ...calls.map((call) => el("tr", {},
      el("td", {}, call.started_at ? new Date(call.started_at).toLocaleString() : "—"),
      el("td", { class: "token" }, call.caller_token || "—"),
      el("td", {}, label(call.category)),
      el("td", { class: `risk-${call.risk || "none"}` }, label(call.risk)),
      el("td", {}, label(call.outcome)),
      el("td", {}, duration(call.talk_seconds)))));
  } catch (error) {
    console.error(error);
  }
}

async function start() {
  const session = await requireSession();
  $("who").textContent = session.display_name;
  const info = await api("GET", "/api/me");
  replaceChildren($("pause-reasons"), ...info.pause_reasons.map((r) => el("option", { value: r }, label(r))));
  wrapUpSuggestions = info.wrapup_suggestions || {};
  replaceChildren($("wrapup-category"), el("option", { value: "" }, "Choose…"),
    ...info.wrapup_categories.map((c) => el("option", { value: c }, label(c))));
  render(info.agent);
  loadRecent();
  const transfers = (info.features || []).includes("transfers");
  $("transfer-panel").hidden = !transfers;
  if (transfers) {
    try {
      const { destinations } = await api("GET", "/api/transfers/destinations");
      replaceChildren($("transfer-destination"), ...destinations.map((d) =>
        el("option", { value: d.key }, d.label)));
    } catch (error) {
      showError("transfer-error", error);
    }
  }
  $("transfer-blind").addEventListener("click", () => transfer("blind"));
  $("transfer-warm").addEventListener("click", () => transfer("warm"));
  $("transfer-conference").addEventListener("click", () => transfer("conference"));
  $("transfer-complete").addEventListener("click", () => endConsult("complete"));
  $("transfer-cancel").addEventListener("click", () => endConsult("cancel"));
  $("transfer-form").addEventListener("submit", (event) => event.preventDefault());

  $("sign-out").addEventListener("click", signOut);
  $("go-available").addEventListener("click", () => command("/api/me/login-queues"));
  $("unpause").addEventListener("click", () => command("/api/me/unpause"));
  $("leave").addEventListener("click", () => command("/api/me/logout"));
  $("pause-form").addEventListener("submit", (event) => {
    event.preventDefault();
    command("/api/me/pause", { reason: $("pause-reasons").value });
  });
  $("wrapup-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    showError("wrapup-error", null);
    const body = { category: $("wrapup-category").value, notes: $("wrapup-notes").value };
    if (lastCall) {
      body.node = lastCall.node;
      body.linkedid = lastCall.linkedid;
    }
    try {
      const result = await api("POST", "/api/me/wrapup", body);
      $("wrapup-notes").value = "";
      render(result.agent);
    } catch (error) {
      showError("wrapup-error", error);
    }
  });

  liveSocket("/ws/console", (message) => {
    if (message.type === "hello" || message.type === "agent") render(message.agent);
    else if (message.type === "pop" && message.pop.phase === "handover") {
      // The case so far, from the colleague handing her on; no card of its own.
      renderHandover(message.pop.handover);
    } else if (message.type === "pop") {
      if (message.pop.phase === "ringing" && lastPhase === "ended") renderHandover(null);
      renderCall(message.pop.phase === "ended" ? lastCall : message.pop.card, message.pop.phase, message.pop.earlier);
      if (message.pop.phase === "ringing") document.body.classList.add("ringing");
      else document.body.classList.remove("ringing");
    }
  }, (up) => {
    $("link").textContent = up ? "live" : "offline";
    $("link").className = `link ${up ? "up" : "down"}`;
  });
  setInterval(tick, 1000);
}

start().catch((error) => console.error(error));
