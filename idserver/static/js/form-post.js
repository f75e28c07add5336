/* The form_post authorization response (OAuth 2.0 Form Post Response Mode): the form goes to
   the application at once. Without JavaScript its button sends it. */
(function () {
  "use strict";
  var form = document.querySelector("form[data-auto-submit]");
  if (form) {
    form.submit();
  }
})();
