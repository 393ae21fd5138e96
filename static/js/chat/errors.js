// What the page says for each of the contract's error codes (API.md "Error codes").
import { moneyDisplay } from "./money.js";

export const ERROR_TEXT = {
  INVALID_MESSAGE: "That message can't be sent: it is empty, only spaces, or longer than the limit.",
  UNAUTHENTICATED: "You are signed out. Sign in again to keep chatting.",
  CONVERSATION_NOT_FOUND: "This conversation no longer exists. Start a new chat.",
  MODEL_UNAVAILABLE: "That model is not available right now (its provider has no key). Pick another model.",
  TOKEN_LIMIT_EXCEEDED: "This message would go over your budget.",
  RATE_LIMITED: "Too many requests right now. Wait a moment and try again.",
  PROVIDER_ERROR: "The model's provider failed to answer. Try again, or pick another model.",
  TIMEOUT: "The model did not answer in time. Try again.",
  CANCELLED: "Stopped. The partial answer was kept.",
};

function budgetText(text, details) {
  const parts = [text];
  if (details.token_limit !== null && details.token_limit !== undefined) {
    parts.push("Your " + (details.period || "") + " limit is " + details.token_limit + " tokens; " +
      (details.tokens_used || 0) + " are used" + (details.tokens_held ? " and " + details.tokens_held + " held" : "") +
      ", and this message needs up to " + (details.tokens_requested || "?") + ".");
  }
  if (details.cost_limit) {
    parts.push("Cost limit $" + moneyDisplay(details.cost_limit) + ", used $" + moneyDisplay(details.cost_used) + ".");
  }
  const reset = details.reset_at || details.period_end;
  if (reset) parts.push("It resets on " + new Date(reset).toLocaleString() + ".");
  return parts.join(" ");
}

// The sentence for an `error` event.
export function errorText(payload) {
  const text = ERROR_TEXT[payload.code] || payload.message || "Something went wrong.";
  const details = payload.details || {};
  if (payload.code === "TOKEN_LIMIT_EXCEEDED") return budgetText(text, details);
  if (payload.code === "INVALID_MESSAGE" && payload.message) return text + " (" + payload.message + ")";
  if (payload.code === "RATE_LIMITED" && details.reason === "conversation_busy") {
    return "This conversation is still answering a message. Wait for it, or stop it first.";
  }
  return text;
}
