// latchkey Admin Center: a little progressive enhancement. Every page works
// without it; with it, confirmations open in a native <dialog> (focus on
// Cancel for a destructive change, and back on the Options button after),
// Copy puts the new token on the clipboard (or the token is selected where
// copying cannot work), options menus close when the focus leaves, the
// token forms show the scope checklist only for a restricted token and the
// date only for "On a date", and times show in the browser's time zone.
"use strict";

document.documentElement.classList.add("js");

document.addEventListener("DOMContentLoaded", () => {
  const dialog = document.getElementById("confirm-dialog");
  if (dialog && typeof dialog.showModal === "function") {
    const form = dialog.querySelector("form");
    const button = document.getElementById("confirm-button");
    const cancel = dialog.querySelector("[data-close]");
    // Where the focus goes back to when the dialog closes: the Options
    // button of the menu it was opened from, else the link itself.
    let opener = null;
    document.querySelectorAll("a[data-confirm]").forEach((link) => {
      link.addEventListener("click", (event) => {
        event.preventDefault();
        form.action = link.href;
        document.getElementById("confirm-title").textContent = link.dataset.confirm;
        document.getElementById("confirm-message").textContent = link.dataset.message || "";
        document.getElementById("confirm-subject").textContent = link.dataset.subject || "";
        button.textContent = link.dataset.button;
        const danger = link.hasAttribute("data-danger");
        button.className = danger ? "danger" : "primary";
        const menu = link.closest("details");
        opener = menu ? menu.querySelector("summary") : link;
        if (menu) menu.open = false;
        dialog.showModal();
        // A destructive change starts on Cancel, so that Enter changes nothing.
        (danger ? cancel : button).focus();
      });
    });
    cancel.addEventListener("click", () => dialog.close());
    dialog.addEventListener("close", () => {
      if (opener && opener.isConnected) opener.focus();
      opener = null;
    });
  }

  // The reveal: the token field has the focus with its text selected.
  // Copy shows only where the Clipboard API works (a secure context);
  // elsewhere the selected token is left for the user to copy.
  document.querySelectorAll("button[data-copy]").forEach((copy) => {
    const input = document.getElementById(copy.dataset.copy);
    const status = document.querySelector(".copy-status");
    if (!input) return;
    const select = () => input.setSelectionRange(0, input.value.length);
    input.addEventListener("focus", select);
    input.addEventListener("click", select);
    input.focus();
    select();
    if (!navigator.clipboard || !window.isSecureContext) {
      if (status) status.textContent = "The token is selected: press Ctrl+C (\u2318C on a Mac) to copy it.";
      return;
    }
    copy.hidden = false;
    copy.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(input.value);
        if (status) status.textContent = "Copied to the clipboard.";
      } catch (e) {
        input.focus();
        select();
        if (status) status.textContent = "Copying failed. The token is selected: press Ctrl+C (\u2318C on a Mac) to copy it.";
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

  // Times: the server writes UTC; here they show in the browser's time
  // zone, with the UTC time as a tooltip.
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  const local = (seconds) =>
    new Intl.DateTimeFormat("en-CA", {
      year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit",
      second: seconds ? "2-digit" : undefined, hourCycle: "h23", timeZoneName: "short",
    });
  document.querySelectorAll("time[datetime][data-local], time[datetime][data-seconds]").forEach((el) => {
    const at = new Date(el.dateTime);
    if (Number.isNaN(at.getTime())) return;
    const seconds = el.hasAttribute("data-seconds");
    const part = {};
    local(seconds).formatToParts(at).forEach((p) => (part[p.type] = p.value));
    el.title = el.textContent.trim();
    el.textContent =
      `${part.year}-${part.month}-${part.day} ${part.hour}:${part.minute}` +
      `${seconds ? `:${part.second}` : ""}\u00a0${part.timeZoneName}`;
  });
  document.querySelectorAll("[data-zone-note]").forEach((note) => {
    note.textContent = `Times are in your time zone, ${zone}; point at one to see it in UTC.`;
  });

  // The audit log's From and To are days of the browser's time zone.
  const filters = document.querySelector("form.filters");
  if (filters && !filters.querySelector('input[name="tz"]')) {
    const tz = document.createElement("input");
    tz.type = "hidden";
    tz.name = "tz";
    tz.value = String(-new Date().getTimezoneOffset());
    filters.append(tz);
    const hint = document.getElementById("filter-dates-hint");
    if (hint) hint.textContent = `From and To are whole days in your time zone, ${zone}.`;
  }

  // The audit log: a source id kept from "View audit log" belongs to its
  // source type; choosing another type drops it.
  const sourceType = document.getElementById("filter-source-type");
  const sourceId = document.getElementById("filter-source-id");
  if (sourceType && sourceId) {
    sourceType.addEventListener("change", () => {
      const of = sourceId.form.querySelector('input[name="source_of"]');
      if (of && sourceType.value !== of.value) {
        sourceId.remove();
        of.remove();
      }
    });
  }

  // Close an open options menu when clicking elsewhere, when the focus
  // leaves it, or on Escape; only one is open at a time.
  document.addEventListener("click", (event) => {
    document.querySelectorAll("details.menu[open]").forEach((menu) => {
      if (!menu.contains(event.target)) menu.open = false;
    });
  });
  document.querySelectorAll("details.menu").forEach((menu) => {
    menu.addEventListener("focusout", (event) => {
      if (event.relatedTarget && !menu.contains(event.relatedTarget)) menu.open = false;
    });
    menu.addEventListener("toggle", () => {
      if (!menu.open) return;
      document.querySelectorAll("details.menu[open]").forEach((other) => {
        if (other !== menu) other.open = false;
      });
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
