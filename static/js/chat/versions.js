// Message actions' markup and answer versions, built as templates/chat/_message.html builds them:
// the action bar under each message (model, Copy, Regenerate, the version switcher; Edit), a new
// version opened in an answer's bubble, an edited message's "Earlier version". Text is set as text;
// no HTML from the wire goes in here. Event handling is actions.js's.
import { el } from "./dom.js";
import { countText, moneyDisplay, moneyNode, moveMoney } from "./money.js";
import { modelInfo } from "./page.js";

const transcript = document.getElementById("transcript");
let busyNow = false; // an exchange is streaming: every action waits

function actionButton(action, text, label) {
  const node = el("button", "action", text);
  node.type = "button";
  node.disabled = busyNow;
  node.setAttribute("data-action", action);
  if (label) node.setAttribute("aria-label", label);
  return node;
}

function sourceOf(text) {
  const holder = document.createElement("template");
  holder.className = "markdown-source";
  holder.content.appendChild(document.createTextNode(text || ""));
  return holder;
}

// The markdown an answer version was written in (what Copy copies).
export function markdownOf(holder) {
  const source = holder.querySelector(":scope > template.markdown-source");
  return source ? source.content.textContent : "";
}

export function modelName(id) {
  const info = modelInfo(id);
  return info ? info.display_name : (id || "");
}

// Each version of an answer, oldest first: the earlier ones' blocks, then the article itself (its
// own bubble content is the newest version).
export function versionsOf(article) {
  return [...article.querySelectorAll(":scope > .answer-versions > .answer-version"), article];
}

function liveParts(article) {
  return article.querySelectorAll(":scope > .bubble-content, :scope > .badges, :scope > .bubble-note");
}

function answerBar(article) {
  const bar = el("div", "message-actions");
  bar.setAttribute("role", "group");
  bar.setAttribute("aria-label", "Answer actions");
  bar.appendChild(el("span", "answer-model", article.getAttribute("data-model-name") || ""));
  bar.appendChild(actionButton("copy", "Copy"));
  bar.appendChild(actionButton("regenerate", "Regenerate"));
  const switcher = el("span", "version-switcher");
  switcher.hidden = true;
  switcher.appendChild(actionButton("previous-version", "‹", "Previous version"));
  switcher.appendChild(el("span", "version-label"));
  switcher.appendChild(actionButton("next-version", "›", "Next version"));
  bar.appendChild(switcher);
  return bar;
}

// Show version `index` (0 = oldest) of an answer: its text, badges and model; the switcher says which.
export function showVersion(article, index) {
  const versions = versionsOf(article);
  const shown = Math.max(0, Math.min(index, versions.length - 1));
  const newest = shown === versions.length - 1;
  liveParts(article).forEach((node) => { node.hidden = !newest; });
  versions.slice(0, -1).forEach((block, i) => { block.hidden = i !== shown; });
  article.setAttribute("data-shown-version", String(shown));
  const bar = article.querySelector(":scope > .message-actions");
  if (!bar) return shown;
  bar.querySelector(".answer-model").textContent = versions[shown].getAttribute("data-model-name") || "";
  const switcher = bar.querySelector(".version-switcher");
  switcher.hidden = versions.length < 2;
  switcher.querySelector(".version-label").textContent = "Version " + (shown + 1) + " of " + versions.length;
  refreshSwitcher(article);
  return shown;
}

// Which version an answer shows (the newest unless switched).
export function shownVersion(article) {
  const value = article.getAttribute("data-shown-version");
  return value === null ? versionsOf(article).length - 1 : Number(value);
}

function refreshSwitcher(article) {
  const bar = article.querySelector(":scope > .message-actions");
  if (!bar) return;
  const count = versionsOf(article).length;
  const shown = shownVersion(article);
  bar.querySelector("[data-action='previous-version']").disabled = busyNow || shown <= 0;
  bar.querySelector("[data-action='next-version']").disabled = busyNow || shown >= count - 1;
}

// While an exchange streams, every action waits (real buttons, disabled).
export function setActionsBusy(busy) {
  busyNow = busy;
  transcript.querySelectorAll(".message-actions [data-action]").forEach((node) => { node.disabled = busy; });
  transcript.querySelectorAll(".message-assistant").forEach((article) => refreshSwitcher(article));
}

function describe(article, message) {
  article.setAttribute("data-model", message.model || "");
  article.setAttribute("data-model-name", modelName(message.model));
  article.setAttribute("data-cost-exact", message.cost === null || message.cost === undefined ? "" : moneyDisplay(message.cost));
  const total = message.total_tokens !== null && message.total_tokens !== undefined ? message.total_tokens : message.completion_tokens;
  article.setAttribute("data-total-tokens", total === null || total === undefined ? "" : String(total));
}

// A streaming answer gets its action bar (disabled until it ends) and its model's name at once, so
// that finishing it adds nothing below the text (no layout jump at message_complete).
export function reserveAnswerBar(article, model) {
  if (article.querySelector(":scope > .message-actions")) return;
  article.setAttribute("data-model", model || "");
  article.setAttribute("data-model-name", modelName(model));
  article.appendChild(answerBar(article));
}

// A finished answer (stored as `message`, API.md's message object) gets its model, its markdown for
// Copy and its action bar; a regenerated one shows its newest version.
export function decorateAnswer(article, message, text) {
  describe(article, message);
  const old = article.querySelector(":scope > template.markdown-source");
  const source = sourceOf(message.content !== undefined && message.content !== null ? message.content : text);
  if (old) old.replaceWith(source);
  else article.insertBefore(source, article.querySelector(":scope > .answer-versions, :scope > .message-actions"));
  const bar = article.querySelector(":scope > .message-actions");
  if (!bar) article.appendChild(answerBar(article));
  else bar.querySelector(".answer-model").textContent = article.getAttribute("data-model-name") || "";
  showVersion(article, versionsOf(article).length - 1);
}

// A user message gets "Edit"; one answered more than once says over how many sends its input counts.
export function decorateQuestion(article, sends) {
  if (!article.querySelector(":scope > .message-actions")) {
    const bar = el("div", "message-actions");
    bar.setAttribute("role", "group");
    bar.setAttribute("aria-label", "Message actions");
    bar.appendChild(actionButton("edit", "Edit"));
    article.appendChild(bar);
  }
  const badges = article.querySelector(":scope > .badges");
  if (sends > 1 && badges && !badges.querySelector("[data-badge='sends']")) {
    const badge = el("span", "badge", "over " + sends + " sends");
    badge.setAttribute("data-badge", "sends");
    badge.setAttribute("data-sends", String(sends));
    badges.appendChild(document.createTextNode(" "));
    badges.appendChild(badge);
  }
}

// Regenerating: the answer's current text becomes its newest earlier version, and a fresh bubble
// content opens for the new one (exchange.js streams into the article's first .bubble-content).
export function openNewVersion(article) {
  let box = article.querySelector(":scope > .answer-versions");
  if (!box) {
    box = el("div", "answer-versions");
    article.insertBefore(box, article.querySelector(":scope > .message-actions"));
  }
  const block = el("div", "answer-version");
  ["data-model", "data-model-name", "data-cost-exact", "data-total-tokens"].forEach((name) => {
    block.setAttribute(name, article.getAttribute(name) || "");
  });
  block.setAttribute("data-version-id", article.getAttribute("data-message-id") || "");
  liveParts(article).forEach((node) => { node.hidden = false; block.appendChild(node); });
  const source = article.querySelector(":scope > template.markdown-source");
  if (source) block.appendChild(source);
  box.appendChild(block);
  const heading = article.querySelector(":scope > h3");
  const content = el("div", "bubble-content streaming");
  const badges = el("p", "badges");
  heading.after(content, badges);
  article.classList.remove("status-complete", "status-error", "status-cancelled", "status-interrupted");
  article.removeAttribute("data-message-id");
  showVersion(article, versionsOf(article).length - 1);
  return article;
}

// The messages after `from` (and `from` itself when `inclusive`), but `keep`, leave the page's
// thread: a regeneration or an edit took them out of it. Returns them, in order.
export function takeOut(from, inclusive, keep) {
  const gone = [];
  let node = inclusive ? from : from.nextElementSibling;
  while (node) {
    const next = node.nextElementSibling;
    if (node !== keep && node.classList.contains("message")) {
      gone.push(node);
      node.remove();
    }
    node = next;
  }
  return gone;
}

// An edited message shows "edited" and, behind "Earlier version", the text it replaced and what the
// answers taken out with it cost (every version of each; still counted in the totals).
export function markEdited(bubble, oldBubble, gone) {
  let cost = "0";
  let priced = false;
  let tokens = 0;
  let answers = 0;
  gone.filter((node) => node.classList.contains("message-assistant")).forEach((article) => {
    versionsOf(article).forEach((version) => {
      answers += 1;
      const exact = version.getAttribute("data-cost-exact");
      if (exact) { cost = moveMoney(cost, "0", exact); priced = true; }
      tokens += Number(version.getAttribute("data-total-tokens") || 0);
    });
  });
  const history = el("div", "edit-history");
  history.appendChild(el("span", "edited-flag", "edited"));
  history.appendChild(document.createTextNode(" "));
  const details = el("details", "earlier-version");
  const summary = el("summary", null, "Earlier version");
  details.appendChild(summary);
  details.appendChild(el("div", "earlier-text plain", oldBubble.querySelector(":scope > .bubble-content").textContent));
  const note = el("p", "earlier-cost");
  if (answers) {
    note.appendChild(document.createTextNode((answers === 1 ? "Its answer" : "Its " + answers + " answers") + " cost "));
    note.appendChild(priced ? moneyNode(cost) : document.createTextNode("an unknown price"));
    note.appendChild(document.createTextNode(" (" + countText(tokens) + " tokens), still counted in the totals."));
  } else {
    note.textContent = "It had no answer.";
  }
  details.appendChild(note);
  // An edit of an edited message keeps the versions before it too, newest first.
  const before = oldBubble.querySelectorAll(".earlier-version > .earlier-text, .earlier-version > .earlier-cost");
  before.forEach((node) => details.appendChild(node));
  const count = details.querySelectorAll(".earlier-text").length;
  if (count > 1) summary.textContent = "Earlier versions (" + count + ")";
  history.appendChild(details);
  bubble.insertBefore(history, bubble.querySelector(":scope > .message-actions"));
}
