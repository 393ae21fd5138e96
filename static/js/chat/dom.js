// Small DOM helpers: elements with text (never HTML), the screen-reader status line, the error box.
const statusLine = document.getElementById("chat-status");
const errorBox = document.getElementById("chat-error");

export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

export function announce(text) {
  // Clearing first makes screen readers repeat an identical message.
  statusLine.textContent = "";
  window.setTimeout(() => { statusLine.textContent = text; }, 50);
}

export function showError(text, notice) {
  errorBox.textContent = text;
  errorBox.classList.toggle("notice", !!notice);
  errorBox.hidden = false;
}

export function clearError() {
  errorBox.hidden = true;
  errorBox.textContent = "";
}
