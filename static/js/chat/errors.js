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
  SERVICE_UNAVAILABLE: "The server is too busy right now; nothing was sent or charged. Try again in a moment.",
  // The connection (connection.js, exchange.js): said only in the case each names.
  NOT_SENT_OFFLINE: "Not sent: there was no connection. Your message is back in the box.",
  UNCONFIRMED: "The server had not confirmed your message when the connection dropped. It is back in the box; " +
    "sending it unchanged is safe (it is never charged twice).",
  DROPPED_STREAMING: "The connection dropped while the reply was streaming. The server kept what had arrived " +
    "(shown here with its figures).",
  DROPPED_BEFORE_REPLY: "The connection dropped after your message was saved, before the reply began. " +
    "What the server stored is shown here.",
  IN_PROGRESS: "Your message reached the server before the connection dropped, and its reply is still being " +
    "settled there. Reload the page in a moment to see it.",
  REPLAYED_ENDED: "Your message had reached the server before the connection dropped, and its reply was cut " +
    "short there. What the server stored is shown here.",
};

const PERIOD_WORDS = { daily: "today", weekly: "this week", monthly: "this month" };

function count(n) {
  return Number(n).toLocaleString("en-US");
}

// What is left, what the message needs at least (its prompt and the least answer) and what to do.
function budgetText(details) {
  const period = PERIOD_WORDS[details.period] || "this period";
  const parts = [];
  const tokensShort = details.tokens_left !== null && details.tokens_left !== undefined &&
    details.tokens_left < details.tokens_needed;
  if (tokensShort || !details.cost_left) {
    parts.push("Not sent: your budget has " + count(details.tokens_left) + " tokens left " + period +
      ", and this message needs at least " + count(details.tokens_needed) + " (" + count(details.prompt_tokens) +
      " for the message and its history, " + count(details.min_output_tokens) + " for the answer).");
  } else {
    parts.push("Not sent: your budget has $" + moneyDisplay(details.cost_left) + " left " + period +
      ", and this message needs at least $" + moneyDisplay(details.cost_needed) + " at this model's price.");
  }
  const reset = details.reset_at || details.period_end;
  const when = reset ? " on " + new Date(reset).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" }) : "";
  parts.push("Wait for it to reset" + when + ", or ask an administrator to raise your limit.");
  return parts.join(" ");
}

// The sentence for an `error` event.
export function errorText(payload) {
  const text = ERROR_TEXT[payload.code] || payload.message || "Something went wrong.";
  const details = payload.details || {};
  if (payload.code === "TOKEN_LIMIT_EXCEEDED" && details.tokens_needed !== undefined) return budgetText(details);
  if (payload.code === "INVALID_MESSAGE" && payload.message) return text + " (" + payload.message + ")";
  if (payload.code === "RATE_LIMITED" && details.reason === "conversation_busy") {
    return "This conversation is still answering a message. Wait for it, or stop it first.";
  }
  return text;
}
