// "Conversation settings" in the chat header: System prompt, Temperature, Max output tokens, and the
// message box's model select as the model. In a conversation they are saved with
// PATCH /api/v1/conversations/<id> (session + CSRF) and the next message uses them; in a new chat they
// stay on the page and go with the first message (the send body's system_prompt, temperature and
// max_tokens), which stores them on the conversation it creates. "Saved" is announced; a refusal is
// shown by its field.
import { announce, showError } from "./dom.js";
import { refreshEstimate } from "./estimate.js";
import { countText } from "./money.js";
import { data } from "./page.js";

const form = document.getElementById("settings-form");
const statusEl = document.getElementById("settings-status");
const modelSelect = document.getElementById("model-select");
const FIELDS = {
  system_prompt: document.getElementById("setting-system-prompt"),
  temperature: document.getElementById("setting-temperature"),
  max_tokens: document.getElementById("setting-max-tokens"),
};
const LIMITS = data.settings_limits || { max_tokens: 1000000 };

function fieldError(name, text) {
  const box = document.getElementById(FIELDS[name].id + "-error");
  box.textContent = text || "";
  box.hidden = !text;
  if (text) FIELDS[name].setAttribute("aria-invalid", "true");
  else FIELDS[name].removeAttribute("aria-invalid");
}

function clearErrors() {
  Object.keys(FIELDS).forEach((name) => fieldError(name, ""));
}

function setStatus(text) {
  statusEl.textContent = "";
  window.setTimeout(() => { statusEl.textContent = text; }, 50); // a repeated "Saved" is read again
}

// The three fields as the API takes them (null: the default), or null after showing what is wrong.
function readFields(focus = true) {
  clearErrors();
  const values = { system_prompt: FIELDS.system_prompt.value };
  let ok = true;
  const temperature = FIELDS.temperature.value.trim();
  if (!temperature && FIELDS.temperature.validity.badInput) {
    fieldError("temperature", "Temperature must be a number from 0 to 2.");
    ok = false;
  } else if (temperature === "") {
    values.temperature = null;
  } else if (!/^\d*\.?\d+$/.test(temperature) || Number(temperature) > 2) {
    fieldError("temperature", "Temperature must be a number from 0 to 2.");
    ok = false;
  } else {
    values.temperature = Number(temperature);
  }
  const maxTokens = FIELDS.max_tokens.value.trim();
  const limitText = countText(LIMITS.max_tokens);
  if (!maxTokens && FIELDS.max_tokens.validity.badInput) {
    fieldError("max_tokens", "Max output tokens must be a whole number from 1 to " + limitText + ".");
    ok = false;
  } else if (maxTokens === "") {
    values.max_tokens = null;
  } else if (!/^\d+$/.test(maxTokens) || Number(maxTokens) < 1 || Number(maxTokens) > LIMITS.max_tokens) {
    fieldError("max_tokens", "Max output tokens must be a whole number from 1 to " + limitText + ".");
    ok = false;
  } else {
    values.max_tokens = Number(maxTokens);
  }
  if (!ok) {
    const first = Object.keys(FIELDS).find((name) => FIELDS[name].getAttribute("aria-invalid") === "true");
    document.getElementById("conv-settings").open = true;
    if (focus) FIELDS[first].focus();
    setStatus("Not saved: see the fields marked.");
    return null;
  }
  return values;
}

function patch(body) {
  return window.fetch("/api/v1/conversations/" + encodeURIComponent(data.conversation_id), {
    method: "PATCH",
    credentials: "same-origin",
    headers: { Accept: "application/json", "Content-Type": "application/json", "X-CSRFToken": data.csrf_token },
    body: JSON.stringify(body),
  }).then((response) => response.json().catch(() => ({})).then((answer) => {
    if (response.ok) return answer;
    const error = answer.error || {};
    const refused = new Error(error.message || "The server refused (" + response.status + ").");
    refused.details = error.details || {};
    throw refused;
  }));
}

// A refusal's details are keyed by field (DRF's errors): each is shown by its field.
function showRefusal(error) {
  const named = Object.keys(error.details || {}).filter((name) => FIELDS[name]);
  named.forEach((name) => {
    const said = error.details[name];
    fieldError(name, Array.isArray(said) ? said.join(" ") : String(said));
  });
  if (named.length) FIELDS[named[0]].focus();
  setStatus("Not saved: " + error.message);
}

function save(event) {
  event.preventDefault();
  const values = readFields();
  if (!values) return;
  if (!data.conversation_id) {
    setStatus("Kept: your first message will use these settings.");
    refreshEstimate();
    return;
  }
  relabel();
  patch(values).then(() => {
    setStatus("Saved");
    refreshEstimate(); // the system prompt is part of the next prompt
  }, showRefusal);
}

// What the first message of a new chat carries (a conversation's settings are on the server).
export function sendSettings() {
  if (data.conversation_id || !form) return {};
  const values = readFields(false);
  if (!values) return {}; // sent with the defaults; the fields say what was wrong
  const extra = {};
  if (values.system_prompt) extra.system_prompt = values.system_prompt;
  if (values.temperature !== null) extra.temperature = values.temperature;
  if (values.max_tokens !== null) extra.max_tokens = values.max_tokens;
  return extra;
}

// The message box's model select is the conversation's model: a change in a conversation is saved.
function saveModel() {
  if (!data.conversation_id) return;
  const label = modelSelect.options[modelSelect.selectedIndex].text.split(" — ")[0];
  patch({ model: modelSelect.value }).then(
    () => announce("Model saved: " + label + "."),
    (error) => showError("The model was not saved: " + error.message),
  );
}

// Once the first message has made the conversation, the form saves to it: say so when it is opened.
function relabel() {
  if (!data.conversation_id) return;
  document.getElementById("settings-save").textContent = "Save settings";
  document.getElementById("settings-note").textContent =
    "Saved to this conversation; the next message uses them. The model is the one chosen by the message box.";
}

export function wireSettings() {
  if (!form) return;
  form.addEventListener("submit", save);
  document.getElementById("conv-settings").addEventListener("toggle", relabel);
  FIELDS.system_prompt.addEventListener("input", () => { if (!data.conversation_id) refreshEstimate(); });
  modelSelect.addEventListener("change", saveModel);
}
