// Money stays a decimal string: formatted and added by string and BigInt rules, never through a float.
import { el } from "./dom.js";

// As usage/charts.py's money_display: up to 8 decimals, trailing zeros dropped, at least 2.
export function moneyDisplay(value) {
  if (value === null || value === undefined || value === "") return "";
  let text = String(value);
  if (/e/i.test(text)) return "0.00"; // databases spell zero 0E-8
  const negative = text.charAt(0) === "-";
  if (negative) text = text.slice(1);
  const parts = text.split(".");
  let frac = (parts[1] || "").slice(0, 8).replace(/0+$/, "");
  while (frac.length < 2) frac += "0";
  return (negative ? "-" : "") + (parts[0] || "0") + "." + frac;
}

// tokens x (price per million) as an exact decimal string.
export function costOf(tokens, pricePerMtok) {
  const parts = String(pricePerMtok || "0").split(".");
  const frac = parts[1] || "";
  const scaled = BigInt((parts[0] || "0") + frac) * BigInt(tokens);
  const places = frac.length + 6; // per million
  let digits = scaled.toString();
  while (digits.length <= places) digits = "0" + digits;
  return digits.slice(0, digits.length - places) + "." + digits.slice(digits.length - places);
}

// Fixed point at 8 places, as the database keeps money.
function units(value) {
  const parts = String(moneyDisplay(value) || "0").split(".");
  const frac = ((parts[1] || "") + "00000000").slice(0, 8);
  return BigInt(parts[0] + frac);
}

// total + after - before, for display.
export function moveMoney(total, before, after) {
  let digits = (units(total) + units(after) - units(before)).toString();
  while (digits.length <= 8) digits = "0" + digits;
  return moneyDisplay(digits.slice(0, -8) + "." + digits.slice(-8));
}

// A count with thousands separators, as chatlima/formats.py's count_display.
export function countText(value) {
  if (value === null || value === undefined || value === "") return "";
  return String(value).replace(/^(-?)(\d+)/, (_, sign, digits) => sign + digits.replace(/\B(?=(\d{3})+(?!\d))/g, ","));
}

// A count shown on the page, read back (separators dropped).
export function countOf(text) {
  return parseInt(String(text || "").replace(/,/g, ""), 10) || 0;
}

// As formats.py's money_short: two places from a dollar up, else two significant digits (2 to 8
// places), rounded half up, trailing zeros dropped, with thousands separators.
export function moneyShort(value) {
  const exact = moneyDisplay(value);
  if (!exact) return "";
  const negative = exact.charAt(0) === "-";
  const [whole, frac] = (negative ? exact.slice(1) : exact).split(".");
  let places = 2;
  if (whole === "0" && /[1-9]/.test(frac)) places = Math.min(8, Math.max(2, frac.search(/[1-9]/) + 2));
  const padded = (frac + "00000000").slice(0, 8);
  let digits = BigInt(whole + padded.slice(0, places));
  if (Number(padded.charAt(places) || "0") >= 5) digits += 1n;
  let text = digits.toString();
  while (text.length <= places) text = "0" + text;
  const shortFrac = text.slice(-places).replace(/0+$/, "").padEnd(2, "0");
  return (negative ? "-" : "") + countText(text.slice(0, -places)) + "." + shortFrac;
}

// As chat/templatetags/figures.py's {% money %}: "$0.00031", the exact figure on hover and focus.
export function moneyNode(value) {
  const exact = moneyDisplay(value);
  const short = moneyShort(value);
  const node = el("span", "money", "$" + short);
  node.setAttribute("data-exact", exact);
  const grouped = countText(exact);
  if (grouped !== short) {
    node.title = "exactly $" + grouped;
    node.tabIndex = 0;
  }
  return node;
}
