// The /ws/chat/ socket: frames queued until it opens, reconnected with backoff after a drop.
const SIGNED_OUT = 4401;

let socket = null;
let reconnectDelay = 500;
const queued = [];

// `handlers`: onEvent(payload) for each event, onDrop() when it closed (it then reconnects),
// onSignedOut() when the server closed it because the session ended (it stays closed).
export function connect(handlers) {
  const scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
  socket = new WebSocket(scheme + window.location.host + "/ws/chat/");
  socket.addEventListener("open", () => {
    reconnectDelay = 500;
    while (queued.length) socket.send(queued.shift());
  });
  socket.addEventListener("message", (event) => {
    let payload;
    try { payload = JSON.parse(event.data); } catch (err) { return; }
    handlers.onEvent(payload);
  });
  socket.addEventListener("close", (event) => {
    if (event.code === SIGNED_OUT) {
      handlers.onSignedOut();
      return;
    }
    handlers.onDrop();
    window.setTimeout(() => connect(handlers), reconnectDelay);
    reconnectDelay = Math.min(reconnectDelay * 2, 8000);
  });
}

export function send(frame) {
  const text = JSON.stringify(frame);
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(text);
  else queued.push(text);
}
