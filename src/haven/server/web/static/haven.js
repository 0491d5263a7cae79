// Haven web pages: small progressive enhancements; every page reads fine without this file.
(function () {
  "use strict";

  function copyText(button, text) {
    if (!navigator.clipboard) return;
    navigator.clipboard.writeText(text).then(function () {
      var label = button.textContent;
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = label; }, 1500);
    });
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("button.copy");
    if (!button) return;
    var text = button.dataset.copy;
    if (text === undefined && button.dataset.copyFrom) {
      var source = document.getElementById(button.dataset.copyFrom);
      text = source ? source.textContent : "";
    }
    copyText(button, text || "");
  });

  // close an open revision menu on Escape
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") return;
    document.querySelectorAll("details.revs[open]").forEach(function (d) { d.open = false; });
  });
})();
