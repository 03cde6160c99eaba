// Shows the fields that belong to the chosen service provider.
(function () {
  "use strict";
  var provider = document.getElementById("provider");
  if (!provider) { return; }
  var oauth = document.getElementById("oauth-fields");
  var plain = document.getElementById("plain-fields");
  function update() {
    var none = provider.value === "none";
    oauth.classList.toggle("hidden", none);
    plain.classList.toggle("hidden", !none);
  }
  provider.addEventListener("change", update);
  update();
}());
