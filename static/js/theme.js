// Light or dark: the system's choice (prefers-color-scheme) until the person picks one with the
// "Dark mode" toggle; the pick is kept in localStorage. A classic script loaded in <head>, so the
// chosen theme is set before the page paints (no flash of the other one).
(function () {
  const KEY = "chatlima-theme";
  const root = document.documentElement;
  const system = window.matchMedia("(prefers-color-scheme: dark)");

  function stored() {
    try { return window.localStorage.getItem(KEY); } catch (error) { return null; }
  }

  function isDark() {
    const chosen = root.getAttribute("data-theme");
    return chosen ? chosen === "dark" : system.matches;
  }

  const saved = stored();
  if (saved === "dark" || saved === "light") root.setAttribute("data-theme", saved);

  function wire() {
    const toggle = document.getElementById("theme-toggle");
    if (!toggle) return;
    const show = () => toggle.setAttribute("aria-pressed", isDark() ? "true" : "false");
    toggle.hidden = false;
    show();
    system.addEventListener("change", show);
    toggle.addEventListener("click", () => {
      const theme = isDark() ? "light" : "dark";
      root.setAttribute("data-theme", theme);
      try { window.localStorage.setItem(KEY, theme); } catch (error) { /* private mode: this page only */ }
      show();
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", wire);
  else wire();
})();
