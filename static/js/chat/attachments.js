// Files and URLs as the conversation's context (API.md "Attachments"; README "Files and URLs as
// context"): "Attach files" (a file input), files dropped on the chat (a drop zone shows while
// dragging) and "Add a URL", sent to POST /api/v1/conversations/<id>/attachments (session + CSRF;
// multipart for a file, JSON for a URL). A new chat makes its conversation first
// (POST /api/v1/conversations, with the settings it would send), so the file has a home.
// The list (templates/chat/_attachment.html draws it on load) shows each one's tokens and what they
// add to every next message at the selected model's input price ("price unknown" when no source
// prices it), a URL's fetch time with "Refetch", and "Remove". Each change is announced and the
// estimate asked again (the server counts the attachments into it).
import { el } from "./dom.js";
import { refreshEstimate } from "./estimate.js";
import { confirmed } from "./composer.js";
import { updateSidebar } from "./figures.js";
import { costOf, countText, moneyNode } from "./money.js";
import { data, modelInfo } from "./page.js";
import { sendSettings } from "./settings.js";

const section = document.getElementById("attachments");
const list = document.getElementById("attachment-list");
const fileInput = document.getElementById("attach-file-input");
const fileButton = document.getElementById("attach-file-button");
const urlForm = document.getElementById("attach-url-form");
const urlInput = document.getElementById("attach-url-input");
const urlButton = document.getElementById("attach-url-button");
const statusEl = document.getElementById("attach-status");
const errorEl = document.getElementById("attach-error");
const modelSelect = document.getElementById("model-select");

let attachments = (data.attachments || []).slice();
let working = false;
let isBusy = () => false;

function setStatus(text) {
  statusEl.textContent = "";
  window.setTimeout(() => { statusEl.textContent = text; }, 50); // the same words are read again
}

function setError(text) {
  errorEl.textContent = text || "";
  errorEl.hidden = !text;
}

function setWorking(flag) {
  working = flag;
  fileButton.disabled = flag;
  urlButton.disabled = flag;
  section.setAttribute("aria-busy", flag ? "true" : "false");
}

function csrfHeaders(json) {
  const headers = { Accept: "application/json", "X-CSRFToken": data.csrf_token };
  if (json) headers["Content-Type"] = "application/json";
  return headers;
}

function listUrl() {
  return data.attachments_url_template.replace("__id__", encodeURIComponent(data.conversation_id));
}

// The contract's error body's message, else what the status says.
function refusal(status, body) {
  const error = (body && body.error) || {};
  if (error.message) return error.message;
  if (status === 413) return "That is over the size limit.";
  if (status === 0) return "No connection to the server: nothing was attached.";
  return "The server refused (" + status + ").";
}

async function jsonOrNull(response) {
  try {
    return await response.json();
  } catch (err) {
    return null;
  }
}

// --- a new chat gets its conversation first ----------------------------------------------------

async function ensureConversation(title) {
  if (data.conversation_id) return true;
  if (isBusy()) {
    setError("Wait until your first message is saved, then attach.");
    return false;
  }
  const body = { title: title.slice(0, 255), model: modelSelect.value, ...sendSettings() };
  let response;
  try {
    response = await window.fetch(data.conversations_url, {
      method: "POST", credentials: "same-origin", headers: csrfHeaders(true), body: JSON.stringify(body),
    });
  } catch (err) {
    setError(refusal(0));
    return false;
  }
  const answer = await jsonOrNull(response);
  if (!response.ok || !answer || !answer.id) {
    setError("The conversation could not be created: " + refusal(response.status, answer));
    return false;
  }
  // As a send's message_saved does (exchange.js): the page is now this conversation's.
  data.conversation_id = answer.id;
  confirmed(null);
  window.history.replaceState(null, "", data.conversation_url_template.replace("__id__", encodeURIComponent(answer.id)));
  const heading = document.getElementById("chat-title");
  heading.textContent = answer.title || title;
  document.title = heading.textContent + " · Chat · ChatLima";
  updateSidebar(answer.id, null, heading.textContent, "");
  return true;
}

// --- the list ----------------------------------------------------------------------------------

function fetchedText(iso) {
  if (!iso) return "";
  const when = new Date(iso);
  if (Number.isNaN(when.getTime())) return iso;
  const pad = (n) => String(n).padStart(2, "0");
  return when.getUTCFullYear() + "-" + pad(when.getUTCMonth() + 1) + "-" + pad(when.getUTCDate()) + " " +
    pad(when.getUTCHours()) + ":" + pad(when.getUTCMinutes()) + " UTC";
}

// What `tokens` add to each next message at the selected model's input price.
function costNodes(tokens) {
  const model = modelInfo(modelSelect.value);
  const price = model ? model.input_per_mtok : null;
  if (price === null || price === undefined) return [document.createTextNode("price unknown")];
  const cost = costOf(tokens, price);
  if ((model.pricing_source === "free") || !/[1-9]/.test(cost)) return [document.createTextNode("free")];
  return [document.createTextNode("about "), moneyNode(cost), document.createTextNode(" on each message")];
}

function button(action, label, name) {
  const node = el("button", "secondary small", label);
  node.type = "button";
  node.setAttribute("data-action", action);
  node.setAttribute("aria-label", label + " " + name);
  return node;
}

function row(attachment) {
  const item = el("li", "attachment");
  item.setAttribute("data-attachment-id", attachment.id);
  item.setAttribute("data-kind", attachment.kind);
  item.setAttribute("data-tokens", String(attachment.tokens));
  const name = el("span", "attachment-name", attachment.name);
  name.title = attachment.url || attachment.name;
  const meta = el("span", "attachment-meta");
  meta.appendChild(el("span", "attachment-kind",
    attachment.kind === "url" ? "web page" : (attachment.format || "file") + " file"));
  meta.appendChild(document.createTextNode(" · "));
  const tokens = el("span", null, countText(attachment.tokens));
  tokens.setAttribute("data-field", "tokens");
  meta.appendChild(tokens);
  meta.appendChild(document.createTextNode(" tokens · "));
  const cost = el("span");
  cost.setAttribute("data-field", "cost");
  cost.replaceChildren(...costNodes(attachment.tokens));
  meta.appendChild(cost);
  const buttons = el("span", "attachment-buttons");
  if (attachment.kind === "url") {
    meta.appendChild(document.createTextNode(" · "));
    const fetched = el("span", null, "fetched ");
    fetched.setAttribute("data-field", "fetched");
    const time = el("time", null, fetchedText(attachment.fetched_at));
    time.setAttribute("datetime", attachment.fetched_at || "");
    fetched.appendChild(time);
    meta.appendChild(fetched);
    buttons.appendChild(button("refetch", "Refetch", attachment.name));
    buttons.appendChild(document.createTextNode(" "));
  }
  buttons.appendChild(button("remove", "Remove", attachment.name));
  item.append(name, meta, buttons);
  return item;
}

function itemOf(id) {
  return list.querySelector('li[data-attachment-id="' + CSS.escape(id) + '"]');
}

function showList() {
  list.hidden = attachments.length === 0;
}

// The model changed: every attachment's cost is at the new model's price.
function repriceAll() {
  list.querySelectorAll("li.attachment").forEach((item) => {
    const cost = item.querySelector('[data-field="cost"]');
    cost.replaceChildren(...costNodes(Number(item.getAttribute("data-tokens")) || 0));
  });
}

// Until the server's next estimate, every model's history figure moves by the attachment's tokens.
function moveBase(delta) {
  data.models.forEach((model) => { model.base_prompt_tokens = Math.max(0, model.base_prompt_tokens + delta); });
}

function added(attachment) {
  attachments.push(attachment);
  list.appendChild(row(attachment));
  showList();
  moveBase(attachment.tokens);
  refreshEstimate();
}

// --- uploads -----------------------------------------------------------------------------------

// One file, by XMLHttpRequest for its upload progress; resolves to [status, body].
function upload(file) {
  return new Promise((resolve) => {
    const request = new XMLHttpRequest();
    request.open("POST", listUrl());
    request.withCredentials = true;
    request.setRequestHeader("Accept", "application/json");
    request.setRequestHeader("X-CSRFToken", data.csrf_token);
    request.upload.addEventListener("progress", (event) => {
      if (!event.lengthComputable) return;
      const percent = Math.round((100 * event.loaded) / event.total);
      statusEl.textContent = percent < 100 ? "Uploading " + file.name + "… " + percent + "%" : "Reading " + file.name + "…";
    });
    request.upload.addEventListener("load", () => { statusEl.textContent = "Reading " + file.name + "…"; });
    request.addEventListener("load", () => {
      let body = null;
      try {
        body = JSON.parse(request.responseText);
      } catch (err) {
        body = null;
      }
      resolve([request.status, body]);
    });
    request.addEventListener("error", () => resolve([0, null]));
    const form = new FormData();
    form.append("file", file, file.name);
    request.send(form);
  });
}

async function attachFiles(files) {
  const chosen = Array.from(files || []);
  if (!chosen.length || working) return;
  setError("");
  setWorking(true);
  try {
    if (!(await ensureConversation(chosen[0].name))) return;
    const refused = [];
    for (const file of chosen) {
      statusEl.textContent = "Uploading " + file.name + "…";
      const [status, body] = await upload(file);
      if (status === 201 && body) {
        added(body);
        setStatus("Attached " + body.name + ": " + countText(body.tokens) + " tokens.");
      } else {
        refused.push(file.name + ": " + refusal(status, body));
      }
    }
    if (refused.length) {
      statusEl.textContent = ""; // the alert says it
      setError("Not attached: " + refused.join(" "));
    }
  } finally {
    setWorking(false);
    fileInput.value = "";
  }
}

async function attachUrl(url) {
  if (working) return;
  setError("");
  if (!url) {
    setError("Type the address of a page (https://…) first.");
    urlInput.focus();
    return;
  }
  setWorking(true);
  try {
    if (!(await ensureConversation(url))) return;
    statusEl.textContent = "Reading " + url + "…";
    let response;
    try {
      response = await window.fetch(listUrl(), {
        method: "POST", credentials: "same-origin", headers: csrfHeaders(true), body: JSON.stringify({ url }),
      });
    } catch (err) {
      setError(refusal(0));
      return;
    }
    const body = await jsonOrNull(response);
    if (response.status === 201 && body) {
      added(body);
      urlInput.value = "";
      setStatus("Added " + body.name + ": " + countText(body.tokens) + " tokens.");
    } else {
      statusEl.textContent = "";
      setError("Not added: " + refusal(response.status, body));
      urlInput.focus();
    }
  } finally {
    setWorking(false);
  }
}

// --- remove and refetch ------------------------------------------------------------------------

async function remove(item) {
  const id = item.getAttribute("data-attachment-id");
  const attachment = attachments.find((a) => a.id === id);
  const name = attachment ? attachment.name : id;
  setError("");
  let response;
  try {
    response = await window.fetch(listUrl() + "/" + encodeURIComponent(id), {
      method: "DELETE", credentials: "same-origin", headers: csrfHeaders(false),
    });
  } catch (err) {
    setError(refusal(0));
    return;
  }
  if (response.status !== 204 && response.status !== 404) {
    setError("Not removed: " + refusal(response.status, await jsonOrNull(response)));
    return;
  }
  // Focus goes to the next attachment's Remove, else the previous one's, else "Attach files".
  const next = item.nextElementSibling || item.previousElementSibling;
  item.remove();
  attachments = attachments.filter((a) => a.id !== id);
  showList();
  if (attachment) moveBase(-attachment.tokens);
  (next ? next.querySelector('[data-action="remove"]') : fileButton).focus();
  setStatus("Removed " + name + ": later messages no longer carry it.");
  refreshEstimate();
}

async function refetch(item, control) {
  const id = item.getAttribute("data-attachment-id");
  setError("");
  control.disabled = true;
  statusEl.textContent = "Fetching again…";
  try {
    const response = await window.fetch(listUrl() + "/" + encodeURIComponent(id) + "/refetch", {
      method: "POST", credentials: "same-origin", headers: csrfHeaders(false),
    });
    const body = await jsonOrNull(response);
    if (!response.ok || !body) {
      statusEl.textContent = "";
      setError("Not fetched again: " + refusal(response.status, body));
      return;
    }
    const index = attachments.findIndex((a) => a.id === id);
    const before = index >= 0 ? attachments[index].tokens : 0;
    if (index >= 0) attachments[index] = body;
    const fresh = row(body);
    item.replaceWith(fresh);
    fresh.querySelector('[data-action="refetch"]').focus();
    moveBase(body.tokens - before);
    setStatus("Fetched " + body.name + " again: " + countText(body.tokens) + " tokens.");
    refreshEstimate();
  } catch (err) {
    setError(refusal(0));
  } finally {
    control.disabled = false;
  }
}

// --- drag and drop -----------------------------------------------------------------------------

function wireDrop(area) {
  const zone = el("div", "drop-zone", "Drop files to attach them");
  zone.id = "drop-zone";
  zone.hidden = true;
  zone.setAttribute("aria-hidden", "true");
  area.appendChild(zone);
  let depth = 0;
  const carriesFiles = (event) => !!event.dataTransfer && Array.from(event.dataTransfer.types || []).includes("Files");
  area.addEventListener("dragenter", (event) => {
    if (!carriesFiles(event)) return;
    event.preventDefault();
    depth += 1;
    zone.hidden = false;
  });
  area.addEventListener("dragover", (event) => {
    if (!carriesFiles(event)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
    zone.hidden = false;
  });
  area.addEventListener("dragleave", (event) => {
    if (!carriesFiles(event)) return;
    depth = Math.max(0, depth - 1);
    if (!depth) zone.hidden = true;
  });
  area.addEventListener("drop", (event) => {
    if (!carriesFiles(event)) return;
    event.preventDefault();
    depth = 0;
    zone.hidden = true;
    attachFiles(event.dataTransfer.files);
  });
  // A file dropped beside the chat (the sidebar, the header) must not make the browser open it in
  // place of the page.
  ["dragover", "drop"].forEach((type) => window.addEventListener(type, (event) => {
    if (carriesFiles(event) && !area.contains(event.target)) event.preventDefault();
  }));
}

// `exchange.isBusy()`: a new chat's first message is on its way (its conversation is not made yet).
export function wireAttachments(exchange) {
  if (!section) return;
  if (exchange && exchange.isBusy) isBusy = exchange.isBusy;
  fileButton.addEventListener("click", () => fileInput.click());
  fileInput.addEventListener("change", () => attachFiles(fileInput.files));
  urlForm.addEventListener("submit", (event) => {
    event.preventDefault();
    attachUrl(urlInput.value.trim());
  });
  list.addEventListener("click", (event) => {
    const control = event.target.closest("button[data-action]");
    if (!control) return;
    const item = control.closest("li.attachment");
    if (control.getAttribute("data-action") === "remove") remove(item);
    else refetch(item, control);
  });
  modelSelect.addEventListener("change", repriceAll);
  wireDrop(document.querySelector(".chat-main"));
  repriceAll(); // the server priced them for its selected model; the select may differ after a reload
  showList();
}
