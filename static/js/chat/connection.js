// What the page says about its connection, and about each message's delivery.
//
// The connection line (#connection): its words sit in a role=status region that changes only when
// the state does ("Connected", "Offline. Reconnecting…", "Signed out"), so a screen reader hears
// each change once; the countdown beside it ("next try in 4 s") is outside that region, so it is
// not read out every second; "Retry now" tries at once. A user bubble carries its delivery:
// "waiting for connection", "sending", "sent" (message_saved), "answered" (message_complete);
// "not sent" (badges.js) only when the server did not store it.
import { el } from "./dom.js";

const box = document.getElementById("connection");
const words = document.getElementById("connection-status");
const countdown = document.getElementById("connection-countdown");
const retry = document.getElementById("connection-retry");

let ticker = null;
let shown = null;

const DELIVERY_TEXT = {
  waiting: "waiting for connection",
  sending: "sending",
  sent: "sent",
  answered: "answered",
  unconfirmed: "not confirmed",
};

function say(kind, text) {
  box.setAttribute("data-state", kind);
  if (shown !== text) {
    shown = text;
    words.textContent = text;
  }
}

function tick(retryAt) {
  const seconds = Math.max(0, Math.ceil((retryAt - Date.now()) / 1000));
  countdown.textContent = seconds > 0 ? "(next try in " + seconds + " s)" : "(trying now)";
}

// `state`: socket.js's connection state.
export function showConnection(state) {
  window.clearInterval(ticker);
  ticker = null;
  const down = state.name === "waiting" || (state.name === "connecting" && state.retry);
  if (state.name === "open") say("open", "Connected");
  else if (state.name === "signed-out") say("signed-out", "Signed out");
  else if (down && state.busy) say("down", "Server busy. Reconnecting…");
  else if (down) say("down", state.offline ? "Offline (no network). Reconnecting…" : "Offline. Reconnecting…");
  else say("connecting", "Connecting…");
  // The button goes once connected: whoever pressed it keeps the keyboard, in the message box.
  if (!down && document.activeElement === retry) document.getElementById("message-input").focus();
  retry.hidden = !down;
  countdown.hidden = !down;
  if (state.name === "waiting") {
    tick(state.retryAt);
    ticker = window.setInterval(() => tick(state.retryAt), 500);
  } else if (down) {
    countdown.textContent = "(trying now)";
  }
}

export function wireConnection(retryNow) {
  retry.addEventListener("click", () => retryNow());
}

// A user bubble's delivery state (a key of DELIVERY_TEXT), after its badges.
export function setDelivery(article, state) {
  article.setAttribute("data-delivery", state);
  const holder = article.querySelector(".badges");
  const old = holder.querySelector('[data-badge="delivery"]');
  if (old) {
    if (old.previousSibling && old.previousSibling.nodeType === Node.TEXT_NODE) old.previousSibling.remove();
    old.remove();
  }
  const flag = el("span", "badge flag delivery", DELIVERY_TEXT[state]);
  flag.setAttribute("data-badge", "delivery");
  flag.setAttribute("data-state", state);
  if (holder.childNodes.length) holder.appendChild(document.createTextNode(" "));
  holder.appendChild(flag);
}
