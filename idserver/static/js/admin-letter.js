/* Bürger-ID clerk console: download the activation letter, then show the resident's new state.
   The letter is issued by a POST that answers with the PDF, so a plain form submission leaves the
   page as it was. Here the form is sent with fetch, the PDF saved under the server's file name,
   and the page reloaded to list the new letter. Without JavaScript the form posts as usual.
   EUPL-1.2 */
(function () {
  "use strict";

  function fileName(response) {
    const header = response.headers.get("Content-Disposition") || "";
    const match = /filename="([^"]+)"/.exec(header);
    return match ? match[1] : "activation-letter.pdf";
  }

  function save(blob, name) {
    const url = URL.createObjectURL(blob);
    const link = document.createElement("a");
    link.href = url;
    link.download = name;
    document.body.appendChild(link);
    link.click();
    link.remove();
    window.setTimeout(function () { URL.revokeObjectURL(url); }, 60000);
  }

  function enhance(form) {
    const status = document.getElementById(form.getAttribute("data-status"));
    const button = form.querySelector("button[type=submit]");
    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      button.disabled = true;
      if (status) { status.textContent = form.getAttribute("data-working"); }
      let response;
      try {
        response = await fetch(form.action, {
          method: "POST", body: new FormData(form), credentials: "same-origin", cache: "no-store"
        });
      } catch (e) {
        response = null;
      }
      const type = response ? (response.headers.get("Content-Type") || "") : "";
      if (!response || !response.ok || type.indexOf("application/pdf") !== 0) {
        // Let the server's own page say what went wrong.
        button.disabled = false;
        HTMLFormElement.prototype.submit.call(form);
        return;
      }
      save(await response.blob(), fileName(response));
      // The saved file needs its blob URL a moment longer than this page lives when it reloads.
      // (data-after has no #fragment, so this is a full load even on the same address.)
      window.setTimeout(function () { window.location.assign(form.getAttribute("data-after")); }, 800);
    });
  }

  document.querySelectorAll("form[data-letter]").forEach(enhance);
})();
