// The console's own script: resumes the event stream where it left off, keeps the
// decide-by countdowns ticking, and holds a live refresh while a form in it is being filled.
(function () {
  "use strict";
  var last = null;
  // The page's stream starts after the newest event the page was rendered with; one that
  // htmx opens anew (after the old one was closed) resumes after the last event seen. The
  // browser's own reconnection sends Last-Event-ID itself.
  var source = null;
  htmx.createEventSource = function (url) {
    if (last !== null) url = url.replace(/([?&])last=[^&]*/, "$1last=" + encodeURIComponent(last));
    source = new EventSource(url);
    return source;
  };
  // A page left behind closes its stream at once: a browser opens few connections to one
  // host, and a stream still open would hold one of them.
  window.addEventListener("pagehide", function () {
    if (source) source.close();
  });
  // A page the browser brings back from its history cache has no stream: load it afresh.
  window.addEventListener("pageshow", function (e) {
    if (e.persisted) location.reload();
  });
  document.addEventListener("htmx:sseMessage", function (e) {
    if (e.detail && e.detail.lastEventId) last = e.detail.lastEventId;
  });
  document.addEventListener("htmx:beforeRequest", function (e) {
    var live = e.detail.elt;
    var focused = document.activeElement;
    if (live && live.id === "live" && focused && live.contains(focused) &&
        /^(INPUT|TEXTAREA|SELECT)$/.test(focused.tagName)) {
      e.preventDefault();
      focused.addEventListener("blur", function () { htmx.trigger(live, "sse:reset"); }, { once: true });
    }
  });
  function words(ms) {
    var s = Math.floor(Math.abs(ms) / 1000);
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
    if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
    return Math.floor(s / 86400) + " d " + Math.floor((s % 86400) / 3600) + " h";
  }
  setInterval(function () {
    var now = Date.now();
    document.querySelectorAll("[data-deadline]").forEach(function (el) {
      var ms = Number(el.getAttribute("data-deadline")) - now;
      el.textContent = ms > 0 ? "in " + words(ms) : words(ms) + " ago";
      el.classList.toggle("late", ms <= 0);
    });
  }, 1000);
})();
