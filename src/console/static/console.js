// hookgate console: live rows, the live overview, relative times, "Copy as curl".
// No inline script anywhere: the Content-Security-Policy allows only this file.
(function () {
  "use strict";

  function relative(ms) {
    var d = Math.round((Date.now() - ms) / 1000);
    var future = d < 0;
    var n = Math.abs(d);
    var t;
    if (n < 60) t = n + " s";
    else if (n < 3600) t = Math.floor(n / 60) + " min";
    else if (n < 86400) t = Math.floor(n / 3600) + " h";
    else t = Math.floor(n / 86400) + " d";
    return future ? "in " + t : t + " ago";
  }

  function updateTimes() {
    var els = document.querySelectorAll("[data-ts]");
    for (var i = 0; i < els.length; i++) {
      els[i].textContent = relative(Number(els[i].getAttribute("data-ts")));
    }
  }

  // The live table: every 2 s, fetch the first page's rows (server-rendered and
  // escaped) and swap them in when they changed.
  function live(tbody) {
    var url = tbody.getAttribute("data-live");
    var status = document.getElementById("live");
    var last = null;
    function poll() {
      fetch(url, { credentials: "same-origin", cache: "no-store" })
        .then(function (r) {
          if (r.status === 401) {
            if (status) status.textContent = "Logged out: reload the page to log in again.";
            return null;
          }
          return r.ok ? r.text() : null;
        })
        .then(function (html) {
          if (html !== null && html !== undefined && html !== last) {
            var before = {};
            var rows = tbody.querySelectorAll("tr[data-id]");
            for (var i = 0; i < rows.length; i++) before[rows[i].getAttribute("data-id")] = true;
            last = html;
            tbody.innerHTML = html;
            var fresh = 0;
            rows = tbody.querySelectorAll("tr[data-id]");
            for (var j = 0; j < rows.length; j++) {
              if (!before[rows[j].getAttribute("data-id")]) fresh++;
            }
            // Tell screen readers too (the status element is a live region).
            if (fresh > 0 && status) {
              status.textContent = fresh === 1 ? "1 new row." : fresh + " new rows.";
            }
          }
          updateTimes();
          setTimeout(poll, 2000);
        })
        .catch(function () {
          if (status) status.textContent = "Live updates paused: the gateway does not answer.";
          setTimeout(poll, 2000);
        });
    }
    setTimeout(poll, 2000);
  }

  // The overview: every 10 s while the tab is visible, fetch its sections
  // (server-rendered from the sampler's rings) and swap them in when they
  // changed. A hidden tab asks nothing, and catches up when shown again.
  function overview(box) {
    var url = box.getAttribute("data-overview");
    var timer = null;
    var last = null;
    function schedule() {
      clearTimeout(timer);
      timer = setTimeout(poll, 10000);
    }
    function poll() {
      if (document.visibilityState === "hidden") return;
      fetch(url, { credentials: "same-origin", cache: "no-store" })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) {
          if (html !== null && html !== last) {
            last = html;
            box.innerHTML = html;
          }
          updateTimes();
          schedule();
        })
        .catch(schedule);
    }
    document.addEventListener("visibilitychange", function () {
      if (document.visibilityState === "visible") poll();
      else clearTimeout(timer);
    });
    schedule();
  }

  function copyButtons() {
    var buttons = document.querySelectorAll("button[data-copy]");
    for (var i = 0; i < buttons.length; i++) {
      (function (b) {
        b.hidden = false;
        b.addEventListener("click", function () {
          var src = document.getElementById(b.getAttribute("data-copy"));
          var out = document.getElementById(b.getAttribute("data-status"));
          var text = !src ? "" : src.tagName === "INPUT" ? src.value : src.textContent;
          var done = function (msg) { if (out) out.textContent = msg; };
          if (navigator.clipboard && navigator.clipboard.writeText) {
            navigator.clipboard.writeText(text).then(
              function () { done("Copied."); },
              function () { done("Copying is not allowed here: open the curl section below and copy it."); }
            );
          } else {
            done("Copying is not available here: open the curl section below and copy it.");
          }
        });
      })(buttons[i]);
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    var tbody = document.querySelector("tbody[data-live]");
    if (tbody) live(tbody);
    var box = document.querySelector("[data-overview]");
    if (box) overview(box);
    copyButtons();
    updateTimes();
  });
})();

// The app portal: the key rides in the URL fragment (never sent to the server,
// never in a Referer); post it once and drop it from the address bar.
(function () {
  "use strict";
  var form = document.getElementById("portal-login");
  if (!form) return;
  var m = /(?:^#|&)key=([^&]+)/.exec(window.location.hash);
  history.replaceState(null, "", window.location.pathname);
  if (!m) return;
  document.getElementById("key").value = decodeURIComponent(m[1]);
  form.submit();
})();
