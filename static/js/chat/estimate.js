// The "before sending" estimate under the message box, and the context gauge beside it: the next
// message's input tokens (and how many of them are the history and system prompt it resends), its
// price, and how much of the model's context window that prompt fills.
// The server counts every draft exactly as the send will count it (POST /draft-estimate/,
// chat/estimate.py; the BPE tokenizer for OpenAI-family models), asked DEBOUNCE_MS after the last
// change. Until it answers, the figure is the page's heuristic for the draft on top of the history's
// figure, marked data-source="local"; the server's answer replaces it, marked data-source="server".
// A model with no price says "price unknown" (never $0.00), a free one "free", one whose provider gives no context
// window says "context window unknown". The conversation's attachments (attachments.js) are in the
// history figure, and their share is said apart ("including N of attachments", the server's attachment_tokens).
import { costOf, countText, moneyNode } from "./money.js";
import { data, modelInfo } from "./page.js";
import { countTokens } from "./tokens.js";

const DEBOUNCE_MS = 250;
const MESSAGE_OVERHEAD = 4; // chat/providers/base.py PER_MESSAGE_OVERHEAD: a system prompt is one more message
const holder = document.getElementById("next-estimate");
const tokensEl = document.getElementById("next-estimate-tokens");
const historyEl = document.getElementById("next-estimate-history");
const attachedEl = document.getElementById("next-estimate-attachments");
const priceEl = document.getElementById("next-estimate-price");
const contextText = document.getElementById("context-text");
const meter = document.getElementById("context-meter");
const cutNote = document.getElementById("context-cut");
const input = document.getElementById("message-input");
const modelSelect = document.getElementById("model-select");
const systemPromptInput = document.getElementById("setting-system-prompt");

let timer = null;
let asked = 0; // the latest draft's number: an answer about an older one is dropped
let olderLeftOut = data.older_messages_left_out || 0;
let attachmentTokens = (data.gauge && data.gauge.attachment_tokens) || 0;

// A new chat's system prompt is still on the page and goes with the first message; a conversation's
// own is on the server, which counts it.
function pageSystemPrompt() {
  if (data.conversation_id || !systemPromptInput) return "";
  return systemPromptInput.value;
}

function percentText(tokens, window) {
  const percent = (100 * tokens) / window;
  if (tokens > 0 && percent < 0.5) return "under 1%";
  return Math.round(percent) + "%";
}

function showContext(tokens, window) {
  if (window) {
    contextText.textContent = "Context: " + countText(tokens) + " of " + countText(window) + " tokens (" +
      percentText(tokens, window) + ")";
    meter.max = window;
    meter.value = Math.min(tokens, window);
    meter.high = Math.round(window * 0.8);
    meter.optimum = 0;
    meter.hidden = false;
  } else {
    contextText.textContent = "Context: " + countText(tokens) + " tokens; context window unknown";
    meter.hidden = true;
  }
}

function showPrice(cost, free) {
  priceEl.textContent = "";
  if (cost === null || cost === undefined) {
    priceEl.textContent = "price unknown";
    return;
  }
  if (free) {
    priceEl.textContent = "free";
    return;
  }
  const money = moneyNode(cost);
  money.id = "next-estimate-cost";
  priceEl.appendChild(document.createTextNode("about "));
  priceEl.appendChild(money);
}

// `figures`: { prompt, history, cost (a decimal string; null: no price), window (null: unknown), free }.
function show(figures, source) {
  tokensEl.textContent = countText(figures.prompt);
  historyEl.textContent = countText(figures.history);
  if (attachedEl) {
    attachedEl.hidden = !attachmentTokens;
    attachedEl.querySelector("span").textContent = countText(attachmentTokens);
  }
  showPrice(figures.cost, figures.free);
  showContext(figures.prompt, figures.window);
  cutNote.hidden = !olderLeftOut;
  cutNote.textContent = countText(olderLeftOut) + " older message" + (olderLeftOut === 1 ? "" : "s") +
    " not sent: the history is cut to fit the context budget.";
  holder.setAttribute("data-source", source);
  holder.setAttribute("aria-busy", source === "local" ? "true" : "false");
}

function ask(number, model, draft, systemPrompt) {
  const body = { message: draft, model: model.id };
  if (data.conversation_id) body.conversation_id = data.conversation_id;
  else if (systemPrompt) body.system_prompt = systemPrompt;
  window.fetch(data.estimate_url, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": data.csrf_token },
    body: JSON.stringify(body),
  })
    .then((response) => (response.ok ? response.json() : null))
    .then((answer) => {
      if (!answer || number !== asked) return;
      // The history's figure for the next local count (a new chat's page-side system prompt is added apart).
      if (!body.system_prompt) model.base_prompt_tokens = answer.base_prompt_tokens;
      olderLeftOut = answer.older_messages_left_out || 0;
      attachmentTokens = answer.attachment_tokens || 0;
      show({
        prompt: answer.estimated_prompt_tokens, history: answer.base_prompt_tokens,
        cost: answer.estimated_cost, window: answer.context_window, free: model.pricing_source === "free",
      }, "server");
    })
    .catch(() => { /* the local figure stays, marked as such */ });
}

// After any change to the draft, the model, the settings or the history.
export function refreshEstimate() {
  const model = modelInfo(modelSelect.value);
  if (!model) return;
  const draft = input.value;
  const systemPrompt = pageSystemPrompt();
  const history = model.base_prompt_tokens + (systemPrompt ? countTokens(systemPrompt) + MESSAGE_OVERHEAD : 0);
  const prompt = history + countTokens(draft);
  const number = ++asked;
  const price = model.input_per_mtok;
  show({
    prompt, history, cost: price === null || price === undefined ? null : costOf(prompt, price),
    window: model.context_window, free: model.pricing_source === "free",
  }, "local");
  window.clearTimeout(timer);
  timer = window.setTimeout(() => ask(number, model, draft, systemPrompt), DEBOUNCE_MS);
}

// The next send resends this exchange too: add it to every model's history figure (the server's
// next answer puts the exact one in place).
export function growHistory(userText, replyText) {
  data.models.forEach((model) => {
    model.base_prompt_tokens += countTokens(userText) + countTokens(replyText) + 2 * (model.per_turn_tokens || 0);
  });
}
