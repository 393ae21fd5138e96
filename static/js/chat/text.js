// Markdown signs dropped for one-line places (titles, previews), as chat/markdown.py's plain_text.
export function plainText(text) {
  return String(text || "")
    .replace(/```[^\n]*\n?/g, " ")
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, "$1")
    .replace(/^[ \t]{0,3}(#{1,6}[ \t]+|>[ \t]?|[-*+][ \t]+|\d+[.)][ \t]+)/gm, "")
    .replace(/\*\*|__|~~|`/g, "")
    .replace(/(^|[^\w*])[*_](\S[^*_\n]*)[*_](?![\w*])/g, "$1$2")
    .replace(/\s+/g, " ").trim();
}
