// The /ws/chat/ socket and its state, reopened with backoff after it closes.
//
// Nothing is queued here: send() says whether the frame went out, and the exchange sends its
// unconfirmed message again (same client_message_id) when the socket opens (exchange.js).
// States passed to onState: {name: "connecting", retry} (retry: not the first attempt),
// {name: "open"}, {name: "waiting", retryAt} (closed, the next attempt due at retryAt, ms),
// (busy: the server said 1013, try again later), {name: "signed-out"} (closed with 4401: stays closed); each with `offline` (navigator.onLine false).
const SIGNED_OUT = 4401;
const TRY_AGAIN_LATER = 1013; // the server had no free database connection
const DELAYS_MS = [1000, 2000, 4000, 8000, 15000];
const BUSY_DELAY_MS = 5000;

let socket = null;
let handlers = null;
let failures = 0;
let everOpened = false;
let retryTimer = null;
let state = { name: "connecting", retry: false };

function report(next) {
  state = Object.assign({ offline: navigator.onLine === false }, next);
  handlers.onState(state);
}

function url() {
  const scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
  return scheme + window.location.host + "/ws/chat/";
}

function open() {
  window.clearTimeout(retryTimer);
  retryTimer = null;
  report({ name: "connecting", retry: failures > 0 || everOpened });
  const ws = new WebSocket(url());
  socket = ws;
  ws.addEventListener("open", () => {
    if (socket !== ws) return;
    failures = 0;
    everOpened = true;
    report({ name: "open" });
    handlers.onOpen();
  });
  ws.addEventListener("message", (event) => {
    let payload;
    try { payload = JSON.parse(event.data); } catch (err) { return; }
    handlers.onEvent(payload);
  });
  ws.addEventListener("close", (event) => {
    if (socket !== ws) return;
    const wasOpen = state.name === "open";
    socket = null;
    if (event.code === SIGNED_OUT) {
      report({ name: "signed-out" });
      handlers.onSignedOut();
      return;
    }
    if (wasOpen) handlers.onDrop();
    const delay = event.code === TRY_AGAIN_LATER ? BUSY_DELAY_MS : DELAYS_MS[Math.min(failures, DELAYS_MS.length - 1)];
    failures += 1;
    retryTimer = window.setTimeout(open, delay);
    report({ name: "waiting", retryAt: Date.now() + delay, busy: event.code === TRY_AGAIN_LATER });
  });
}

// `h`: onEvent(payload) for each event, onOpen() each time it opens, onDrop() when an open socket
// closes (it then reopens), onSignedOut() when the server ended the session, onState(state).
export function connect(h) {
  handlers = h;
  window.addEventListener("online", retryNow);
  window.addEventListener("offline", () => report(Object.assign({}, state)));
  open();
}

// Try at once instead of waiting for the next attempt (the "Retry now" button, or back online).
export function retryNow() {
  if (state.name === "waiting") open();
  else if (state.name === "open" || state.name === "connecting") report(Object.assign({}, state));
}

export function isOpen() {
  return socket !== null && socket.readyState === WebSocket.OPEN;
}

// True if the frame went out now; false (nothing sent) while the socket is not open.
export function send(frame) {
  if (!isOpen()) return false;
  socket.send(JSON.stringify(frame));
  return true;
}
