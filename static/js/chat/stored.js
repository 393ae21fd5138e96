// After a stopped, failed or cut-short exchange: what the server stored (and billed) for it.
import { addFlag, assistantBadges, userBilledBadges } from "./badges.js";
import { growHistory, refreshEstimate } from "./estimate.js";
import { firstLine, setConversationUsage, updateAccount, updateBudget, updateSidebar } from "./figures.js";
import { data } from "./page.js";
import { renderMarkdown } from "./render.js";
import { addBubble, scrollDown } from "./transcript.js";
import { decorateQuestion, versionsOf } from "./versions.js";

// An answer still being settled (its server has not yet seen the socket go) is read again this
// often, this many times, until it is settled.
const UNSETTLED_RETRY_MS = 1500;
const UNSETTLED_RETRIES = 10;

function getJson(url) {
  return window.fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
    .then((response) => (response.ok ? response.json() : null));
}

function wait(ms) {
  return new Promise((resolve) => { window.setTimeout(resolve, ms); });
}

function showMessage(ended, message) {
  // A regeneration's question keeps its own id; its new answer is known by the id stream_start gave.
  const question = (ended.options && ended.options.questionId) || ended.requestId;
  const answerId = ended.assistant ? ended.assistant.getAttribute("data-message-id") : null;
  if (message.role === "user" && message.id === question) {
    if (ended.userBubble) {
      userBilledBadges(ended.userBubble, message.prompt_tokens, message.figures_source);
      decorateQuestion(ended.userBubble, ended.assistant ? versionsOf(ended.assistant).length : 1);
    }
  } else if (message.role === "assistant" && !message.superseded &&
             (answerId ? message.id === answerId : message.user_message_id === question)) {
    // No bubble yet when the socket went before the reply began (or a replay said how it ended).
    if (!ended.assistant) ended.assistant = addBubble("assistant", message.id, "");
    ended.assistant.setAttribute("data-message-id", message.id);
    ended.assistant.setAttribute("data-user-message-id", question);
    ended.assistant.setAttribute("aria-busy", "false");
    const content = ended.assistant.querySelector(".bubble-content");
    content.classList.remove("streaming");
    // What was stored (and billed) may run a few words past what had arrived.
    if ((message.content || "").length > ended.text.length) renderMarkdown(content, message.content, scrollDown);
    assistantBadges(ended.assistant, message);
    if ((message.status === "error" || message.status === "interrupted") && message.figures_source !== "none") {
      addFlag(ended.assistant, message.status);
    }
  }
}

function unsettled(conversation, ended) {
  return (conversation.messages || []).some((message) => message.role === "assistant" &&
    message.user_message_id === ended.requestId && message.status === "streaming");
}

function readConversation(ended, triesLeft) {
  return getJson("/api/v1/conversations/" + encodeURIComponent(data.conversation_id)).then((conversation) => {
    if (conversation && triesLeft > 0 && unsettled(conversation, ended)) {
      return wait(UNSETTLED_RETRY_MS).then(() => readConversation(ended, triesLeft - 1));
    }
    return conversation;
  });
}

// `ended`: the exchange as the page kept it (request id, bubbles, texts, totals before it).
// Resolves once it is shown (or could not be read: the figures are on the server, a reload shows them).
export function showStored(ended) {
  return readConversation(ended, UNSETTLED_RETRIES)
    .then((conversation) => {
      if (!conversation) return null;
      (conversation.messages || []).forEach((message) => showMessage(ended, message));
      setConversationUsage(conversation.conversation_usage);
      updateAccount(ended.before, conversation.conversation_usage);
      updateSidebar(data.conversation_id, conversation.conversation_usage, firstLine(ended.userText),
        conversation.last_message_preview || "");
      growHistory(ended.userText, ended.text);
      refreshEstimate();
      scrollDown();
      return getJson("/api/v1/budget");
    })
    .then((budget) => { if (budget) updateBudget(budget); })
    .catch(() => { /* the figures are on the server; a reload shows them */ });
}
