// One exchange at a time: the send, the contract's events (API.md) turned into bubbles and figures.
// Streamed text is shown as markdown sanitised in the page (render.js); at the end the server's
// sanitised, highlighted `content_html` takes its place.
import { addFlag, assistantBadges, pendingBadges, setBadges, statusFlag, streamingBadges, userBilledBadges }
  from "./badges.js";
import { confirmed, giveBack, holdUnsent, reusedId, setBusy } from "./composer.js";
import { setDelivery } from "./connection.js";
import { announce, el, showError } from "./dom.js";
import { ERROR_TEXT, errorText } from "./errors.js";
import { growHistory, refreshEstimate } from "./estimate.js";
import { firstLine, setConversationUsage, updateAccount, updateBudget, updateSidebar } from "./figures.js";
import { data } from "./page.js";
import { renderMarkdown, showHtml } from "./render.js";
import { sendSettings } from "./settings.js";
import { isOpen, send } from "./socket.js";
import { showStored } from "./stored.js";
import { addBubble, findUserBubble, scrollDown } from "./transcript.js";
import { decorateAnswer, decorateQuestion, reserveAnswerBar, setActionsBusy, versionsOf } from "./versions.js";

// The exchange in flight: its request id, bubbles, texts and the totals before it.
let current = null;
// Exchanges a dropped socket cut short, each with what to say: what the server stored for them is
// read once the socket is back (the server settled them as cancelled when the socket went).
const cutShort = [];
// A retried send the server says is still being answered (in_progress): asked again this often.
const IN_PROGRESS_RETRY_MS = 2000;
const IN_PROGRESS_RETRIES = 10;

function newMessageId() {
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  const random = new Uint8Array(9);
  window.crypto.getRandomValues(random);
  const suffix = Array.from(random, (byte) => alphabet.charAt(byte % alphabet.length)).join("");
  return "msg_" + Date.now() + "_" + suffix;
}

export function isBusy() {
  return current !== null;
}

function busy(flag) {
  setBusy(flag);
  setActionsBusy(flag);
}

// Sending while the socket is down is not refused: the message waits in its bubble ("waiting for
// connection", a copy kept by the composer) and goes once the socket opens. A frame that went out
// unconfirmed (no message_saved) when the socket dropped goes again on the next socket, with the same
// client_message_id: the server stores it once and replays what it stored (API.md "Sending").
// `options` (actions.js) make it a new version: `regenerate` (an answer's id: no new user message;
// `question` is its question's bubble, `answerInto()` the bubble the new version streams into) or
// `edit_of` (a user message's id); `onSaved(userBubble)` once the server stored it, `onRefused(userBubble)`
// if it was refused before that, `focusAfter()` where focus goes once it ends.
export function startExchange(text, model, options) {
  const opts = options || {};
  const plain = !opts.regenerate && !opts.edit_of;
  const requestId = (plain && reusedId(text)) || newMessageId();
  const userBubble = opts.regenerate ? opts.question : addBubble("user", requestId, text);
  if (!opts.regenerate) pendingBadges(userBubble);
  const frame = { type: "send_message", model, client_message_id: requestId, ...sendSettings() };
  if (opts.regenerate) frame.regenerate = opts.regenerate;
  else frame.message = text;
  if (opts.edit_of) frame.edit_of = opts.edit_of;
  if (data.conversation_id) frame.conversation_id = data.conversation_id;
  current = { requestId, userBubble, assistant: null, text: "", userText: text, before: null, promptEstimate: 0,
    options: opts, frame, from: data.conversation_id || null, saved: false, everSent: false, busyRetries: 0 };
  // A plain message's text is kept until the server confirms it (an edit waits in its bubble).
  if (plain) holdUnsent(text, requestId);
  busy(true);
  deliver();
}

function deliver() {
  if (send(current.frame)) {
    current.everSent = true;
    setDelivery(current.userBubble, "sending");
  } else {
    setDelivery(current.userBubble, "waiting");
    announce("No connection: your message will be sent when it is back.");
  }
}

// Once an exchange ended: its bubbles get their actions (and the question says over how many sends
// its input counts); focus goes back where the action was, if the disabled button lost it.
function decorate(ended, message) {
  if (ended.assistant) decorateAnswer(ended.assistant, message, ended.text);
  const question = findUserBubble(ended.options.questionId || "") || ended.userBubble;
  if (question && ended.saved) decorateQuestion(question, ended.assistant ? versionsOf(ended.assistant).length : 1);
  const target = ended.options.focusAfter ? ended.options.focusAfter() : null;
  if (target && (document.activeElement === document.body || !document.activeElement)) target.focus();
}

export function stopExchange() {
  if (!current) return;
  if (!current.saved && !isOpen()) {
    // Still waiting for the socket: nothing to stop on the server, the text goes back to the box.
    return failCurrent(current.everSent ? ERROR_TEXT.UNCONFIRMED : ERROR_TEXT.NOT_SENT_OFFLINE, true);
  }
  send({ type: "cancel", request_id: current.requestId });
  announce("Stopping the reply.");
}

// The socket is open (again): an unconfirmed message goes (again); cut-short exchanges show what
// the server stored for them.
export function connectionOpened() {
  if (current && !current.saved) deliver();
  cutShort.splice(0).forEach(({ ended, text }) => {
    showStored(ended).then(() => {
      showError(text, true);
      announce(text);
      scrollDown();
    });
  });
}

export function connectionDropped() {
  if (!current) return;
  if (!current.saved) {
    // Not confirmed: it may or may not have reached the server; it goes again when the socket is back.
    setDelivery(current.userBubble, "waiting");
    return;
  }
  // Stored: the server settles the exchange as cancelled now that the socket is gone.
  const text = current.assistant ? ERROR_TEXT.DROPPED_STREAMING : ERROR_TEXT.DROPPED_BEFORE_REPLY;
  if (current.assistant) {
    current.assistant.setAttribute("aria-busy", "false");
    current.assistant.querySelector(".bubble-content").classList.remove("streaming");
    addFlag(current.assistant, "connection lost");
  }
  const ended = current;
  current = null;
  busy(false);
  cutShort.push({ ended, text });
  announce("The connection dropped. What the server kept is shown once it is back.");
}

export function signedOut() {
  if (current) failCurrent(ERROR_TEXT.UNAUTHENTICATED);
  else showError(ERROR_TEXT.UNAUTHENTICATED);
}

function failCurrent(text, notice, link) {
  if (current.assistant) current.assistant.setAttribute("aria-busy", "false");
  if (!current.saved && current.options.onRefused) {
    current.options.onRefused(current.options.regenerate ? null : current.userBubble);
  } else if (!current.saved) {
    // Not stored (refused, or stopped while waiting): say so on the bubble, and give the text back
    // to edit, with its client_message_id in case an unconfirmed copy did reach the server.
    const flag = text === ERROR_TEXT.UNCONFIRMED ? "not confirmed" : "not sent";
    setBadges(current.userBubble, [statusFlag(flag)]);
    current.userBubble.removeAttribute("data-delivery");
    current.userBubble.classList.add("status-error");
    giveBack(current.userText, current.requestId);
  }
  showError(text, notice, link);
  announce(text);
  const ended = current;
  current = null;
  busy(false);
  if (ended.saved) decorate(ended, { model: ended.model || "", content: ended.text });
  // A stopped or failed exchange is still settled and billed on the server: show what it stored.
  if (ended.saved && data.conversation_id) showStored(ended);
}

function saved(payload) {
  current.saved = true;
  setDelivery(current.userBubble, "sent");
  if (current.options.onSaved) current.options.onSaved(current.userBubble);
  if (!data.conversation_id) data.conversation_id = payload.conversation_id;
  confirmed(current.from);
  if (current.from) return;
  const url = data.conversation_url_template.replace("__id__", encodeURIComponent(payload.conversation_id));
  window.history.replaceState(null, "", url);
  const heading = document.getElementById("chat-title");
  heading.textContent = firstLine(current.userText);
  document.title = heading.textContent + " · Chat · ChatLima";
}

function started(payload) {
  current.before = payload.conversation_usage;
  current.promptEstimate = payload.estimated_prompt_tokens || 0;
  current.model = payload.model;
  current.assistant = current.options.answerInto ? current.options.answerInto() : addBubble("assistant", null, "");
  if (payload.message_id) current.assistant.setAttribute("data-message-id", payload.message_id);
  current.assistant.setAttribute("aria-busy", "true");
  current.assistant.setAttribute("data-user-message-id", current.options.questionId || payload.request_id);
  reserveAnswerBar(current.assistant, payload.model);
  streamingBadges(current.assistant, current.promptEstimate, 0);
  if (payload.max_tokens_clamped) {
    clampedNote(current.assistant, payload.max_tokens);
    announce("Reply started, limited to " + payload.max_tokens + " tokens by your budget.");
  } else {
    announce("Reply started.");
  }
}

// Why an answer may stop short: the budget lowered its allowance (API.md "Streaming events").
function clampedNote(article, maxTokens) {
  const note = el("p", "bubble-note", "Answer limited to " + maxTokens + " tokens by your budget.");
  note.setAttribute("data-note", "max-tokens-clamped");
  note.setAttribute("data-max-tokens", String(maxTokens));
  article.appendChild(note);
}

function chunk(payload) {
  current.text += payload.chunk || "";
  renderMarkdown(current.assistant.querySelector(".bubble-content"), current.text, scrollDown);
  streamingBadges(current.assistant, current.promptEstimate, payload.estimated_completion_tokens || 0);
}

function failed(payload) {
  const details = payload.details || {};
  if (payload.code === "RATE_LIMITED" && details.reason === "in_progress" && !current.saved) {
    // Our own earlier copy is stored and still being settled on the server (its socket just went).
    if (current.busyRetries < IN_PROGRESS_RETRIES) {
      current.busyRetries += 1;
      window.setTimeout(() => { if (current && !current.saved) deliver(); }, IN_PROGRESS_RETRY_MS);
      return;
    }
    current.saved = true; // stored: never "not sent", and nothing to give back
    setDelivery(current.userBubble, "sent");
    return failCurrent(ERROR_TEXT.IN_PROGRESS, true);
  }
  if (details.replayed && current.saved) {
    // A copy sent before the connection dropped was stored, and ended there as this: show it.
    return failCurrent(ERROR_TEXT.REPLAYED_ENDED, true);
  }
  if (payload.code === "TOKEN_LIMIT_EXCEEDED") {
    return failCurrent(errorText(payload), false, { href: data.usage_url + "#budget-title", text: "See your budget." });
  }
  if (payload.code !== "CANCELLED") return failCurrent(errorText(payload));
  if (current.assistant) {
    current.assistant.classList.add("status-cancelled");
    addFlag(current.assistant, "stopped");
  }
  failCurrent(ERROR_TEXT.CANCELLED, true);
}

function completed(payload) {
  const article = current.assistant || addBubble("assistant", null, "");
  const message = payload.message || {};
  if (message.id) article.setAttribute("data-message-id", message.id);
  const content = article.querySelector(".bubble-content");
  content.classList.remove("streaming");
  // content_html is the server's nh3-sanitised rendering (chat/markdown.py), with the same blocks.
  if (message.content_html) showHtml(content, message.content_html);
  else renderMarkdown(content, message.content || current.text);
  assistantBadges(article, message);
  article.setAttribute("aria-busy", "false");

  const userBubble = findUserBubble(payload.user_message ? payload.user_message.id : payload.request_id) ||
    current.userBubble;
  let prompt = payload.user_message ? payload.user_message.prompt_tokens : null;
  if (prompt === null || prompt === undefined) prompt = payload.usage ? payload.usage.prompt_tokens : null;
  userBilledBadges(userBubble, prompt, message.figures_source);
  setDelivery(userBubble, "answered");

  setConversationUsage(payload.conversation_usage);
  updateAccount(current.before, payload.conversation_usage);
  updateBudget(payload.budget);
  updateSidebar(data.conversation_id, payload.conversation_usage, firstLine(current.userText),
    message.content || current.text);
  if (!current.options.regenerate && !current.options.edit_of) growHistory(current.userText, message.content || current.text);
  const tokens = message.completion_tokens;
  const ended = current;
  current = null;
  busy(false);
  decorate(ended, message);
  refreshEstimate();
  announce("Reply finished" + (tokens !== null && tokens !== undefined ? ": " + tokens + " tokens out." : "."));
}

export function handleEvent(payload) {
  const mine = current !== null && payload.request_id === current.requestId;
  switch (payload.type) {
    case "message_saved":
      if (mine) saved(payload);
      break;
    case "stream_start":
      if (mine) started(payload);
      break;
    case "stream_chunk":
      if (mine && current.assistant) chunk(payload);
      break;
    case "message_complete":
      if (mine) completed(payload);
      break;
    case "error":
      // The socket's own "try again later" (a close with 1013 follows): not about any message, which
      // waits and goes on the next socket.
      if (payload.code === "SERVICE_UNAVAILABLE" && !payload.request_id) break;
      // An error without a request id is about the frame itself (or the socket), so about this exchange.
      if (current && (!payload.request_id || mine)) failed(payload);
      else if (!current) showError(errorText(payload));
      break;
    default:
      break; // stream_end: message_complete follows with the stored figures
  }
}
