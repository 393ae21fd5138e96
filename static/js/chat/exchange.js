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
import { send } from "./socket.js";
import { showStored } from "./stored.js";
import { addBubble, findUserBubble, scrollDown } from "./transcript.js";
import { decorateAnswer, decorateQuestion, setActionsBusy, versionsOf } from "./versions.js";

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

function busy(flag) {
  setBusy(flag);
  setActionsBusy(flag);
}

// `options` (actions.js) make it a new version: `regenerate` (an answer's id: no new user message;
// `question` is its question's bubble, `answerInto()` the bubble the new version streams into) or
// `edit_of` (a user message's id); `onSaved(userBubble)` once the server stored it, `onRefused(userBubble)`
// if it was refused before that, `focusAfter()` where focus goes once it ends.
export function startExchange(text, model, options) {
  const opts = options || {};
  const requestId = newMessageId();
  const userBubble = opts.regenerate ? opts.question : addBubble("user", requestId, text);
  if (!opts.regenerate) pendingBadges(userBubble);
  current = { requestId, userBubble, assistant: null, text: "", userText: text, before: null, promptEstimate: 0,
    options: opts };
  const frame = { type: "send_message", model, client_message_id: requestId };
  if (opts.regenerate) frame.regenerate = opts.regenerate;
  else frame.message = text;
  if (opts.edit_of) frame.edit_of = opts.edit_of;
  if (data.conversation_id) frame.conversation_id = data.conversation_id;
  busy(true);
  send(frame);
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
  if (!current.saved && current.options.onRefused) {
    current.options.onRefused(current.options.regenerate ? null : current.userBubble);
  } else if (!current.saved) {
    // Refused before it was stored: say so on the bubble, and give the text back to edit.
    setBadges(current.userBubble, [statusFlag("not sent")]);
    current.userBubble.classList.add("status-error");
    giveBack(current.userText);
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
  if (current.options.onSaved) current.options.onSaved(current.userBubble);
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
  current.model = payload.model;
  current.assistant = current.options.answerInto ? current.options.answerInto() : addBubble("assistant", null, "");
  if (payload.message_id) current.assistant.setAttribute("data-message-id", payload.message_id);
  current.assistant.setAttribute("aria-busy", "true");
  current.assistant.setAttribute("data-user-message-id", current.options.questionId || payload.request_id);
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
      // An error without a request id is about the frame itself (or the socket), so about this exchange.
      if (current && (!payload.request_id || mine)) failed(payload);
      else if (!current) showError(errorText(payload));
      break;
    default:
      break; // stream_end: message_complete follows with the stored figures
  }
}
