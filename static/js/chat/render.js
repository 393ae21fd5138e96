// Markdown in the page while an answer streams, sanitised as the stored answer is, and the copy
// button of each code block.
//
// The server renders a stored answer with markdown-it-py + nh3 (chat/markdown.py) and highlights its
// code with Pygments. Here the same text goes through markdown-it 14.1.0 (the version markdown-it-py
// ports; static/vendor/README.md) with the same preset and rules, then DOMPurify with nh3's exact
// allowlist. So the blocks streamed are the blocks stored: at message_complete the server's HTML
// swaps in (showHtml) and the bubble keeps its height; only the code's colours change.
import { announce, el } from "./dom.js";

// The sanitiser's allowlist, tag by tag: the same as chat/markdown.py's TAGS, ATTRIBUTES,
// URL_SCHEMES and LINK_REL (nh3 there). Change both together.
export const ALLOWED = {
  tags: ["p", "br", "hr", "strong", "em", "s", "del", "code", "pre", "blockquote", "ul", "ol", "li",
    "h1", "h2", "h3", "h4", "h5", "h6", "a", "table", "thead", "tbody", "tr", "th", "td", "img", "span"],
  attributes: { a: ["href", "title"], img: ["src", "alt", "title"], code: ["class"], span: ["class"] },
  urlSchemes: ["http", "https", "mailto"],
  linkRel: "noopener noreferrer nofollow",
};

const URL_ATTRIBUTES = ["href", "src"];
const SCHEME = /^([a-z][a-z0-9+.-]*):/i;

// markdown-it's "default" preset is what markdown-it-py calls "js-default".
const md = window.markdownit("default", { html: false, linkify: false }).enable(["table", "strikethrough"]);

const purifier = window.DOMPurify(window); // an instance of its own: the hooks below are for it only
const CONFIG = {
  ALLOWED_TAGS: ALLOWED.tags,
  ALLOWED_ATTR: Array.from(new Set(Object.values(ALLOWED.attributes).flat())),
  ALLOW_DATA_ATTR: false,
  ALLOW_ARIA_ATTR: false,
  ALLOWED_URI_REGEXP: new RegExp("^(?:(?:" + ALLOWED.urlSchemes.join("|") + "):|[^a-z]|[a-z+.\\-]+(?:[^a-z+.\\-:]|$))", "i"),
  RETURN_DOM_FRAGMENT: true,
};

// A URL with a scheme nh3 would refuse (data: images too, which DOMPurify alone lets through).
function schemeAllowed(value) {
  // Browsers ignore ASCII whitespace and control characters in a URL's scheme; so does the check.
  const scheme = SCHEME.exec(value.replace(/[\u0000-\u0020]/g, ""));
  return !scheme || ALLOWED.urlSchemes.includes(scheme[1].toLowerCase());
}

purifier.addHook("uponSanitizeAttribute", (node, data) => {
  const tag = node.nodeName.toLowerCase();
  const allowed = Object.hasOwn(ALLOWED.attributes, tag) ? ALLOWED.attributes[tag] : [];
  if (!allowed.includes(data.attrName)) data.keepAttr = false;
  else if (URL_ATTRIBUTES.includes(data.attrName) && !schemeAllowed(data.attrValue)) data.keepAttr = false;
});
purifier.addHook("afterSanitizeAttributes", (node) => {
  if (node.nodeName === "A") node.setAttribute("rel", ALLOWED.linkRel);
});

// HTML as the nodes nh3 would keep (a DocumentFragment).
export function sanitize(html) {
  return purifier.sanitize(html, CONFIG);
}

// Markdown as the HTML of each top-level block (a paragraph, a list, a table, a code block...).
// Rendered block by block it is the same HTML as rendered whole: each block's tokens render alone.
function blocksOf(text) {
  const env = {};
  const tokens = md.parse(text || "", env);
  const blocks = [];
  let start = 0;
  tokens.forEach((token, index) => {
    if (token.level === 0 && token.nesting <= 0) { // a top-level block closes (or stands alone)
      blocks.push(md.renderer.render(tokens.slice(start, index + 1), md.options, env));
      start = index + 1;
    }
  });
  return blocks;
}

// Markdown as sanitised nodes, never as an HTML string set unsanitised.
export function markdownFragment(text) {
  const fragment = document.createDocumentFragment();
  blocksOf(text).forEach((html) => fragment.appendChild(sanitize(html)));
  return fragment;
}

// What each bubble shows: its blocks' HTML and the nodes made from each, so that while an answer
// streams only the blocks that changed (the last one or two) are sanitised and replaced again.
const shown = new WeakMap(); // bubble content -> [{ html, nodes }]

function show(node, text) {
  let blocks = shown.get(node) || [];
  if (blocks.reduce((count, block) => count + block.nodes.length, 0) !== node.childNodes.length) {
    node.replaceChildren(); // changed by someone else: start again
    blocks = [];
  }
  const next = blocksOf(text);
  let same = 0;
  while (same < blocks.length && same < next.length && blocks[same].html === next[same]) same += 1;
  blocks.slice(same).forEach((block) => block.nodes.forEach((child) => child.remove()));
  const kept = blocks.slice(0, same);
  next.slice(same).forEach((html) => {
    const fragment = sanitize(html);
    const nodes = Array.from(fragment.childNodes);
    node.appendChild(fragment);
    kept.push({ html, nodes });
  });
  shown.set(node, kept);
}

const pending = new Map(); // bubble content -> { text, after }
let frame = 0;

function flush() {
  frame = 0;
  const jobs = Array.from(pending.entries());
  pending.clear();
  jobs.forEach(([node, job]) => {
    show(node, job.text);
    if (job.after) job.after();
  });
}

// Show `text` (the answer so far) as markdown in `node`: at most once per animation frame, however
// many chunks arrive, with the latest text. `after` runs once it is shown (e.g. to scroll).
export function renderMarkdown(node, text, after) {
  pending.set(node, { text, after });
  if (!frame) frame = window.requestAnimationFrame(flush);
}

// The server's rendering of the stored answer (nh3-sanitised, highlighted: chat/markdown.py) in
// place of the streamed one; a render still waiting for its frame is dropped.
export function showHtml(node, html) {
  pending.delete(node);
  shown.delete(node);
  node.innerHTML = html;
  addCopyButtons(node);
}

// --- copy buttons --------------------------------------------------------------------------------

const COPY_TEXT = "Copy code";
const LANGUAGE = /(?:^|\s)language-(\S+)/;

function languageOf(code) {
  const found = LANGUAGE.exec(code.className);
  return found ? found[1].slice(0, 40) : "";
}

function showCopied(button, text, message) {
  const label = button.querySelector(".code-copy-text");
  label.textContent = text;
  announce(message);
  window.clearTimeout(button.resetTimer);
  button.resetTimer = window.setTimeout(() => { label.textContent = COPY_TEXT; }, 2500);
}

function selectText(node) {
  const range = document.createRange();
  range.selectNodeContents(node);
  const selection = window.getSelection();
  selection.removeAllRanges();
  selection.addRange(range);
}

function copyCode(button, code) {
  // The block's text as written: markdown-it ends every block with a newline, not part of the code.
  const text = code.textContent.replace(/\n$/, "");
  const failed = () => {
    selectText(code);
    showCopied(button, "Press Ctrl+C", "Could not copy by itself: the code is selected, press Ctrl+C to copy it.");
  };
  if (!navigator.clipboard) return failed();
  return navigator.clipboard.writeText(text)
    .then(() => showCopied(button, "Copied", "Code copied to the clipboard."), failed);
}

// A "Copy code" button (named with the language, e.g. "Copy code (python)") on each code block in
// `root` that has none yet: stored answers on page load, streamed ones once complete. It sits in
// the block's top padding (static/css/code.css), so adding it moves nothing.
export function addCopyButtons(root) {
  root.querySelectorAll("pre > code").forEach((code) => {
    const pre = code.parentElement;
    if (pre.parentElement && pre.parentElement.classList.contains("code-block")) return;
    const language = languageOf(code);
    const block = el("div", "code-block");
    const button = el("button", "code-copy");
    button.type = "button";
    button.appendChild(el("span", "code-copy-text", COPY_TEXT));
    if (language) button.appendChild(el("span", "visually-hidden", " (" + language + ")"));
    button.addEventListener("click", () => copyCode(button, code));
    pre.replaceWith(block);
    if (language) {
      const label = el("span", "code-language", language);
      label.setAttribute("aria-hidden", "true"); // the button's name says it
      block.appendChild(label);
    }
    block.appendChild(button);
    block.appendChild(pre);
  });
}
