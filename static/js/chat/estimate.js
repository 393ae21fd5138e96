// The "before sending" estimate under the message box: the next message's input tokens and price.
// The server counts every draft exactly as the send will count it (chat/estimate.py; the BPE
// tokenizer for OpenAI-family models), asked DEBOUNCE_MS after the last change. Until it answers,
// the figure is the page's heuristic for the draft on top of the history's figure, marked
// data-source="local"; the server's answer replaces it, marked data-source="server".
import { costOf, moneyDisplay } from "./money.js";
import { data, modelInfo } from "./page.js";
import { countTokens } from "./tokens.js";

const DEBOUNCE_MS = 250;
const holder = document.getElementById("next-estimate");
const tokensEl = document.getElementById("next-estimate-tokens");
const costEl = document.getElementById("next-estimate-cost");
const input = document.getElementById("message-input");
const modelSelect = document.getElementById("model-select");

let timer = null;
let asked = 0; // the latest draft's number: an answer about an older one is dropped

function show(model, tokens, source) {
  tokensEl.textContent = String(tokens);
  costEl.textContent = moneyDisplay(costOf(tokens, model.input_per_mtok));
  holder.setAttribute("data-source", source);
  holder.setAttribute("aria-busy", source === "local" ? "true" : "false");
}

function ask(number, model, draft) {
  const body = { message: draft, model: model.id };
  if (data.conversation_id) body.conversation_id = data.conversation_id;
  window.fetch(data.estimate_url, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": data.csrf_token },
    body: JSON.stringify(body),
  })
    .then((response) => (response.ok ? response.json() : null))
    .then((answer) => {
      if (!answer || number !== asked) return;
      model.base_prompt_tokens = answer.base_prompt_tokens;
      show(model, answer.estimated_prompt_tokens, "server");
    })
    .catch(() => { /* the local figure stays, marked as such */ });
}

// After any change to the draft, the model or the history.
export function refreshEstimate() {
  const model = modelInfo(modelSelect.value);
  if (!model) return;
  const draft = input.value;
  const number = ++asked;
  show(model, model.base_prompt_tokens + countTokens(draft), "local");
  window.clearTimeout(timer);
  timer = window.setTimeout(() => ask(number, model, draft), DEBOUNCE_MS);
}

// The next send resends this exchange too: add it to every model's history figure (the server's
// next answer puts the exact one in place).
export function growHistory(userText, replyText) {
  data.models.forEach((model) => {
    model.base_prompt_tokens += countTokens(userText) + countTokens(replyText) + 2 * (model.per_turn_tokens || 0);
  });
}
