// The message box: Enter sends, Shift+Enter starts a new line, Escape stops a reply; Send and Stop.
import { clearError, showError } from "./dom.js";
import { ERROR_TEXT } from "./errors.js";
import { refreshEstimate } from "./estimate.js";
import { data } from "./page.js";

const form = document.getElementById("composer");
const input = document.getElementById("message-input");
const modelSelect = document.getElementById("model-select");
const sendButton = document.getElementById("send-button");
const stopButton = document.getElementById("stop-button");

export function setBusy(busy) {
  sendButton.disabled = busy;
  stopButton.disabled = !busy;
}

// A message refused before it was stored comes back to be edited (unless a new draft is there).
export function giveBack(text) {
  if (!input.value) input.value = text;
}

// `exchange`: isBusy(), start(text, model) to send a message, stop() to stop the reply.
export function wireComposer(exchange) {
  function submit() {
    const text = input.value;
    if (!text.trim()) {
      showError(ERROR_TEXT.INVALID_MESSAGE);
      input.focus();
      return;
    }
    if (exchange.isBusy()) return;
    if (text.length > data.max_message_chars) {
      showError(ERROR_TEXT.INVALID_MESSAGE);
      return;
    }
    clearError();
    exchange.start(text, modelSelect.value);
    input.value = "";
    input.focus();
    refreshEstimate();
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submit();
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && exchange.isBusy()) {
      event.preventDefault();
      stopButton.click();
      return;
    }
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      submit();
    }
  });
  input.addEventListener("input", refreshEstimate);
  modelSelect.addEventListener("change", refreshEstimate);
  stopButton.addEventListener("click", () => exchange.stop());
}
