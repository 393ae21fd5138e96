// Money stays a decimal string: formatted and added by string and BigInt rules, never through a float.

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
