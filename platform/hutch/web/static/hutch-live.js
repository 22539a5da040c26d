// hutch web: live refresh (issue #14). Plain JavaScript, no build step, no inline code.
// An element with an id and data-live="SECONDS" is refreshed every SECONDS: the page's
// own URL is fetched again (the same server-side rendering, so nothing is drawn twice)
// and the element is replaced by its new copy. Without JavaScript the page is complete;
// with it, the refresh pauses while the tab is hidden or a field inside has the focus.
(function () {
  "use strict";

  function refresh(ids) {
    if (document.hidden) { return; }
    fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (answer) { return answer.ok ? answer.text() : null; })
      .then(function (text) {
        if (text === null) { return; }
        var fresh = new DOMParser().parseFromString(text, "text/html");
        ids.forEach(function (id) {
          var old = document.getElementById(id);
          var next = fresh.getElementById(id);
          if (old && next && !old.contains(document.activeElement)) {
            old.replaceWith(document.importNode(next, true));
          }
        });
        document.documentElement.dataset.liveRefreshed = String(Date.now());
      })
      .catch(function () { /* the next round tries again */ });
  }

  function start() {
    var parts = Array.prototype.slice.call(document.querySelectorAll("[data-live][id]"));
    if (parts.length === 0) { return; }
    var seconds = Math.max(2, Number(parts[0].getAttribute("data-live")) || 5);
    var ids = parts.map(function (el) { return el.id; });
    window.setInterval(function () { refresh(ids); }, seconds * 1000);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
}());
