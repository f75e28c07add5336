/* Bürger-ID: the new device – show the number, wait for the approval, register a passkey. EUPL-1.2 */
(function () {
  "use strict";
  const root = document.getElementById("join");
  const d = root.dataset;
  const api = window.BuergerAccount;
  const webauthn = window.BuergerWebAuthn;
  const statusBox = document.getElementById("status");
  const numberStep = document.getElementById("number-step");
  const form = document.getElementById("register-form");
  let finished = false;
  let shown = "";

  function say(text, isError) {
    statusBox.textContent = text;
    statusBox.classList.toggle("status-error", Boolean(isError));
  }

  function show(status) {
    if (status === shown || finished) { return; }
    shown = status;
    if (status === "approved") {
      numberStep.hidden = true;
      form.hidden = false;
      say(d.msgApproved, false);
      document.getElementById("device-name").focus();
    }
    if (status === "cancelled" || status === "expired") {
      finished = true;
      numberStep.hidden = true;
      form.hidden = true;
      say(status === "cancelled" ? d.msgCancelled : d.msgExpired, true);
    }
  }

  async function poll() {
    while (!finished && shown !== "approved") {
      await api.sleep(2000);
      try {
        const state = await api.getJSON(d.statusUrl);
        if (state.ok) { show(state.body.status); } else { finished = true; say(state.body.error_description || d.msgExpired, true); }
      } catch (e) {
        say(d.msgOffline, true);
      }
    }
  }

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    if (!webauthn.supported()) { say(d.msgUnsupported, true); return; }
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const begun = await api.postJSON(d.optionsUrl, d.csrfToken, {});
      if (!begun.ok) { say(begun.body.error_description || d.msgFailed, true); return; }
      say(d.msgWorking, false);
      let credential;
      try {
        credential = await webauthn.create(begun.body.options);
      } catch (e) {
        say(d.msgFailed, true);
        return;
      }
      const done = await api.postJSON(d.finishUrl, d.csrfToken, {
        enrolment_id: begun.body.enrolment_id,
        credential: credential,
        name: document.getElementById("device-name").value
      });
      if (!done.ok) { say(done.body.error_description || d.msgFailed, true); return; }
      finished = true;
      form.hidden = true;
      say("", false);
      document.getElementById("revocation-code").textContent = done.body.revocation_code;
      document.getElementById("done").hidden = false;
      document.getElementById("done-heading").focus();
    } catch (e) {
      say(d.msgFailed, true);
    } finally {
      button.disabled = false;
    }
  });

  show(d.status);
  poll();
})();
