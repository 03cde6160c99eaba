// Ties a form error to its field: the input named by #error's data-field is marked invalid,
// described by the error (screen readers read it with the field) and focused.
(function () {
  "use strict";
  var error = document.getElementById("error");
  var name = error && error.getAttribute("data-field");
  var input = name && document.getElementById(name);
  if (!input) { return; }
  input.setAttribute("aria-invalid", "true");
  input.setAttribute("aria-describedby", "error");
  input.focus();
}());
