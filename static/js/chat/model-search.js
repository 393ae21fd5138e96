// The model selector's search box. Once the catalogue is long it is shown, and typing hides the
// options (and provider groups) that do not match; the selected model always stays. Enter picks
// the first match (and does not send the message).
const SHOW_FROM = 12;

function matches(option, needle) {
  if (!needle || option.selected) return true;
  const group = option.parentNode.tagName === "OPTGROUP" ? option.parentNode.label : "";
  return (option.value + " " + option.textContent + " " + group).toLowerCase().includes(needle);
}

export function wireModelSearch() {
  const box = document.getElementById("model-search");
  const select = document.getElementById("model-select");
  if (!box || !select || select.options.length < SHOW_FROM) return;
  box.hidden = false;
  const needle = () => box.value.trim().toLowerCase();
  box.addEventListener("input", () => {
    for (const option of select.options) option.hidden = !matches(option, needle());
    for (const group of select.getElementsByTagName("optgroup")) {
      group.hidden = !Array.from(group.children).some((option) => !option.hidden);
    }
  });
  box.addEventListener("keydown", (event) => {
    if (event.key !== "Enter") return;
    event.preventDefault();
    const usable = Array.from(select.options).filter((option) => !option.hidden && !option.disabled);
    const first = usable.find((option) => option.value.toLowerCase().includes(needle())) || usable[0];
    if (first && first.value !== select.value) {
      select.value = first.value;
      select.dispatchEvent(new Event("change", { bubbles: true }));
    }
  });
}
