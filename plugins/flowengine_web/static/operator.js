/* The operator page's script (flowengine_web): fetches the live part every data-refresh seconds
   and swaps it in, without reloading the page; on a failure it keeps what it shows and says so. */
(function () {
  "use strict";
  var live = document.getElementById("live");
  var note = document.getElementById("refresh-note");
  if (!live) { return; }
  var every = Math.max(1, Number(live.getAttribute("data-refresh"))) * 1000;
  var url = live.getAttribute("data-src");
  function swap(text) {
    var fresh = new DOMParser().parseFromString(text, "text/html").getElementById("live");
    if (!fresh) { throw new Error("no live part"); }
    live.replaceChildren.apply(live, Array.prototype.slice.call(fresh.childNodes));
    live.setAttribute("data-read-at", fresh.getAttribute("data-read-at"));
    live.setAttribute("data-refreshes", String(Number(live.getAttribute("data-refreshes") || "0") + 1));
  }
  function update() {
    fetch(url, { credentials: "same-origin", cache: "no-store", headers: { "Accept": "text/html" } })
      .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.text(); })
      .then(function (text) { swap(text); if (note) { note.textContent = ""; } })
      .catch(function (e) { if (note) { note.textContent = "Could not refresh (" + e.message + "); trying again."; } })
      .then(function () { window.setTimeout(update, every); });
  }
  window.setTimeout(update, every);
}());
