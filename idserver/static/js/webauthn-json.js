/* Bürger-ID: the browser's own WebAuthn JSON helpers, and JSON requests. EUPL-1.2 */
(function () {
  "use strict";

  function supported() {
    return Boolean(window.PublicKeyCredential &&
      PublicKeyCredential.parseCreationOptionsFromJSON &&
      PublicKeyCredential.parseRequestOptionsFromJSON);
  }

  async function postJSON(url, body) {
    const response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json" },
      body: JSON.stringify(body || {})
    });
    let data = {};
    try { data = await response.json(); } catch (e) { data = {}; }
    return { ok: response.ok, status: response.status, body: data };
  }

  async function create(optionsJSON) {
    const publicKey = PublicKeyCredential.parseCreationOptionsFromJSON(optionsJSON);
    const credential = await navigator.credentials.create({ publicKey: publicKey });
    return credential.toJSON();
  }

  async function get(optionsJSON) {
    const publicKey = PublicKeyCredential.parseRequestOptionsFromJSON(optionsJSON);
    const credential = await navigator.credentials.get({ publicKey: publicKey });
    return credential.toJSON();
  }

  window.BuergerWebAuthn = { supported: supported, postJSON: postJSON, create: create, get: get };
})();
