/* Bürger-ID: JSON requests from the account and pairing pages, with the page's CSRF token. EUPL-1.2 */
(function () {
  "use strict";

  async function send(method, url, token, body) {
    const headers = { "Accept": "application/json" };
    const init = { method: method, credentials: "same-origin", cache: "no-store", headers: headers };
    if (method === "POST") {
      headers["Content-Type"] = "application/json";
      headers["X-CSRF-Token"] = token;
      init.body = JSON.stringify(body || {});
    }
    const response = await fetch(url, init);
    let data = {};
    try { data = await response.json(); } catch (e) { data = {}; }
    return { ok: response.ok, status: response.status, body: data };
  }

  function sleep(ms) {
    return new Promise(function (resolve) { window.setTimeout(resolve, ms); });
  }

  window.BuergerAccount = {
    getJSON: function (url) { return send("GET", url); },
    postJSON: function (url, token, body) { return send("POST", url, token, body); },
    sleep: sleep
  };
})();
