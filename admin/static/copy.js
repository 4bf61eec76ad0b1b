// Copy buttons: the only script of the control panel. Everything else works without it.
// A button with data-copy="ID" copies the value (or text) of the element with that id.
"use strict";
(function () {
  function copyText(field) {
    var text = "value" in field ? field.value : field.textContent;
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    // Plain-http pages have no Clipboard API: select the text and use the old command.
    field.focus();
    if (field.select) { field.select(); }
    return document.execCommand("copy") ? Promise.resolve() : Promise.reject();
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("button[data-copy]").forEach(function (button) {
      var field = document.getElementById(button.getAttribute("data-copy"));
      var status = document.getElementById(button.getAttribute("data-copy") + "-status");
      if (!field) { return; }
      button.hidden = false;
      button.addEventListener("click", function () {
        copyText(field).then(function () {
          if (status) { status.textContent = "Copied to the clipboard."; }
        }, function () {
          if (field.select) { field.select(); }
          if (status) { status.textContent = "Select the text and press Ctrl+C to copy it."; }
        });
      });
    });
  });
})();
