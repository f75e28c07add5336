/* The logged-out page of a SAML Single Logout the application asked for: the other
   applications are told in hidden iframes; once they have loaded (or after a few seconds), the
   LogoutResponse form goes on to the application that asked. Without JavaScript its button
   sends it. */
(function () {
  "use strict";
  var form = document.querySelector("form[data-after-frames]");
  if (!form) {
    return;
  }
  var frames = document.querySelectorAll("iframe.frontchannel-logout");
  var waiting = frames.length;
  var sent = false;
  function send() {
    if (!sent) {
      sent = true;
      form.submit();
    }
  }
  function loaded() {
    waiting -= 1;
    if (waiting <= 0) {
      send();
    }
  }
  for (var i = 0; i < frames.length; i += 1) {
    frames[i].addEventListener("load", loaded);
    frames[i].addEventListener("error", loaded);
  }
  window.setTimeout(send, 5000);
  if (waiting === 0) {
    send();
  }
})();
