// parallelr dashboard: keep the page's live part current without reloading the page.
// The server sends an event when the store changes; the page then fetches its own live part
// (already escaped HTML, rendered by the server) and swaps it in, at most twice a second.
(function () {
  "use strict";
  var live = document.getElementById("live");
  var connection = document.getElementById("connection");
  if (!live || !window.EventSource || !window.fetch) { return; }
  var MIN_GAP_MS = 500;
  var busy = false, again = false, last = 0, timer = null;

  function show(state) {
    if (connection) { connection.textContent = state; connection.className = "connection " + state; }
  }

  function refresh() {
    timer = null;
    if (busy) { again = true; return; }
    busy = true;
    last = Date.now();
    fetch(live.dataset.source || window.location.href,
          { headers: { "X-Live": "1" }, credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        // only a live block the server marked as one (a page's, or its error's) is swapped in
        if (response.headers.get("X-Live-Block") !== "1") { throw new Error("not a live block"); }
        return response.text();
      })
      .then(function (html) {
        live.innerHTML = html;
        live.dataset.updated = String(Date.now());
        document.dispatchEvent(new CustomEvent("parallelr:updated"));
      })
      .catch(function () { show("offline"); })
      .then(function () {
        busy = false;
        if (again) { again = false; schedule(); }
      });
  }

  function schedule() {
    if (timer !== null) { return; }
    timer = window.setTimeout(refresh, Math.max(0, last + MIN_GAP_MS - Date.now()));
  }

  var source = new EventSource(live.dataset.events, { withCredentials: true });
  source.addEventListener("hello", function () { show("live"); schedule(); });
  source.addEventListener("change", function () { show("live"); schedule(); });
  source.onerror = function () { show("reconnecting"); };
}());
