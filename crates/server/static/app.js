// latchkey Admin Center: a little progressive enhancement. Every page works
// without it; with it, confirmations open in a native <dialog>, Copy
// puts the new token on the clipboard, and the token forms show the scope
// checklist only for a restricted token and the date only for "On a date".
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const dialog = document.getElementById("confirm-dialog");
  if (dialog && typeof dialog.showModal === "function") {
    const form = dialog.querySelector("form");
    const button = document.getElementById("confirm-button");
    document.querySelectorAll("a[data-confirm]").forEach((link) => {
      link.addEventListener("click", (event) => {
        event.preventDefault();
        form.action = link.href;
        document.getElementById("confirm-title").textContent = link.dataset.confirm;
        document.getElementById("confirm-message").textContent = link.dataset.message || "";
        document.getElementById("confirm-subject").textContent = link.dataset.subject || "";
        button.textContent = link.dataset.button;
        button.className = link.hasAttribute("data-danger") ? "danger" : "primary";
        const menu = link.closest("details");
        if (menu) menu.open = false;
        dialog.showModal();
        button.focus();
      });
    });
    dialog.querySelector("[data-close]").addEventListener("click", () => dialog.close());
  }

  document.querySelectorAll("button[data-copy]").forEach((copy) => {
    const input = document.getElementById(copy.dataset.copy);
    const status = document.querySelector(".copy-status");
    if (!input || !navigator.clipboard) return;
    copy.hidden = false;
    copy.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(input.value);
        if (status) status.textContent = "Copied to the clipboard.";
      } catch (e) {
        input.select();
        if (status) status.textContent = "Copying failed: select the token and copy it yourself.";
      }
    });
  });

  // Token forms. Hidden fields are disabled too, so that they are not sent:
  // without this script every field shows and the server sorts them out.
  const scopes = document.getElementById("scopes");
  const restricted = document.getElementById("access-restricted");
  if (scopes && restricted) {
    const sync = () => {
      scopes.hidden = !restricted.checked;
      scopes.querySelectorAll("input").forEach((box) => (box.disabled = !restricted.checked));
    };
    document.querySelectorAll('input[name="access"]').forEach((radio) => radio.addEventListener("change", sync));
    sync();
  }
  const expires = document.getElementById("expires");
  const dateBox = document.getElementById("expires-date");
  if (expires && dateBox) {
    const date = dateBox.querySelector("input");
    const sync = () => {
      const onDate = expires.value === "date";
      dateBox.hidden = !onDate;
      date.disabled = !onDate;
      date.required = onDate;
    };
    expires.addEventListener("change", sync);
    sync();
  }

  // Close an open options menu when clicking elsewhere or pressing Escape.
  document.addEventListener("click", (event) => {
    document.querySelectorAll("details.menu[open]").forEach((menu) => {
      if (!menu.contains(event.target)) menu.open = false;
    });
  });
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Escape") return;
    document.querySelectorAll("details.menu[open]").forEach((menu) => {
      menu.open = false;
      menu.querySelector("summary").focus();
    });
  });
});
