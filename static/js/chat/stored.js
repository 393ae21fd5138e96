// After a stopped or failed exchange: what the server stored (and billed) for it, read once.
import { addFlag, assistantBadges, userBilledBadges } from "./badges.js";
import { growHistory, refreshEstimate } from "./estimate.js";
import { firstLine, setConversationUsage, updateAccount, updateBudget, updateSidebar } from "./figures.js";
import { data } from "./page.js";
import { scrollDown } from "./transcript.js";
import { decorateQuestion, versionsOf } from "./versions.js";

function getJson(url) {
  return window.fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
    .then((response) => (response.ok ? response.json() : null));
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
  } else if (message.role === "assistant" && ended.assistant && !message.superseded &&
             (answerId ? message.id === answerId : message.user_message_id === question)) {
    ended.assistant.setAttribute("data-message-id", message.id);
    const content = ended.assistant.querySelector(".bubble-content");
    // What was stored (and billed) may run a few words past what had arrived.
    if ((message.content || "").length > content.textContent.length) content.textContent = message.content;
    assistantBadges(ended.assistant, message);
    if ((message.status === "error" || message.status === "interrupted") && message.figures_source !== "none") {
      addFlag(ended.assistant, message.status);
    }
  }
}

// `ended`: the exchange as the page kept it (request id, bubbles, texts, totals before it).
export function showStored(ended) {
  getJson("/api/v1/conversations/" + encodeURIComponent(data.conversation_id))
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
