// graphflow's web page: live updates of a run page over server-sent events, and confirmations.
// No framework and no build step: the server renders every piece of HTML (escaped) and this
// script only swaps the sections whose key changed.
(function () {
  "use strict";

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.dataset && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
    }
  });

  function openFolds(section) {
    var open = {};
    section.querySelectorAll("details[open][data-fold]").forEach(function (fold) {
      open[fold.dataset.fold] = true;
    });
    return open;
  }

  function replace(section, update) {
    var open = openFolds(section);
    section.innerHTML = update.html;
    section.dataset.key = update.key;
    section.querySelectorAll("details[data-fold]").forEach(function (fold) {
      if (open[fold.dataset.fold]) { fold.open = true; }
    });
  }

  var main = document.querySelector("main[data-events]");
  if (!main || !window.EventSource) { return; }
  var source = new EventSource(main.dataset.events);
  source.addEventListener("update", function (event) {
    var update = JSON.parse(event.data);
    Object.keys(update.sections).forEach(function (name) {
      var section = document.getElementById(name);
      var next = update.sections[name];
      if (section && section.dataset.key !== next.key) { replace(section, next); }
    });
    document.body.dataset.runState = update.state;
    if (update.done) {
      source.close();
      document.body.dataset.live = "done";
    } else {
      document.body.dataset.live = "on";
    }
  });
})();
