// A bubble's figures as badges: the same markup as templates/chat/_badges.html.
import { el } from "./dom.js";
import { countText, moneyDisplay, moneyNode } from "./money.js";

function estimateMarks(node) {
  const mark = el("span", null, "≈");
  mark.setAttribute("aria-hidden", "true");
  node.appendChild(mark);
  node.appendChild(el("span", "visually-hidden", "estimate: "));
}

function badge(kind, state, text, attrs) {
  const marked = state === "estimate" || state === "streaming";
  const node = el("span", "badge" + (marked ? " estimate" : ""));
  node.setAttribute("data-badge", kind);
  node.setAttribute("data-state", state);
  if (marked) estimateMarks(node);
  node.appendChild(typeof text === "string" ? document.createTextNode(text) : text);
  Object.entries(attrs || {}).forEach(([key, value]) => node.setAttribute(key, value));
  return node;
}

export function setBadges(article, nodes) {
  const holder = article.querySelector(".badges");
  holder.textContent = "";
  nodes.forEach((node, i) => {
    if (i) holder.appendChild(document.createTextNode(" "));
    holder.appendChild(node);
  });
}

// A status flag ("stopped", "not sent", "error"...), optionally with a data-state.
export function statusFlag(text, state) {
  const flag = el("span", "badge flag", text);
  flag.setAttribute("data-badge", "status");
  if (state) flag.setAttribute("data-state", state);
  return flag;
}

// Appended after the badges already there.
export function addFlag(article, text) {
  const holder = article.querySelector(".badges");
  holder.appendChild(document.createTextNode(" "));
  holder.appendChild(statusFlag(text));
}

export function pendingBadges(article) {
  const node = el("span", "badge pending", "input tokens pending");
  node.setAttribute("data-badge", "input");
  node.setAttribute("data-state", "pending");
  setBadges(article, [node]);
}

// A call the provider did not bill (it failed before any output) says: nothing was charged.
export function userBilledBadges(article, promptTokens, source) {
  if (source === "none") return setBadges(article, [statusFlag("not charged", "not-charged")]);
  if (promptTokens === null || promptTokens === undefined) return;
  setBadges(article, [badge("input", source === "estimate" ? "estimate" : "billed", countText(promptTokens) + " tokens in",
    { "data-tokens": String(promptTokens) })]);
}

export function streamingBadges(article, promptEstimate, completionEstimate) {
  setBadges(article, [badge("output", "streaming", countText(promptEstimate) + " in → " + countText(completionEstimate) + " out",
    { "data-tokens": String(completionEstimate), "data-prompt-estimate": String(promptEstimate) })]);
}

export function assistantBadges(article, message) {
  if (message.figures_source === "none") {
    const text = message.status === "cancelled" ? "stopped, not charged" : "failed, not charged";
    return setBadges(article, [statusFlag(text, "not-charged")]);
  }
  const isEstimate = message.figures_source === "estimate";
  const state = isEstimate ? "estimate" : "billed";
  const nodes = [];
  if (message.completion_tokens !== null && message.completion_tokens !== undefined) {
    nodes.push(badge("output", state, countText(message.completion_tokens) + " tokens out",
      { "data-tokens": String(message.completion_tokens) }));
  }
  if (message.reasoning_tokens) {
    const reasoning = badge("reasoning", "billed", countText(message.reasoning_tokens) + " reasoning",
      { "data-tokens": String(message.reasoning_tokens) });
    if (isEstimate) reasoning.className += " estimate";
    nodes.push(reasoning);
  }
  if (message.cost !== null && message.cost !== undefined) {
    nodes.push(badge("cost", state, moneyNode(message.cost), { "data-cost": moneyDisplay(message.cost) }));
  } else if (message.figures_source === "provider" || message.figures_source === "estimate") {
    nodes.push(badge("cost", "unknown", "price unknown")); // no source prices the model
  }
  if (message.status === "cancelled") nodes.push(statusFlag("stopped"));
  setBadges(article, nodes);
}
