// The conversation list's own controls: the drawer toggle on a phone, "Search conversations" as you
// type, and each entry's "Rename" and "Delete" (a confirmation first; the usage of a deleted
// conversation stays in the account's totals). Rename and Delete go through the REST API (PATCH and
// DELETE /api/v1/conversations/<id>) with the session's CSRF token. The search is the server's
// (chat/search.py): SEARCH_DEBOUNCE_MS after the last keystroke the page asks for this page's list
// with ?q= (the X-ChatLima-Fragment header: the list only), puts it in place and moves the URL's ?q=
// along; without JavaScript the form's Search button does the same with a full page.
import { announce, el } from "./dom.js";
import { data } from "./page.js";
import { plainText } from "./text.js";

const list = document.getElementById("conversation-list");
const renameDialog = document.getElementById("rename-dialog");
const deleteDialog = document.getElementById("delete-dialog");
let target = null; // { id, item, button } of the entry a dialog is about
const SEARCH_DEBOUNCE_MS = 250;
let searchTimer = null;
let searched = 0; // the latest search's number: an answer about an older one is dropped

function callApi(id, method, body) {
  return window.fetch("/api/v1/conversations/" + encodeURIComponent(id), {
    method,
    credentials: "same-origin",
    headers: { Accept: "application/json", "Content-Type": "application/json", "X-CSRFToken": data.csrf_token },
    body: body ? JSON.stringify(body) : undefined,
  }).then((response) => {
    if (response.ok) return response.status === 204 ? null : response.json();
    return response.json().catch(() => ({})).then((refusal) => {
      throw new Error((refusal.error && refusal.error.message) || "The server refused (" + response.status + ").");
    });
  });
}

// An entry's two buttons, as templates/chat/_sidebar.html renders them.
export function conversationActions(id) {
  const holder = el("span", "conv-actions");
  [["rename", "Rename"], ["delete", "Delete"]].forEach(([action, label], i) => {
    const button = el("button", "link-button", label);
    button.type = "button";
    button.setAttribute("data-action", action);
    button.setAttribute("aria-describedby", "title-" + id);
    if (i) holder.appendChild(document.createTextNode(" "));
    holder.appendChild(button);
  });
  return holder;
}

function showError(dialog, text) {
  const box = dialog.querySelector(".dialog-error");
  box.textContent = text;
  box.hidden = !text;
}

function titleOf(item) {
  return item.querySelector(".conv-title").textContent;
}

function open(dialog, item, button) {
  target = { id: item.querySelector("a[data-conversation-id]").getAttribute("data-conversation-id"), item, button };
  showError(dialog, "");
  if (dialog === renameDialog) {
    const input = document.getElementById("rename-input");
    input.value = titleOf(item);
    dialog.showModal();
    input.select();
  } else {
    document.getElementById("delete-name").textContent = titleOf(item);
    dialog.showModal();
  }
}

function renamed(conversation) {
  const title = plainText(conversation.title) || "Untitled conversation";
  target.item.querySelector(".conv-title").textContent = title;
  if (target.id === data.conversation_id) {
    document.getElementById("chat-title").textContent = title;
    document.title = title + " · Chat · ChatLima";
  }
  list.insertBefore(target.item, list.firstChild); // renaming is news: the list is newest first
  renameDialog.close();
  announce("Renamed to " + title + ".");
}

function deleted() {
  if (target.id === data.conversation_id) {
    window.location.assign("/");
    return;
  }
  const next = target.item.nextElementSibling || target.item.previousElementSibling;
  const title = titleOf(target.item);
  target.item.remove();
  target.button = null;
  deleteDialog.close();
  const focus = next ? next.querySelector("a") : document.getElementById("conversation-search");
  if (focus) focus.focus();
  if (!list.querySelector("li")) list.appendChild(el("li", "empty", "No conversations yet."));
  announce("Deleted " + title + ".");
}

function wireDialogs() {
  [renameDialog, deleteDialog].forEach((dialog) => {
    dialog.querySelector("[data-close]").addEventListener("click", () => dialog.close());
    dialog.addEventListener("close", () => {
      if (target && target.button && target.button.isConnected) target.button.focus();
    });
  });
  document.getElementById("rename-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const title = document.getElementById("rename-input").value.trim();
    if (!title) return showError(renameDialog, "A title cannot be empty.");
    callApi(target.id, "PATCH", { title }).then(renamed, (error) => showError(renameDialog, error.message));
  });
  document.getElementById("delete-form").addEventListener("submit", (event) => {
    event.preventDefault();
    callApi(target.id, "DELETE").then(deleted, (error) => showError(deleteDialog, error.message));
  });
}

function wireDrawer() {
  const sidebar = document.getElementById("sidebar");
  const toggle = document.getElementById("sidebar-toggle");
  if (!toggle) return;
  toggle.addEventListener("click", () => {
    const isOpen = sidebar.classList.toggle("open");
    toggle.setAttribute("aria-expanded", isOpen ? "true" : "false");
  });
}

function searchUrl(query) {
  return window.location.pathname + (query ? "?q=" + encodeURIComponent(query) : "");
}

// The server's list for `query`, in place of the shown one (the same <ul>, so its listeners stay).
function showResults(html, query) {
  const found = new DOMParser().parseFromString(html, "text/html");
  const newList = found.getElementById("conversation-list");
  if (!newList) return;
  list.replaceChildren(...Array.from(newList.childNodes));
  const summary = document.getElementById("search-summary");
  const newSummary = found.getElementById("search-summary");
  if (summary) summary.remove();
  if (newSummary) list.parentNode.insertBefore(newSummary, list);
  const url = searchUrl(query);
  if (window.location.pathname + window.location.search !== url) window.history.replaceState(null, "", url);
  const count = list.querySelectorAll("a[data-conversation-id]").length;
  announce(query ? count + (count === 1 ? " conversation" : " conversations") + " found." : "Showing all conversations.");
}

function search(query) {
  const number = ++searched;
  window.fetch(searchUrl(query), {
    credentials: "same-origin",
    headers: { Accept: "text/html", "X-ChatLima-Fragment": "conversations" },
  })
    .then((response) => (response.ok ? response.text() : null))
    .then((html) => {
      if (html !== null && number === searched) showResults(html, query);
    })
    .catch(() => { /* the list stays; the Search button still works */ });
}

function wireSearch() {
  const box = document.getElementById("conversation-search");
  if (!box) return;
  let last = box.value.trim();
  box.addEventListener("input", () => {
    window.clearTimeout(searchTimer);
    searchTimer = window.setTimeout(() => {
      const query = box.value.trim();
      if (query === last) return;
      last = query;
      search(query);
    }, SEARCH_DEBOUNCE_MS);
  });
}

export function wireSidebar() {
  wireDrawer();
  wireSearch();
  if (!list || !renameDialog) return;
  wireDialogs();
  list.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    open(button.getAttribute("data-action") === "rename" ? renameDialog : deleteDialog, button.closest("li"), button);
  });
}
