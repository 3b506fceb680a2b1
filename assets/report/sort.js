/* bgstream report: click/Enter on a header of table.sortable sorts its rows.
   Key: data-v if present, else text; numeric if it parses as a number;
   empty keys sort last in both directions. Stable. No dependencies.
   It writes no styles: the report's CSP admits only its own stylesheet (by hash), which
   holds the pointer cursor and the aria-sort arrows. */
(function () {
  'use strict';
  var NUM = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;
  function key(c) {
    if (!c) return null;
    var v = c.getAttribute('data-v');
    v = (v === null ? c.textContent : v).trim();
    return v === '' ? null : NUM.test(v) ? parseFloat(v) : v;
  }
  function cmp(a, b) {
    var na = typeof a === 'number', nb = typeof b === 'number';
    if (na && nb) return a < b ? -1 : a > b ? 1 : 0;
    if (na !== nb) return na ? -1 : 1;
    return a.localeCompare(b);
  }
  function col(th) {
    var i = 0;
    for (var c = th.previousElementSibling; c; c = c.previousElementSibling) i += c.colSpan || 1;
    return i;
  }
  function sort(th, ths) {
    var body = th.closest('table').tBodies[0];
    if (!body) return;
    var j = col(th), d = th.getAttribute('aria-sort') === 'ascending' ? -1 : 1;
    var rows = [].map.call(body.rows, function (tr, i) {
      return { tr: tr, k: key(tr.cells[j]), i: i };
    });
    rows.sort(function (a, b) {
      if (a.k === null || b.k === null) return (a.k === null) - (b.k === null) || a.i - b.i;
      return d * cmp(a.k, b.k) || a.i - b.i;
    });
    var f = document.createDocumentFragment();
    rows.forEach(function (r) { f.appendChild(r.tr); });
    body.appendChild(f);
    ths.forEach(function (h) { h.removeAttribute('aria-sort'); });
    th.setAttribute('aria-sort', d > 0 ? 'ascending' : 'descending');
  }
  function init() {
    [].forEach.call(document.querySelectorAll('table.sortable'), function (t) {
      var h = t.tHead;
      if (!h || !h.rows.length) return;
      var ths = [].filter.call(h.rows[h.rows.length - 1].cells, function (c) {
        return c.tagName === 'TH' && !c.hasAttribute('data-nosort');
      });
      ths.forEach(function (th) {
        th.tabIndex = 0;
        if (!th.title) th.title = 'Sort by this column';
        th.addEventListener('click', function () { sort(th, ths); });
        th.addEventListener('keydown', function (e) {
          if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); sort(th, ths); }
        });
      });
    });
  }
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
