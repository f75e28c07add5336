/* Bürger-ID: the desktop's QR page – animated QR, countdown, waiting for the phone. EUPL-1.2 */
(function () {
  "use strict";
  const root = document.getElementById("login");
  const d = root.dataset;
  const stepSeconds = Number(d.stepSeconds);
  const expiresAt = Number(d.expiresAt) * 1000;
  // Frames are numbered by server time, so a desktop with a wrong clock still shows fresh ones.
  const clockOffset = Number(d.serverTime) * 1000 - Date.now();
  const qrBox = document.getElementById("qr");
  const phoneLink = document.getElementById("phone-link");
  const statusBox = document.getElementById("status");
  const countdown = document.getElementById("countdown");
  const countdownSr = document.getElementById("countdown-sr");
  const endedBox = document.getElementById("ended");
  const endedReason = document.getElementById("ended-reason");
  let version = Number(d.version);
  let finished = false;
  let hmacKey = null;
  let lastStep = -1;

  function now() { return Date.now() + clockOffset; }

  function b64urlToBytes(text) {
    const b64 = text.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((text.length + 3) % 4);
    return Uint8Array.from(atob(b64), function (c) { return c.charCodeAt(0); });
  }

  function bytesToB64url(bytes) {
    let text = "";
    bytes.forEach(function (b) { text += String.fromCharCode(b); });
    return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  async function frameUrl(step) {
    const mac = await crypto.subtle.sign("HMAC", hmacKey, new TextEncoder().encode(String(step)));
    return d.phoneBase + "?t=" + step + "&h=" + bytesToB64url(new Uint8Array(mac).slice(0, 16));
  }

  async function drawFrame() {
    if (finished) { return; }
    const step = Math.floor(now() / 1000 / stepSeconds);
    if (step !== lastStep) {
      lastStep = step;
      const url = await frameUrl(step);
      qrBox.replaceChildren(window.BuergerQR.toSvg(url, { ecl: "M" }));
      phoneLink.href = url;
    }
  }

  function say(text) { statusBox.textContent = text; }

  function tick() {
    if (finished) { countdown.textContent = ""; return; }
    const left = Math.max(0, Math.round((expiresAt - now()) / 1000));
    const text = d.msgRemaining.replace("{time}", Math.floor(left / 60) + ":" + String(left % 60).padStart(2, "0"));
    countdown.textContent = text;
    if (left === 60 || left === 30 || left === 10) { countdownSr.textContent = text; }
    if (left === 0 && !finished) { show({ status: "expired" }); }
  }

  function show(state) {
    // The passkey button and the long poll can both report the end; follow it only once.
    if (finished) { return; }
    if (state.status === "scanned") { say(d.msgScanned); root.classList.add("is-scanned"); }
    if (state.status === "approved") { say(d.msgApproved); }
    if (state.status === "denied") {
      end({ wrong_number: d.msgWrongNumber, other_network: d.msgOtherNetwork,
        cancelled: d.msgCancelled, other_account: d.msgOtherAccount,
        level_too_low: d.msgLevelTooLow }[state.reason] || d.msgDenied);
    }
    if (state.status === "expired") { end(d.msgExpired); }
    if (["approved", "denied", "expired", "consumed"].indexOf(state.status) >= 0) {
      finished = true;
      root.classList.add("is-finished");
      qrBox.replaceChildren();
    }
    // Only an approval moves on by itself; a denial or expiry stays on screen until the
    // person chooses "Show a new code" or "Back to …" (WCAG 2.2.1).
    if (state.status === "approved" && state.continue_url) {
      window.location.assign(state.continue_url);
    }
  }

  function end(text) {
    say("");
    endedBox.hidden = false;
    if (endedReason.textContent !== text) { endedReason.textContent = text; }
  }

  async function waitForPhone() {
    while (!finished) {
      try {
        const response = await fetch(d.statusUrl + "?seen=" + version,
          { headers: { "Accept": "application/json" }, credentials: "same-origin", cache: "no-store" });
        if (!response.ok) { throw new Error(String(response.status)); }
        const state = await response.json();
        version = state.version;
        show(state);
      } catch (e) {
        say(d.msgOffline);
        await new Promise(function (resolve) { window.setTimeout(resolve, 1000); });
      }
    }
  }

  async function usePasskey() {
    const api = window.BuergerWebAuthn;
    try {
      const begun = await api.postJSON(d.passkeyUrl + "/options", {});
      if (!begun.ok) { say(begun.body.error_description || d.msgPasskeyFailed); return; }
      const credential = await api.get(begun.body.options);
      const done = await api.postJSON(d.passkeyUrl, { ceremony_id: begun.body.ceremony_id, credential: credential });
      if (!done.ok) { say(done.body.error_description || d.msgPasskeyFailed); return; }
      show({ status: "approved", continue_url: done.body.continue_url });
    } catch (e) {
      say(d.msgPasskeyFailed);
    }
  }

  async function start() {
    hmacKey = await crypto.subtle.importKey("raw", b64urlToBytes(d.qrKey),
      { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    await drawFrame();
    window.setInterval(drawFrame, 250);
    tick();
    window.setInterval(tick, 1000);
    const button = document.getElementById("passkey-button");
    if (window.BuergerWebAuthn && window.BuergerWebAuthn.supported()) {
      button.addEventListener("click", usePasskey);
    } else {
      button.hidden = true;
    }
    show({ status: d.status });
    waitForPhone();
  }

  start();
})();
