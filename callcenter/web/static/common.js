// Shared by the pages: the API with its CSRF token, safe DOM building, a self-healing socket.
// No innerHTML anywhere: every value from the server is set as text, so a case note or a
// queue name can never become markup.

let csrfToken = null;

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && csrfToken) headers["X-CSRF-Token"] = csrfToken;
  const response = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 204) return null;
  let data = null;
  try {
    data = await response.json();
  } catch (_) {
    data = null;
  }
  if (!response.ok) {
    const error = (data && data.error) || {};
    throw new ApiError(response.status, error.code || "http_error",
      error.message || `The server answered ${response.status}.`);
  }
  return data;
}

// The signed-in person, or a trip to the sign-in page.
export async function requireSession() {
  try {
    const session = await api("GET", "/api/session");
    csrfToken = session.csrf_token;
    return session;
  } catch (error) {
    if (error.status === 401) window.location.assign("/login");
    throw error;
  }
}

export function setCsrf(token) {
  csrfToken = token;
}

export async function signOut() {
  try {
    await api("DELETE", "/api/session");
  } finally {
    window.location.assign("/login");
  }
}

// el("td", {class: "x"}, "text", child) -> element; strings become text nodes.
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export function replaceChildren(node, ...children) {
  node.replaceChildren(...children.filter((c) => c !== null && c !== undefined));
}

export function label(text) {
  return text ? String(text).replaceAll("_", " ") : "—";
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "—";
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${rest}` : `${m}:${rest}`;
}

export function percent(ratio) {
  return ratio === null || ratio === undefined ? "—" : `${Math.round(ratio * 100)}%`;
}

export function clockTime(epochSeconds) {
  if (!epochSeconds) return "—";
  return new Date(epochSeconds * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

// A WebSocket that reconnects with backoff; a 4401 close means the session is gone.
export function liveSocket(path, onMessage, onStatus) {
  let delay = 500;
  let socket = null;
  const connect = () => {
    const scheme = window.location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(`${scheme}://${window.location.host}${path}`);
    socket.addEventListener("open", () => {
      delay = 500;
      onStatus(true);
    });
    socket.addEventListener("message", (event) => {
      try {
        onMessage(JSON.parse(event.data));
      } catch (error) {
        console.error("bad message", error);
      }
    });
    socket.addEventListener("close", (event) => {
      onStatus(false);
      if (event.code === 4401) {
        window.location.assign("/login");
        return;
      }
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 10000);
    });
  };
  connect();
  return () => socket && socket.close();
}
