/* Buttons marked data-print print the page (the print stylesheet in buergerid.css keeps only
   the revocation code and what to do with it). Without JavaScript they stay hidden. */
(function () {
  "use strict";
  document.querySelectorAll("[data-print]").forEach(function (button) {
    button.hidden = false;
    button.addEventListener("click", function () { window.print(); });
  });
})();
