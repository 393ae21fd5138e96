// Port of usage/tokens.py's `estimate_tokens` (its constants come from the server in data.estimator):
// same operations in the same order, so the floats agree. The page shows it only while the server's
// exact figure for a draft (the BPE tokenizer for OpenAI-family models) is on its way.
import { data } from "./page.js";

const encoder = new TextEncoder();

function isLetter(b) { return (b >= 65 && b <= 90) || (b >= 97 && b <= 122); }
function isDigit(b) { return b >= 48 && b <= 57; }
function isPunct(b) { return b >= 33 && b <= 126 && !isLetter(b) && !isDigit(b); }

function runs(bytes, test) {
  const lengths = [];
  let length = 0;
  for (const b of bytes) {
    if (test(b)) length++;
    else if (length) { lengths.push(length); length = 0; }
  }
  if (length) lengths.push(length);
  return lengths;
}

function sum(values) {
  return values.reduce((total, value) => total + value, 0);
}

function leadClass(b) {
  if (b >= 0xC3 && b < 0xCA) return "l";
  if (b >= 0xCD && b < 0xD0) return "g";
  if (b >= 0xD0 && b < 0xD5) return "c";
  if (b >= 0xD6 && b < 0xDC) return "r";
  if (b === 0xE3) return "j";
  if (b >= 0xE4 && b < 0xEA) return "h";
  if (b >= 0xEA && b < 0xEE) return "k";
  if (b >= 0xF0 && b < 0xF5) return "e";
  return "o";
}

// Python's round(): halves go to the even neighbour.
function roundHalfEven(x) {
  const floor = Math.floor(x);
  const diff = x - floor;
  if (diff > 0.5) return floor + 1;
  if (diff < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

// Non-ASCII text: `total` moved by the scripts it is in (added in usage/tokens.py's order).
function withScripts(total, raw, text, words, k) {
  if (/[\u00c0-\u024f]/.test(text)) {
    const short = words.filter((w) => w < 3).length;
    total += (words.length - short) * (k.foreign_word - 1.0);
  }
  const counts = {};
  let emojiBmp = 0;
  let joiners = 0;
  for (let m = 0; m < raw.length; m++) {
    const b = raw[m];
    if (b >= 0xC0) counts[leadClass(b)] = (counts[leadClass(b)] || 0) + 1;
    if (b === 0xE2 && m + 1 < raw.length && raw[m + 1] >= 0x98 && raw[m + 1] <= 0x9E) emojiBmp++;
    if (m + 2 < raw.length && ((b === 0xE2 && raw[m + 1] === 0x80 && raw[m + 2] === 0x8D) ||
        (b === 0xEF && raw[m + 1] === 0xB8 && (raw[m + 2] === 0x8F || raw[m + 2] === 0x8E)))) joiners++;
  }
  total += emojiBmp * k.per_char.emoji_bmp + joiners * k.per_char.joiner;
  total -= (emojiBmp + joiners) * k.per_char.o;
  for (const cls of "lgcrjhkeo") {
    if (counts[cls]) total += counts[cls] * k.per_char[cls];
  }
  return total;
}

function estimateTokens(text, k) {
  if (!text) return 0;
  const raw = encoder.encode(text);
  const words = runs(raw, isLetter);
  let camel = 0;
  for (let i = 0; i + 1 < raw.length; i++) {
    if (raw[i] >= 97 && raw[i] <= 122 && raw[i + 1] >= 65 && raw[i + 1] <= 90) camel++;
  }
  let total = words.length + camel;
  total += sum(words.filter((w) => w > k.word_free_chars).map((w) => w - k.word_free_chars)) * k.word_extra_per_char;
  const digits = runs(raw, isDigit);
  if (digits.length) total += sum(digits.map((d) => Math.floor((d + 2) / 3)));
  const punct = runs(raw, isPunct);
  if (punct.length) total += k.punct_first * punct.length + k.punct_per_extra * (sum(punct) - punct.length);
  if (raw.indexOf(10) !== -1) {
    let indents = 0;
    for (let j = 0; j + 2 < raw.length; j++) {
      if (raw[j] === 10 && raw[j + 1] === 32 && raw[j + 2] === 32) { indents++; j += 2; }
    }
    total += k.newline * runs(raw, (b) => b === 10).length + k.indent * indents;
  }
  if (punct.length) {
    // Punctuation glued to the word after it, or to a newline, mostly costs one token for the pair.
    let toWord = 0;
    let toNewline = 0;
    for (let q = 0; q + 1 < raw.length; q++) {
      if (isPunct(raw[q])) {
        if (isLetter(raw[q + 1])) toWord++;
        else if (raw[q + 1] === 10) toNewline++;
      }
    }
    total -= k.punct_word_merge * toWord + k.punct_newline_merge * toNewline;
  }
  if (raw.length !== Array.from(text).length) total = withScripts(total, raw, text, words, k);
  return Math.max(1, roundHalfEven(total));
}

export function countTokens(text) {
  return text ? estimateTokens(text, data.estimator) : 0;
}

// The browser tests compare this port with the server's counter on a corpus.
window.chatlimaCountTokens = countTokens;
