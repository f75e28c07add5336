/* Bürger-ID: add another device – QR code, wait for it, type its number, confirm with a passkey. EUPL-1.2 */
(function () {
  "use strict";
  const root = document.getElementById("pairing");
  const d = root.dataset;
  const api = window.BuergerAccount;
  const webauthn = window.BuergerWebAuthn;
  const statusBox = document.getElementById("status");
  const form = document.getElementById("approve-form");
  const numberInput = document.getElementById("number");
  const figure = document.getElementById("qr-figure");
  const ENDED = ["wrong_number", "pairing_expired", "pairing_cancelled", "pairing_used", "pairing_not_found"];
  let finished = false;
  let shown = "";

  function say(text, isError) {
    statusBox.textContent = text;
    statusBox.classList.toggle("status-error", Boolean(isError));
  }

  function finish(text, isError) {
    finished = true;
    form.hidden = true;
    figure.hidden = true;
    say(text, isError);
  }

  function show(status) {
    if (status === shown || finished) { return; }
    shown = status;
    if (status === "pending") { say(d.msgPending, false); }
    if (status === "claimed") {
      figure.hidden = true;
      form.hidden = false;
      say(d.msgClaimed, false);
      numberInput.focus();
    }
    if (status === "approved") { finish(d.msgApproved, false); }
    if (status === "used") { finish(d.msgUsed, false); }
    if (status === "cancelled") { finish(d.msgCancelled, true); }
    if (status === "expired") { finish(d.msgExpired, true); }
  }

  async function poll() {
    while (!finished) {
      await api.sleep(2000);
      try {
        const state = await api.getJSON(d.statusUrl);
        if (state.ok) { show(state.body.status); } else { finish(state.body.error_description || d.msgExpired, true); }
      } catch (e) {
        say(d.msgOffline, true);
      }
    }
  }

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    const number = numberInput.value.trim();
    if (!/^[0-9]{2}$/.test(number)) { say(d.msgNumber, true); return; }
    if (!webauthn.supported()) { say(d.msgUnsupported, true); return; }
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const begun = await api.postJSON(d.optionsUrl, d.csrfToken, { number: number });
      if (!begun.ok) {
        const text = begun.body.error_description || d.msgFailed;
        if (ENDED.indexOf(begun.body.error) >= 0) { finish(text, true); } else { say(text, true); }
        return;
      }
      say(d.msgConfirm, false);
      let credential;
      try {
        credential = await webauthn.get(begun.body.options);
      } catch (e) {
        say(d.msgFailed, true);
        return;
      }
      const done = await api.postJSON(d.approveUrl, d.csrfToken,
        { number: number, ceremony_id: begun.body.ceremony_id, credential: credential });
      if (done.ok) { show(done.body.status); return; }
      const text = done.body.error_description || d.msgFailed;
      if (ENDED.indexOf(done.body.error) >= 0) { finish(text, true); } else { say(text, true); }
    } catch (e) {
      say(d.msgFailed, true);
    } finally {
      button.disabled = false;
    }
  });

  document.getElementById("qr").replaceChildren(window.BuergerQR.toSvg(d.joinUrl, { ecl: "M" }));
  show(d.status);
  poll();
})();
