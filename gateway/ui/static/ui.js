// Progressive help only; every page works without it.
document.addEventListener("DOMContentLoaded", () => {
  // Ask before actions that cannot be undone (revoking consent, breaking the glass).
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
});
