// The console's only script: the confirmation dialog with the impact preview, and the
// processing status that refreshes itself. Same-origin fetches only; nothing from a CDN.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("settings-form");
  const dialog = document.getElementById("confirm");
  if (form && dialog) {
    let pending = null;
    form.querySelectorAll("input[type=checkbox]").forEach((box) => {
      box.addEventListener("change", async () => {
        pending = box;
        const body = document.getElementById("preview-body");
        body.textContent = "Computing the impact…";
        dialog.showModal();
        const url = `${form.dataset.preview}?${box.dataset.channel}=${box.checked ? "on" : "off"}`;
        const resp = await fetch(url, { credentials: "same-origin" });
        body.innerHTML = resp.ok ? await resp.text() : "The preview is not available.";
      });
    });
    document.getElementById("confirm-yes").addEventListener("click", () => form.submit());
    const cancel = () => {
      if (pending) pending.checked = !pending.checked;  // cancelled: the switch goes back
      pending = null;
    };
    document.getElementById("confirm-no").addEventListener("click", () => {
      cancel();
      dialog.close();
    });
    dialog.addEventListener("cancel", cancel);  // Escape closes the dialog too
  }
  const lists = document.getElementById("list-form");
  if (lists) {
    document.getElementById("dry-run").addEventListener("click", async () => {
      const out = document.getElementById("dryrun-result");
      if (!lists.reportValidity()) return;
      out.textContent = "Computing the dry run…";
      const resp = await fetch(lists.dataset.dryrun, {
        method: "POST",
        body: new FormData(lists),  // carries the CSRF token
        credentials: "same-origin",
      });
      out.innerHTML = resp.ok || resp.status === 422 ? await resp.text() : "The dry run is not available.";
    });
  }
  const status = document.getElementById("status");
  if (status && status.dataset.poll) {
    setInterval(async () => {
      const resp = await fetch(status.dataset.poll, { credentials: "same-origin" });
      if (resp.ok) status.innerHTML = await resp.text();
    }, 2000);
  }
});
