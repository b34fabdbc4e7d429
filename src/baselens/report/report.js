/* baselens report: click-to-sort leaderboards. Inlined into report.html at write time.
   When done it marks <body data-rendered="ok" data-js-errors="N"> (N = uncaught errors seen
   so far, counted by the small error hook in <head>); the browser test reads these. */
(function () {
  "use strict";
  function cellValue(row, col) {
    var cell = row.children[col];
    if (!cell) { return null; }
    var v = cell.getAttribute("data-value");
    if (v === null) { v = cell.textContent.trim(); }
    if (v === "") { return null; }
    var f = Number(v);
    return isNaN(f) ? v.toLowerCase() : f;
  }
  function sortTable(table, col, descending) {
    var body = table.tBodies[0];
    if (!body) { return; }
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = cellValue(a, col), y = cellValue(b, col);
      if (x === null && y === null) { return 0; }
      if (x === null) { return 1; }
      if (y === null) { return -1; }
      if (x < y) { return descending ? 1 : -1; }
      if (x > y) { return descending ? -1 : 1; }
      return 0;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    Array.prototype.forEach.call(table.querySelectorAll("th[data-col] button"), function (btn) {
      btn.addEventListener("click", function () {
        var th = btn.parentNode;
        var col = parseInt(th.getAttribute("data-col"), 10);
        var desc = th.getAttribute("aria-sort") !== "descending";
        Array.prototype.forEach.call(table.querySelectorAll("th[aria-sort]"), function (h) {
          h.removeAttribute("aria-sort");
        });
        th.setAttribute("aria-sort", desc ? "descending" : "ascending");
        sortTable(table, col, desc);
      });
    });
  });
  document.body.setAttribute("data-js-errors", String(window.__baselensErrors || 0));
  document.body.setAttribute("data-rendered", "ok");
}());
