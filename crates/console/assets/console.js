// Tollgate console: progressive enhancement only; every page works without it.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  // Copy buttons: <button data-copy="input-id">.
  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.hidden = false;
    button.addEventListener("click", async () => {
      const field = document.getElementById(button.dataset.copy);
      if (!field) return;
      try {
        await navigator.clipboard.writeText(field.value);
      } catch {
        field.select();
        document.execCommand("copy");
      }
      const label = button.textContent;
      button.textContent = "Copied";
      setTimeout(() => { button.textContent = label; }, 2000);
    });
  }
  // A dialog the server rendered open becomes modal (focus stays in it until closed).
  for (const dialog of document.querySelectorAll("dialog[data-modal][open]")) {
    dialog.close();
    dialog.showModal();
    const close = dialog.querySelector("[data-close]");
    if (close) close.addEventListener("click", () => dialog.close());
  }
  // An invite link carries its token after '#', which never reaches the server's logs.
  const token = document.getElementById("invite-token");
  if (token && !token.value && location.hash.length > 1) {
    try {
      token.value = decodeURIComponent(location.hash.slice(1));
    } catch {
      token.value = location.hash.slice(1);
    }
    // The token leaves the address bar and the history.
    history.replaceState(null, "", location.pathname);
  }
  // Restricted permissions show their scopes.
  const scopes = document.getElementById("scopes");
  if (scopes) {
    const sync = () => {
      const picked = document.querySelector("input[name=permissions]:checked");
      scopes.hidden = !picked || picked.value !== "restricted";
    };
    for (const radio of document.querySelectorAll("input[name=permissions]")) radio.addEventListener("change", sync);
    sync();
  }
});
