// The message box: Enter sends, Shift+Enter starts a new line, Escape stops a reply; Send and Stop.
//
// Typed text is never lost. The draft is kept in sessionStorage per conversation as it is typed, so
// a reload (or a crash of the tab's page) brings it back. A sent message leaves the box for its
// bubble, but a copy stays in sessionStorage ("unsent", with its client_message_id) until the
// server confirms it (message_saved): a reload before that puts it back in the box, and sending it
// unchanged reuses its client_message_id, so a copy the server did store is replayed, not billed
// twice. A message refused before it was stored comes back into the box (before any newer draft).
import { clearError, showError } from "./dom.js";
import { ERROR_TEXT } from "./errors.js";
import { refreshEstimate } from "./estimate.js";
import { data } from "./page.js";

const form = document.getElementById("composer");
const input = document.getElementById("message-input");
const modelSelect = document.getElementById("model-select");
const sendButton = document.getElementById("send-button");
const stopButton = document.getElementById("stop-button");

const PREFIX = "chatlima.";
// The id a message given back (or restored after a reload) keeps while its text is unchanged.
let keptId = null;
let keptText = null;

function storage() {
  try {
    return window.sessionStorage;
  } catch (err) {
    return null; // storage refused (privacy settings): the box still works, without surviving a reload
  }
}

function key(kind, conversationId) {
  return PREFIX + kind + "." + (conversationId || "new");
}

function read(kind, conversationId) {
  const store = storage();
  return store ? store.getItem(key(kind, conversationId)) : null;
}

function write(kind, value, conversationId) {
  const store = storage();
  if (!store) return;
  try {
    if (value) store.setItem(key(kind, conversationId), value);
    else store.removeItem(key(kind, conversationId));
  } catch (err) { /* full: the draft is still in the box */ }
}

function saveDraft() {
  write("draft", input.value, data.conversation_id);
}

function setInput(text) {
  input.value = text;
  saveDraft();
  refreshEstimate();
}

function join(first, second) {
  return second && second !== first ? first + "\n\n" + second : first;
}

export function setBusy(busy) {
  sendButton.disabled = busy;
  stopButton.disabled = !busy;
}

// A message that was not stored comes back to be edited, before any newer draft; `id`: its
// client_message_id, reused if it is sent again unchanged.
export function giveBack(text, id) {
  const draft = input.value;
  setInput(join(text, draft));
  keptId = draft ? null : id || null;
  keptText = text;
  write("unsent", null, data.conversation_id);
}

// The client_message_id for `text`: the one it had if it comes back unchanged, else null.
export function reusedId(text) {
  return keptId && text === keptText ? keptId : null;
}

// Sent (or waiting to be): a copy stays until the server confirms it.
export function holdUnsent(text, id) {
  write("unsent", JSON.stringify({ text, id }), data.conversation_id);
}

// message_saved: the server has the message. `from`: the conversation id the page had when it sent
// (null for a new chat); the draft typed meanwhile moves to the conversation's own key.
export function confirmed(from) {
  write("unsent", null, from);
  if (from !== data.conversation_id) {
    write("draft", null, from);
    saveDraft();
  }
}

// On load: the draft and any unconfirmed message of this conversation back in the box, unless the
// transcript shows the server stored that message (then it was sent after all).
export function restoreDraft(storedIds) {
  let text = read("draft", data.conversation_id) || "";
  let unsent = null;
  try {
    unsent = JSON.parse(read("unsent", data.conversation_id) || "null");
  } catch (err) {
    unsent = null;
  }
  if (unsent && unsent.text && !storedIds.has(unsent.id)) {
    text = join(unsent.text, text);
    if (text === unsent.text) {
      keptId = unsent.id;
      keptText = unsent.text;
    }
  } else if (unsent) {
    write("unsent", null, data.conversation_id);
  }
  if (text && !input.value) input.value = text;
  saveDraft();
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
    keptId = null;
    keptText = null;
    input.value = "";
    saveDraft();
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
  input.addEventListener("input", () => {
    saveDraft();
    refreshEstimate();
  });
  modelSelect.addEventListener("change", refreshEstimate);
  stopButton.addEventListener("click", () => exchange.stop());
}
