/* The logged-out page of a SAML Single Logout the application asked for: the other
   applications are told in hidden iframes; once they have loaded (or after a few seconds), the
   LogoutResponse form goes on to the application that asked. Without JavaScript its button
   sends it. An iframe marked data-posts-on (a SAML LogoutRequest by HTTP-POST) has loaded once
   its form has reached the application. */
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
  function reachedApplication(frame) {
    /* A frame marked data-posts-on first loads a page of Bürger-ID whose form then goes to
       the application: only a load of another origin (unreadable here) counts. */
    if (!frame.hasAttribute("data-posts-on")) {
      return true;
    }
    try {
      return frame.contentWindow.location.origin !== window.location.origin;
    } catch (e) {
      return true;
    }
  }
  function done() {
    waiting -= 1;
    if (waiting <= 0) {
      send();
    }
  }
  function loaded(event) {
    if (reachedApplication(event.target)) {
      done();
    }
  }
  for (var i = 0; i < frames.length; i += 1) {
    frames[i].addEventListener("load", loaded);
    frames[i].addEventListener("error", done);
  }
  window.setTimeout(send, 5000);
  if (waiting === 0) {
    send();
  }
})();
