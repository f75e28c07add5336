/* Bürger-ID: confirm a login on the phone – type the number, then unlock the passkey. EUPL-1.2 */
(function () {
  "use strict";
  const form = document.getElementById("approve-form");
  const status = document.getElementById("status");
  const denyButton = document.getElementById("deny-button");
  const api = window.BuergerWebAuthn;
  const binding = form.dataset.binding;

  function say(text, isError) {
    status.textContent = text;
    status.classList.toggle("status-error", Boolean(isError));
  }

  function finish(text) {
    form.hidden = true;
    denyButton.hidden = true;
    say(text, false);
  }

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    const number = document.getElementById("number").value.trim();
    if (!/^[0-9]{2}$/.test(number)) { say(form.dataset.msgNumber, true); return; }
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const issued = await api.postJSON(form.dataset.challengeUrl, { binding: binding, number: number });
      if (!issued.ok) {
        const ended = issued.body.error === "wrong_number" || issued.body.error === "login_ended" ||
          issued.body.error === "login_expired";
        if (ended) { finish(issued.body.error_description); } else { say(issued.body.error_description, true); }
        return;
      }
      say(form.dataset.msgConfirm, false);
      let credential;
      try {
        credential = await api.get(issued.body.options);
      } catch (e) {
        say(form.dataset.msgFailed, true);
        return;
      }
      const approved = await api.postJSON(form.dataset.approveUrl,
        { binding: binding, number: number, credential: credential });
      if (approved.ok) {
        finish(form.dataset.msgApproved);
      } else if (approved.body.error === "other_account") {
        finish(approved.body.error_description);  // the login has ended: nothing to retry
      } else {
        say(approved.body.error_description || form.dataset.msgFailed, true);
      }
    } catch (e) {
      say(form.dataset.msgFailed, true);
    } finally {
      button.disabled = false;
    }
  });

  denyButton.addEventListener("click", async function () {
    const denied = await api.postJSON(form.dataset.denyUrl, { binding: binding });
    finish(denied.ok ? form.dataset.msgDenied : denied.body.error_description);
  });
})();
