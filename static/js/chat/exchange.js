// One exchange at a time: the send, the contract's events (API.md) turned into bubbles and figures.
// Streamed text goes in as textContent; only the server's sanitised `content_html` is set as HTML.
import { addFlag, assistantBadges, pendingBadges, setBadges, statusFlag, streamingBadges, userBilledBadges }
  from "./badges.js";
import { giveBack, setBusy } from "./composer.js";
import { announce, el, showError } from "./dom.js";
import { ERROR_TEXT, errorText } from "./errors.js";
import { growHistory, refreshEstimate } from "./estimate.js";
import { firstLine, setConversationUsage, updateAccount, updateBudget, updateSidebar } from "./figures.js";
import { data } from "./page.js";
import { sendSettings } from "./settings.js";
import { send } from "./socket.js";
import { showStored } from "./stored.js";
import { addBubble, findUserBubble, scrollDown } from "./transcript.js";

// The exchange in flight: its request id, bubbles, texts and the totals before it.
let current = null;

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

export function startExchange(text, model) {
  const requestId = newMessageId();
  const userBubble = addBubble("user", requestId, text);
  pendingBadges(userBubble);
  current = { requestId, userBubble, assistant: null, text: "", userText: text, before: null, promptEstimate: 0 };
  const frame = { type: "send_message", message: text, model, client_message_id: requestId, ...sendSettings() };
  if (data.conversation_id) frame.conversation_id = data.conversation_id;
  setBusy(true);
  send(frame);
}

export function stopExchange() {
  if (!current) return;
  send({ type: "cancel", request_id: current.requestId });
  announce("Stopping the reply.");
}

export function connectionDropped() {
  if (current) failCurrent("The connection dropped while the reply was streaming; what arrived is kept on the server.");
}

export function signedOut() {
  showError(ERROR_TEXT.UNAUTHENTICATED);
}

function failCurrent(text, notice, link) {
  if (current.assistant) current.assistant.setAttribute("aria-busy", "false");
  if (!current.saved) {
    // Refused before it was stored: say so on the bubble, and give the text back to edit.
    setBadges(current.userBubble, [statusFlag("not sent")]);
    current.userBubble.classList.add("status-error");
    giveBack(current.userText);
  }
  showError(text, notice, link);
  announce(text);
  const ended = current;
  current = null;
  setBusy(false);
  // A stopped or failed exchange is still settled and billed on the server: show what it stored.
  if (ended.saved && data.conversation_id) showStored(ended);
}

function saved(payload) {
  current.saved = true;
  if (data.conversation_id) return;
  data.conversation_id = payload.conversation_id;
  const url = data.conversation_url_template.replace("__id__", encodeURIComponent(payload.conversation_id));
  window.history.replaceState(null, "", url);
  const heading = document.getElementById("chat-title");
  heading.textContent = firstLine(current.userText);
  document.title = heading.textContent + " · Chat · ChatLima";
}

function started(payload) {
  current.before = payload.conversation_usage;
  current.promptEstimate = payload.estimated_prompt_tokens || 0;
  current.assistant = addBubble("assistant", payload.message_id || null, "");
  current.assistant.setAttribute("aria-busy", "true");
  current.assistant.setAttribute("data-user-message-id", payload.request_id);
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
  current.assistant.querySelector(".bubble-content").textContent = current.text;
  streamingBadges(current.assistant, current.promptEstimate, payload.estimated_completion_tokens || 0);
  scrollDown();
}

function failed(payload) {
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
  // content_html is the server's nh3-sanitised rendering (chat/markdown.py).
  content.innerHTML = message.content_html || "";
  if (!message.content_html) content.textContent = message.content || current.text;
  assistantBadges(article, message);
  article.setAttribute("aria-busy", "false");

  const userBubble = findUserBubble(payload.user_message ? payload.user_message.id : payload.request_id) ||
    current.userBubble;
  let prompt = payload.user_message ? payload.user_message.prompt_tokens : null;
  if (prompt === null || prompt === undefined) prompt = payload.usage ? payload.usage.prompt_tokens : null;
  userBilledBadges(userBubble, prompt, message.figures_source);

  setConversationUsage(payload.conversation_usage);
  updateAccount(current.before, payload.conversation_usage);
  updateBudget(payload.budget);
  updateSidebar(data.conversation_id, payload.conversation_usage, firstLine(current.userText),
    message.content || current.text);
  growHistory(current.userText, message.content || current.text);
  const tokens = message.completion_tokens;
  current = null;
  setBusy(false);
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
      // An error without a request id is about the frame itself (or the socket), so about this exchange.
      if (current && (!payload.request_id || mine)) failed(payload);
      else if (!current) showError(errorText(payload));
      break;
    default:
      break; // stream_end: message_complete follows with the stored figures
  }
}
