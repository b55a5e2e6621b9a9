// pyfilter admin: the pages work without this script. It only keeps "3 min ago"
// current while a page stays open.
"use strict";
(function () {
  function ago(t) {
    var secs = Math.round(Date.now() / 1000 - t), n = Math.abs(secs), span;
    if (n < 60) return "just now";
    if (n < 3600) span = Math.floor(n / 60) + " min";
    else if (n < 86400) span = Math.floor(n / 3600) + " h";
    else if (n < 172800) span = "1 day";
    else span = Math.floor(n / 86400) + " days";
    return secs < 0 ? "in " + span : span + " ago";
  }
  function refresh() {
    document.querySelectorAll(".ago[data-t]").forEach(function (el) {
      el.textContent = ago(Number(el.getAttribute("data-t")));
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    refresh();
    setInterval(refresh, 30000);
  });
})();
