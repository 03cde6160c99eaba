// Follows the sign-in: polls GET /api/signin, counts down, and reloads the page when the
// sign-in ends so the server renders the result (success or an explained failure).
(function () {
  "use strict";
  var wizard = document.getElementById("wizard");
  if (!wizard) { return; }
  var countdown = document.getElementById("countdown");
  var seen = wizard.getAttribute("data-status");
  var hadCode = !!document.getElementById("user-code");

  function tick() {
    if (!countdown) { return; }
    var left = parseInt(countdown.textContent, 10);
    if (left > 0) { countdown.textContent = String(left - 1); }
  }

  function poll() {
    fetch("/api/signin", { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (state) {
        if (!state) { return; }
        var gotCode = !!state.user_code;
        if (state.status !== seen || gotCode !== hadCode) { window.location.reload(); return; }
        if (countdown && state.seconds_left !== null) { countdown.textContent = String(state.seconds_left); }
      })
      .catch(function () { /* the next poll tries again */ });
  }

  window.setInterval(tick, 1000);
  window.setInterval(poll, 2000);
}());
