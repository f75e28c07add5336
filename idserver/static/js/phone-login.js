/* Bürger-ID: confirm a login on the phone – type the number, then unlock the passkey. EUPL-1.2 */
(function () {
  "use strict";
  const form = document.getElementById("approve-form");
  const status = document.getElementById("status");
  const denyButton = document.getElementById("deny-button");
  const api = window.BuergerWebAuthn;
  const binding = form.dataset.binding;
  // Errors after which the login is over: nothing to retry on this page.
  const ENDED = ["wrong_number", "login_ended", "login_expired", "other_account", "level_too_low"];
  // The challenge nonce handed out with this page (the scan): the WebAuthn challenge is
  // SHA-256(nonce ‖ canonical JSON of {context, number}) (docs/phone-api.md), derived here once
  // the number is typed, so no request is needed before signing. Good for one answer; after
  // that (or without it) the challenge is asked for with the number.
  let handedOut = form.dataset.nonce && window.crypto && window.crypto.subtle ? {
    nonce: form.dataset.nonce,
    context: JSON.parse(form.dataset.context),
    options: JSON.parse(form.dataset.options)
  } : null;

  function say(text, isError) {
    status.textContent = text;
    status.classList.toggle("status-error", Boolean(isError));
  }

  // Sorted keys, no whitespace, as the server's canonical_json (json.dumps, ensure_ascii off).
  function canonical(value) {
    if (Array.isArray(value)) { return "[" + value.map(canonical).join(",") + "]"; }
    if (value !== null && typeof value === "object") {
      return "{" + Object.keys(value).sort().map(function (key) {
        return JSON.stringify(key) + ":" + canonical(value[key]);
      }).join(",") + "}";
    }
    return JSON.stringify(value);
  }

  function fromBase64url(text) {
    const plain = atob(text.replace(/-/g, "+").replace(/_/g, "/"));
    return Uint8Array.from(plain, function (c) { return c.charCodeAt(0); });
  }

  function toBase64url(bytes) {
    let plain = "";
    bytes.forEach(function (b) { plain += String.fromCharCode(b); });
    return btoa(plain).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  async function derivedOptions(handed, number) {
    const nonce = fromBase64url(handed.nonce);
    const message = new TextEncoder().encode(canonical({ context: handed.context, number: number }));
    const joined = new Uint8Array(nonce.length + message.length);
    joined.set(nonce);
    joined.set(message, nonce.length);
    const digest = new Uint8Array(await window.crypto.subtle.digest("SHA-256", joined));
    return Object.assign({}, handed.options, { challenge: toBase64url(digest) });
  }

  async function requestOptions(number) {
    if (handedOut) { return { ok: true, body: { options: await derivedOptions(handedOut, number) } }; }
    return api.postJSON(form.dataset.challengeUrl, { binding: binding, number: number });
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
      const issued = await requestOptions(number);
      if (!issued.ok) {
        const ended = ENDED.indexOf(issued.body.error) >= 0;
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
      handedOut = null;  // the answer uses the nonce up, whatever the server says to it
      const approved = await api.postJSON(form.dataset.approveUrl,
        { binding: binding, number: number, credential: credential });
      if (approved.ok) {
        finish(form.dataset.msgApproved);
      } else if (ENDED.indexOf(approved.body.error) >= 0) {
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
