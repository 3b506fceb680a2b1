#!/usr/bin/env python3
"""Browser check of a bgstream HTML report (offline, self-contained).

usage: check_report.py REPORT.html SCREENSHOT.png [--min-images N] [--min-tables N]

Opens the report in the system Chromium (headless, via Playwright for Python,
pinned as playwright==1.65.2; no `playwright install` needed) and checks:
  * every request is the report's own file:// URL or a data:/blob: URL,
    and there are no page errors and no console errors;
  * no script runs that the page did not mean to: no dialog opens (alert,
    confirm, prompt), no Content-Security-Policy violation is reported, no
    element carries an on* attribute, there is at most one <script>, and no
    link leads off the page;
  * after load and a scroll to the bottom, every <img> is complete with
    naturalWidth > 0 (at least --min-images of them);
  * every table.sortable sorts ascending on the first click of a header,
    descending on the second, sets aria-sort, and sorts again on Enter
    (at least --min-tables tables actually sorted);
  * writes a full-page screenshot.
Prints one JSON summary line; exits 0 on success, 1 on failure (failures are
printed as 'FAIL: ...' lines before the summary), 2 on usage errors.
"""
import argparse
import json
import sys
import time
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]

# Sort-key rule, written independently of assets/report/sort.js:
# data-v if present, else text content; trimmed; '' -> null (sorts last in
# both directions); numeric when the whole string is a decimal number.
JS_RULE = r"""
const NUM = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;
const key = (c) => {
  if (!c) return null;
  let v = c.getAttribute('data-v');
  v = (v === null ? c.textContent : v).trim();
  return v === '' ? null : NUM.test(v) ? parseFloat(v) : v;
};
const cmp = (a, b) => {
  const na = typeof a === 'number', nb = typeof b === 'number';
  if (na && nb) return a < b ? -1 : a > b ? 1 : 0;
  if (na !== nb) return na ? -1 : 1;
  return a.localeCompare(b);
};
const colOf = (th) => { let i = 0;
  for (let c = th.previousElementSibling; c; c = c.previousElementSibling) i += c.colSpan || 1;
  return i; };
const headers = (t) => { const h = t.tHead;
  return h && h.rows.length ? [...h.rows[h.rows.length - 1].cells] : []; };
const colKeys = (t, j) => t.tBodies[0] ? [...t.tBodies[0].rows].map(r => key(r.cells[j])) : [];
"""

# For table #t: index of the header to test (numeric columns preferred), or -1.
JS_PICK = "([t]) => {" + JS_RULE + r"""
  const table = document.querySelectorAll('table.sortable')[t];
  let best = -1, bestScore = -1;
  headers(table).forEach((th, i) => {
    if (th.tagName !== 'TH' || th.hasAttribute('data-nosort')) return;
    const ks = colKeys(table, colOf(th)).filter(k => k !== null);
    if (new Set(ks).size < 2) return;
    const score = ks.every(k => typeof k === 'number') ? 2 : 1;
    if (score > bestScore) { best = i; bestScore = score; }
  });
  return best;
}"""

# Check the current row order of table #t, column of header #h, direction dir.
JS_VERIFY = "([t, h, dir]) => {" + JS_RULE + r"""
  const table = document.querySelectorAll('table.sortable')[t];
  const ths = headers(table), th = ths[h], label = JSON.stringify(th.textContent.trim());
  const ks = colKeys(table, colOf(th)), errs = [];
  const fmt = (k) => k === null ? '(empty)' : JSON.stringify(k);
  let seenNull = false;
  for (let i = 0; i < ks.length; i++) {
    if (ks[i] === null) { seenNull = true; continue; }
    if (seenNull) { errs.push(`column ${label}: non-empty key ${fmt(ks[i])} at row ${i} after an empty key (empties must sort last)`); break; }
    if (i > 0 && ks[i - 1] !== null && dir * cmp(ks[i - 1], ks[i]) > 0) {
      errs.push(`column ${label}: not ${dir > 0 ? 'ascending' : 'descending'} at row ${i}: ${fmt(ks[i - 1])} then ${fmt(ks[i])}`);
      break;
    }
  }
  const want = dir > 0 ? 'ascending' : 'descending';
  if (th.getAttribute('aria-sort') !== want)
    errs.push(`column ${label}: aria-sort is ${JSON.stringify(th.getAttribute('aria-sort'))}, want "${want}"`);
  ths.forEach((o, i) => { if (i !== h && o.hasAttribute('aria-sort'))
    errs.push(`header ${JSON.stringify(o.textContent.trim())} still has aria-sort`); });
  return {errs, rows: ks.length, order: ks.slice(0, 8).map(fmt)};
}"""

# Scroll down one viewport at a time (lazy images), then to the very bottom.
JS_SCROLL = r"""async () => {
  const frame = () => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  const step = Math.max(200, innerHeight - 50);
  for (let y = 0, n = 0; y < document.documentElement.scrollHeight && n < 400; y += step, n++) {
    scrollTo(0, y); await frame();
  }
  scrollTo(0, document.documentElement.scrollHeight); await frame();
}"""

# Installed before any of the page's own code: records every CSP violation.
JS_CSP_LISTENER = r"""
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', (e) => window.__cspViolations.push(
  `${e.violatedDirective} blocked ${e.blockedURI || '(inline)'}: ${(e.sample || '').slice(0, 80)}`));
"""

# What an injection would leave in the DOM.
JS_INJECTED = r"""() => {
  const out = [];
  for (const el of document.querySelectorAll('*'))
    for (const a of el.attributes)
      if (a.name.toLowerCase().startsWith('on'))
        out.push(`<${el.tagName.toLowerCase()} ${a.name}=${JSON.stringify(a.value.slice(0, 60))}>`);
  const scripts = document.scripts.length;
  const links = [...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href'))
    .filter(h => !h.startsWith('#'));
  return {handlers: out, scripts, links, csp: window.__cspViolations || []};
}"""

JS_IMAGES = r"""() => [...document.images].map(i => ({
  ok: i.complete && i.naturalWidth > 0, complete: i.complete, w: i.naturalWidth,
  src: (i.currentSrc || i.getAttribute('src') || '').slice(0, 60), alt: i.alt }))"""


def short_url(u):
    return u if len(u) <= 100 else f"{u[:60]}...({len(u)} chars)"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("report")
    ap.add_argument("screenshot")
    ap.add_argument("--min-images", type=int, default=0)
    ap.add_argument("--min-tables", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=20.0, help="seconds for page load / waits")
    a = ap.parse_args()

    report = Path(a.report).resolve()
    if not report.is_file():
        print(f"FAIL: no such report: {report}")
        return 2
    own_url = report.as_uri()
    t0 = time.monotonic()

    from playwright.sync_api import sync_playwright, Error as PWError

    fails, requests = [], []
    summary = {"images": 0, "tables_sorted": 0, "requests": requests,
               "screenshot": str(Path(a.screenshot).resolve())}

    def allowed(url):
        return url.split("#", 1)[0] == own_url or url.startswith(("data:", "blob:"))

    def on_request(req):
        requests.append(short_url(req.url))
        if not allowed(req.url):
            fails.append(f"external request: {req.method} {short_url(req.url)}")

    def route(r):  # never let anything leave the machine; the request is still recorded
        if allowed(r.request.url):
            r.continue_()
        else:
            r.abort("blockedbyclient")

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        ctx = browser.new_context(viewport={"width": 1280, "height": 900}, service_workers="block")
        ctx.set_default_timeout(a.timeout * 1000)
        ctx.on("request", on_request)
        ctx.route("**/*", route)
        ctx.add_init_script(JS_CSP_LISTENER)
        page = ctx.new_page()

        def on_dialog(d):
            fails.append(f"dialog opened ({d.type}): {d.message[:200]!r}")
            d.dismiss()

        page.on("dialog", on_dialog)
        page.on("pageerror", lambda e: fails.append(f"page error: {e}"))
        page.on("console", lambda m: m.type == "error" and fails.append(
            f"console error: {m.text[:300]}"))
        page.on("websocket", lambda w: fails.append(f"websocket: {short_url(w.url)}"))
        try:
            page.goto(own_url, wait_until="load", timeout=a.timeout * 1000)
            page.evaluate(JS_SCROLL)
            try:
                page.wait_for_function("[...document.images].every(i => i.complete)",
                                       timeout=a.timeout * 1000)
            except PWError:
                fails.append("timed out waiting for images to finish loading")
            injected = page.evaluate(JS_INJECTED)
            fails += [f"event-handler attribute: {h}" for h in injected["handlers"]]
            fails += [f"CSP violation: {v}" for v in injected["csp"]]
            fails += [f"link leaves the page: {short_url(h)}" for h in injected["links"]]
            if injected["scripts"] > 1:
                fails.append(f"{injected['scripts']} <script> elements, want at most one")
            imgs = page.evaluate(JS_IMAGES)
            summary["images"] = len(imgs)
            for i, im in enumerate(imgs):
                if not im["ok"]:
                    fails.append(f"image #{i} broken (complete={im['complete']}, naturalWidth={im['w']}): "
                                 f"src={im['src']!r} alt={im['alt']!r}")
            if len(imgs) < a.min_images:
                fails.append(f"only {len(imgs)} <img> elements, want at least {a.min_images}")

            page.evaluate("scrollTo(0, 0)")
            n_tables = page.evaluate("document.querySelectorAll('table.sortable').length")
            skipped = []
            for t in range(n_tables):
                h = page.evaluate(JS_PICK, [t])
                if h < 0:
                    skipped.append(t)
                    continue
                th = page.locator("table.sortable").nth(t).locator(
                    ":scope > thead > tr").last.locator(":scope > *").nth(h)
                errs = []
                for step, (action, direction) in enumerate(
                        [("click", 1), ("click", -1), ("Enter", 1)]):
                    if action == "click":
                        th.click()
                    else:
                        th.focus()
                        th.press("Enter")
                    res = page.evaluate(JS_VERIFY, [t, h, direction])
                    if res["errs"]:
                        what = ["1st click", "2nd click", "Enter key"][step]
                        errs += [f"table #{t} after {what}: {e}" for e in res["errs"]]
                        break
                if errs:
                    fails.extend(errs)
                else:
                    summary["tables_sorted"] += 1
            summary["tables"] = n_tables
            if skipped:
                summary["tables_skipped"] = skipped  # no column with 2 distinct keys
            if summary["tables_sorted"] < a.min_tables:
                fails.append(f"{summary['tables_sorted']} of {n_tables} table.sortable sorted "
                             f"correctly, want at least {a.min_tables}")
            late = page.evaluate("(window.__cspViolations || []).length")
            if late > len(injected["csp"]):
                fails += [f"CSP violation: {v}" for v in
                          page.evaluate("window.__cspViolations")[len(injected["csp"]):]]
            if page.url.split("#", 1)[0] != own_url:
                fails.append(f"page navigated away to {short_url(page.url)}")
            page.evaluate("document.activeElement && document.activeElement.blur(); scrollTo(0, 0)")
            page.screenshot(path=a.screenshot, full_page=True)
        except PWError as e:
            fails.append(f"playwright: {str(e).splitlines()[0]}")
        finally:
            browser.close()

    summary["seconds"] = round(time.monotonic() - t0, 2)
    if fails:
        for f in fails:
            print(f"FAIL: {f}")
        summary["failures"] = len(fails)
    print(json.dumps(summary))
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
