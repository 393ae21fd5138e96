// What a person can do with a message (issue 15): on an answer "Copy" (its markdown), "Regenerate"
// (a new version, its own exchange and usage row) and the version switcher; on their own message
// "Edit" (a textarea with "Save and send" / "Cancel"; Escape cancels) which resends it, the
// conversation continuing from the edited message. One listener on the transcript for them all.
import { announce, clearError, el, showError } from "./dom.js";
import { ERROR_TEXT } from "./errors.js";
import { data } from "./page.js";
import { findUserBubble } from "./transcript.js";
import { markdownOf, markEdited, openNewVersion, showVersion, shownVersion, takeOut, versionsOf } from "./versions.js";

const transcript = document.getElementById("transcript");
const modelSelect = document.getElementById("model-select");
const messageInput = document.getElementById("message-input");

function copy(article, button) {
  const version = versionsOf(article)[shownVersion(article)];
  const text = markdownOf(version);
  const done = () => {
    button.textContent = "Copied";
    announce("Copied");
    window.setTimeout(() => { button.textContent = "Copy"; }, 1500);
  };
  if (navigator.clipboard && navigator.clipboard.writeText) {
    navigator.clipboard.writeText(text).then(done, () => showError("The answer could not be copied."));
  } else {
    showError("The answer could not be copied: this browser gives no clipboard here.");
  }
}

function regenerate(article, exchange) {
  if (exchange.isBusy()) return;
  const questionId = article.getAttribute("data-user-message-id");
  const question = questionId ? findUserBubble(questionId) : null;
  const questionText = question ? question.querySelector(":scope > .bubble-content").textContent : "";
  clearError();
  exchange.start(questionText, modelSelect.value, {
    regenerate: article.getAttribute("data-message-id"),
    question,
    questionId,
    onSaved: () => takeOut(article, false),
    answerInto: () => openNewVersion(article),
    focusAfter: () => article.querySelector("[data-action='regenerate']"),
  });
  announce("Regenerating the answer.");
}

function closeEditor(article, form) {
  form.remove();
  article.querySelectorAll(":scope > .bubble-content, :scope > .message-actions").forEach((node) => { node.hidden = false; });
}

function openEditor(article, exchange) {
  if (article.querySelector(":scope > .edit-form")) return;
  const content = article.querySelector(":scope > .bubble-content");
  const bar = article.querySelector(":scope > .message-actions");
  const form = el("form", "edit-form");
  form.noValidate = true;
  const id = "edit-" + (article.getAttribute("data-message-id") || Date.now());
  const label = el("label", "visually-hidden", "Edit your message");
  label.htmlFor = id;
  const box = el("textarea");
  box.id = id;
  box.rows = Math.min(10, Math.max(2, content.textContent.split("\n").length));
  box.maxLength = data.max_message_chars;
  box.value = content.textContent;
  const buttons = el("p", "edit-buttons");
  const save = el("button", "primary", "Save and send");
  save.type = "submit";
  const cancel = el("button", "secondary", "Cancel");
  cancel.type = "button";
  buttons.append(save, " ", cancel);
  form.append(label, box, buttons);
  content.hidden = true;
  bar.hidden = true;
  content.after(form);

  const back = () => {
    closeEditor(article, form);
    bar.querySelector("[data-action='edit']").focus();
  };
  const submit = () => {
    const text = box.value;
    if (!text.trim() || text.length > data.max_message_chars) {
      showError(ERROR_TEXT.INVALID_MESSAGE);
      box.focus();
      return;
    }
    if (exchange.isBusy()) return;
    clearError();
    closeEditor(article, form);
    exchange.start(text, modelSelect.value, {
      edit_of: article.getAttribute("data-message-id"),
      // Once stored, the old message and everything after it leave the thread.
      onSaved: (bubble) => markEdited(bubble, article, takeOut(article, true, bubble)),
      // Refused before it was stored (a budget, a bad field): nothing changed; the edit comes back.
      onRefused: (bubble) => {
        if (bubble) bubble.remove();
        openEditor(article, exchange);
        const again = article.querySelector(":scope > .edit-form textarea");
        if (again) { again.value = text; again.focus(); }
      },
    });
    messageInput.focus();
  };
  form.addEventListener("submit", (event) => { event.preventDefault(); submit(); });
  cancel.addEventListener("click", back);
  box.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      event.preventDefault();
      back();
    } else if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      submit();
    }
  });
  box.focus();
  box.setSelectionRange(box.value.length, box.value.length);
}

function step(article, by) {
  const shown = showVersion(article, shownVersion(article) + by);
  announce("Version " + (shown + 1) + " of " + versionsOf(article).length);
}

// `exchange`: isBusy(), start(text, model, options) (exchange.js).
export function wireActions(exchange) {
  transcript.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button || button.disabled || !transcript.contains(button)) return;
    const article = button.closest(".message");
    if (!article) return;
    switch (button.getAttribute("data-action")) {
      case "copy": copy(article, button); break;
      case "regenerate": regenerate(article, exchange); break;
      case "edit": if (!exchange.isBusy()) openEditor(article, exchange); break;
      case "previous-version": step(article, -1); break;
      case "next-version": step(article, 1); break;
      default: break;
    }
  });
}
