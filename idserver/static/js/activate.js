/* Bürger-ID: register this phone with the activation code from the letter. EUPL-1.2 */
(function () {
  "use strict";
  const form = document.getElementById("activate-form");
  const status = document.getElementById("status");
  const api = window.BuergerWebAuthn;

  function say(text, isError) {
    status.textContent = text;
    status.classList.toggle("status-error", Boolean(isError));
  }

  // The letter's QR code carries the code in the fragment (#code=…), which a browser never
  // sends to the server. Fill it in, then drop it from the address bar and the history entry.
  if (window.location.hash) {
    const code = new URLSearchParams(window.location.hash.slice(1)).get("code");
    if (code) { document.getElementById("code").value = code.slice(0, 32); }
    window.history.replaceState(window.history.state, "", window.location.pathname + window.location.search);
  }

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    if (!api.supported()) { say(form.dataset.msgUnsupported, true); return; }
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const begun = await api.postJSON(form.dataset.beginUrl, {
        activation_id: form.dataset.activationId,
        code: document.getElementById("code").value
      });
      if (!begun.ok) { say(begun.body.error_description || form.dataset.msgFailed, true); return; }
      say(form.dataset.msgWorking, false);
      let credential;
      try {
        credential = await api.create(begun.body.options);
      } catch (e) {
        say(form.dataset.msgFailed, true);
        return;
      }
      const finished = await api.postJSON(form.dataset.beginUrl + "/" + begun.body.enrolment_id, {
        credential: credential,
        name: document.getElementById("device-name").value
      });
      if (!finished.ok) { say(finished.body.error_description || form.dataset.msgFailed, true); return; }
      form.hidden = true;
      say("", false);
      document.getElementById("revocation-code").textContent = finished.body.revocation_code;
      document.getElementById("done").hidden = false;
      document.getElementById("done-heading").focus();
    } catch (e) {
      say(form.dataset.msgFailed, true);
    } finally {
      button.disabled = false;
    }
  });
})();
