// The running figures around the transcript: the conversation's summary, the account's totals, the
// budget bar and the sidebar's entry for the conversation.
import { el } from "./dom.js";
import { countOf, countText, moneyNode, moveMoney } from "./money.js";
import { data } from "./page.js";
import { conversationActions } from "./sidebar.js";
import { plainText } from "./text.js";

export function setConversationUsage(usage) {
  if (!usage) return;
  document.querySelectorAll("#conv-summary [data-usage]").forEach((node) => {
    const key = node.getAttribute("data-usage");
    if (usage[key] === undefined) return;
    if (key === "cost") node.replaceChildren(moneyNode(usage[key]));
    else node.textContent = countText(usage[key]);
  });
}

function addToNumber(id, delta) {
  const node = document.getElementById(id);
  if (node && delta) node.textContent = countText(countOf(node.textContent) + delta);
}

// The account's totals move by what the conversation's totals moved.
export function updateAccount(before, after) {
  if (!before || !after) return;
  addToNumber("account-input", after.input_tokens - before.input_tokens);
  addToNumber("account-output", after.output_tokens - before.output_tokens);
  const cost = document.getElementById("account-cost");
  const shown = cost && cost.querySelector(".money");
  if (shown) cost.replaceChildren(moneyNode(moveMoney(shown.dataset.exact, before.cost, after.cost)));
}

export function updateBudget(budget) {
  if (!budget) return;
  const bar = document.getElementById("budget-bar");
  if (bar && budget.token_limit) {
    const percent = Math.min(100, Math.round(100 * budget.total_tokens_used / budget.token_limit));
    bar.value = percent;
    bar.textContent = percent + "%";
  }
  const used = document.getElementById("budget-used");
  if (used) used.textContent = countText(budget.total_tokens_used);
  const remaining = document.getElementById("budget-remaining");
  if (remaining && budget.remaining_tokens !== null && budget.remaining_tokens !== undefined) {
    remaining.textContent = countText(budget.remaining_tokens);
  }
}

// The server titles a new conversation with the first line of its first message.
export function firstLine(text) {
  return plainText(text.trim().split("\n")[0].slice(0, 60));
}

function newSidebarLink(list, conversation, title) {
  const empty = list.querySelector(".empty");
  if (empty) empty.remove();
  const item = el("li");
  const link = el("a");
  link.href = data.conversation_url_template.replace("__id__", encodeURIComponent(conversation));
  link.setAttribute("data-conversation-id", conversation);
  const heading = el("span", "conv-title", title);
  heading.id = "title-" + conversation;
  link.appendChild(heading);
  link.appendChild(el("span", "conv-preview", ""));
  const figures = el("span", "conv-figures figures", "");
  figures.setAttribute("data-field", "figures");
  link.appendChild(figures);
  item.appendChild(link);
  item.appendChild(conversationActions(conversation));
  return link;
}

// The conversation's entry, created if new, marked current and moved to the top.
export function updateSidebar(conversation, usage, title, preview) {
  const list = document.getElementById("conversation-list");
  if (!list || !conversation) return;
  const link = list.querySelector('a[data-conversation-id="' + CSS.escape(conversation) + '"]') ||
    newSidebarLink(list, conversation, title);
  list.querySelectorAll("a[aria-current]").forEach((a) => a.removeAttribute("aria-current"));
  link.setAttribute("aria-current", "page");
  const shown = preview.length > 100 ? preview.slice(0, 100) + "..." : preview;
  link.querySelector(".conv-preview").textContent = plainText(shown);
  if (usage) {
    link.querySelector(".conv-figures").replaceChildren(countText(usage.total_tokens) + " tokens · ", moneyNode(usage.cost));
  }
  list.insertBefore(link.parentNode, list.firstChild);
}
