// Live updates: every few seconds the page's live part (#live) is fetched again as a
// fragment (?partial=1) and swapped in, unless the reader is using a form in it, has turned
// live updates off, or the tab is hidden.
(function () {
  "use strict";
  var live = document.getElementById("live");
  var toggle = document.getElementById("live-toggle");
  if (!live) { return; }
  var every = parseInt(live.getAttribute("data-refresh"), 10) || 3000;
  var busy = false;

  // A form the reader is about to use (pointer over it, or focus in it) is not swapped
  // out from under the click.
  function inUse() {
    var active = document.activeElement;
    return (active && active !== document.body && live.contains(active)) ||
      live.querySelector("form:hover") !== null;
  }

  function refresh() {
    if (busy || document.hidden || (toggle && !toggle.checked) || inUse()) { return; }
    busy = true;
    fetch(live.getAttribute("data-src"), { credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) { throw new Error(response.status); }
        return response.text();
      })
      .then(function (html) { live.innerHTML = html; live.removeAttribute("data-stale"); })
      .catch(function () { live.setAttribute("data-stale", "1"); })
      .then(function () { busy = false; });
  }

  window.setInterval(refresh, every);
})();
