// The transcript: bubbles added as the exchange goes (text as textContent), kept scrolled down.
import { el } from "./dom.js";

const transcript = document.getElementById("transcript");

export function scrollDown() {
  transcript.scrollTop = transcript.scrollHeight;
}

export function addBubble(role, id, text) {
  const empty = document.getElementById("empty-state");
  if (empty) empty.remove();
  const article = el("article", "message message-" + role);
  article.setAttribute("data-role", role);
  if (id) article.setAttribute("data-message-id", id);
  article.appendChild(el("h3", "visually-hidden", role === "user" ? "You" : "Assistant"));
  const content = el("div", "bubble-content " + (role === "user" ? "plain" : "streaming"));
  content.textContent = text || "";
  article.appendChild(content);
  article.appendChild(el("p", "badges"));
  transcript.appendChild(article);
  scrollDown();
  return article;
}

export function findUserBubble(requestId) {
  const nodes = transcript.querySelectorAll(".message-user[data-message-id]");
  return Array.from(nodes).find((node) => node.getAttribute("data-message-id") === requestId) || null;
}
