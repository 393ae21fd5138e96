// The model selector's search box. Once the catalogue is long it is shown, and typing hides the
// options (and provider groups) that do not match; the selected model always stays. Enter picks
// the first match (and does not send the message).
(function () {
  "use strict";
  var SHOW_FROM = 12;
  var box = document.getElementById("model-search");
  var select = document.getElementById("model-select");
  if (!box || !select || select.options.length < SHOW_FROM) return;
  box.hidden = false;

  function matches(option, group, needle) {
    if (!needle || option.selected) return true;
    var text = (option.value + " " + option.textContent + " " + (group ? group.label : "")).toLowerCase();
    return text.indexOf(needle) !== -1;
  }

  function filter() {
    var needle = box.value.trim().toLowerCase();
    Array.prototype.forEach.call(select.options, function (option) {
      option.hidden = !matches(option, option.parentNode.tagName === "OPTGROUP" ? option.parentNode : null, needle);
    });
    Array.prototype.forEach.call(select.getElementsByTagName("optgroup"), function (group) {
      group.hidden = !Array.prototype.some.call(group.children, function (option) { return !option.hidden; });
    });
  }

  box.addEventListener("input", filter);
  box.addEventListener("keydown", function (event) {
    if (event.key !== "Enter") return;
    event.preventDefault();
    var first = Array.prototype.find.call(select.options, function (option) {
      return !option.hidden && !option.disabled && option.value.toLowerCase().indexOf(box.value.trim().toLowerCase()) !== -1;
    }) || Array.prototype.find.call(select.options, function (option) { return !option.hidden && !option.disabled; });
    if (first && first.value !== select.value) {
      select.value = first.value;
      select.dispatchEvent(new Event("change", { bubbles: true }));
    }
  });
})();
