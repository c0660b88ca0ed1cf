// Drives the real resumable.js 1.1.0 / flow.js 2.14.1 (from node_modules) in headless Debian
// chromium (playwright-core) against a real web server, for the Rust end-to-end suite (tests/e2e.rs).
//
//   node e2e-browser.mjs PLAN.json   -> prints one JSON line "RESULT {...}" on stdout
//
// PLAN: { origin: "http://127.0.0.1:PORT", profileDir: "...", steps: [STEP...] }
// STEP: { id, lib: "resumable"|"flow", target: "/url", opts: {...client options},
//         files: ["/abs/file", ...] | dir: "/abs/dir",
//         mode: "upload" | "pause-resume" | "reload-resume" | "partial",
//         atChunks: N  (pause-resume / reload-resume: act once N chunks succeeded),
//         pageOrigin: "http://127.0.0.1:OTHER"  (optional: the page on another origin, for CORS;
//                     `target` is then the server's absolute URL) }
//
// The page itself is served by this script through page.route() on the server's own origin
// (so requests to `target` are same-origin and go to the real server untouched); only the
// page and the two client libraries are answered by the route. A step's pageOrigin is served
// by a real HTTP server this script starts on that port (a page answered by the route has no
// address, counts as public, and Chromium's local network access checks then block its
// requests to 127.0.0.1). Each success message is also shown on the page (pre.done-<id>).
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const plan = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const log = (...a) => console.error('[e2e-browser]', ...a);

const LIBS = {
  '/__e2e/resumable.js': path.join(here, 'node_modules/resumablejs/resumable.js'),
  '/__e2e/flow.js': path.join(here, 'node_modules/@flowjs/flow.js/dist/flow.js'),
};
const PAGE = `<!doctype html><html><head><meta charset="utf-8"><title>e2e</title>
<script src="/__e2e/resumable.js"></script><script src="/__e2e/flow.js"></script></head>
<body><script>
window.cases = {}; window.uploaders = {};
// One uploader + one file input per case; state the test runner polls.
function short(m) { m = String(m); return m.length > 300 ? m.slice(0, 300) + '...' : m; }
// What the server answered for a finished file, shown on the page as a site would show it.
function show(id, m) {
  const out = document.createElement('pre'); out.className = 'done-' + id; out.textContent = m;
  document.body.appendChild(out);
}
window.setupCase = function (id, lib, target, opts, isDir) {
  const input = document.createElement('input');
  input.type = 'file'; input.id = 'in-' + id; document.body.appendChild(input);
  const st = { done: false, errors: [], successes: [], added: 0 };
  window.cases[id] = st;
  if (lib === 'resumable') {
    const r = new Resumable(Object.assign({ target: target }, opts));
    window.uploaders[id] = r;
    r.assignBrowse(input, isDir);
    r.on('filesAdded', function (files) { st.added += files.length; r.upload(); });
    r.on('fileSuccess', function (f, m) { st.successes.push({ name: f.fileName, rel: f.relativePath, size: f.size, message: m }); show(id, m); });
    r.on('fileError', function (f, m) { st.errors.push(f.fileName + ': ' + short(m)); });
    r.on('error', function (m, f) { st.errors.push('error: ' + short(m)); });
    r.on('complete', function () { st.done = true; });
  } else {
    const fl = new Flow(Object.assign({ target: target }, opts));
    window.uploaders[id] = fl;
    fl.assignBrowse(input, isDir);
    // upload() from filesSubmitted: from fileAdded nothing would be sent (environment.md 5)
    fl.on('filesSubmitted', function (files) { st.added += files.length; fl.upload(); });
    fl.on('fileSuccess', function (f, m) { st.successes.push({ name: f.name, rel: f.relativePath, size: f.size, message: m }); show(id, m); });
    fl.on('fileError', function (f, m) { st.errors.push(f.name + ': ' + short(m)); });
    fl.on('complete', function () { st.done = true; });
  }
};
window.chunksDone = function (id) {
  const u = window.uploaders[id]; let n = 0;
  for (const f of u.files) for (const c of f.chunks) if (c.status() === 'success') n++;
  return n;
};
window.pauseCase = function (id) {
  const u = window.uploaders[id];
  if (u instanceof Resumable) u.pause(); else u.files.forEach(function (f) { f.pause(); });
};
window.resumeCase = function (id) {
  const u = window.uploaders[id];
  if (u instanceof Resumable) u.upload(); else u.files.forEach(function (f) { f.resume(); });
};
</script></body></html>`;

// The page and the libraries from a real server on `origin`, for pages on another origin.
function servePage(origin) {
  const server = http.createServer((req, res) => {
    const p = new URL(req.url, origin).pathname;
    if (p === '/__e2e/page.html') {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
      return res.end(PAGE);
    }
    if (LIBS[p]) {
      res.writeHead(200, { 'Content-Type': 'application/javascript' });
      return res.end(fs.readFileSync(LIBS[p]));
    }
    res.writeHead(404);
    res.end('no such e2e asset');
  });
  const { hostname, port } = new URL(origin);
  return new Promise((resolve) => server.listen(Number(port), hostname, () => resolve(server)));
}

async function setup(page, step, phase) {
  const opts = Object.assign({}, step.opts || {});
  if (step.mode === 'reload-resume') opts.query = { e2ephase: phase };
  await page.evaluate(([id, lib, target, o, isDir]) => window.setupCase(id, lib, target, o, isDir),
    [step.id, step.lib, step.target, opts, !!step.dir]);
  await page.setInputFiles('#in-' + step.id, step.dir ? step.dir : step.files);
}

async function waitDone(page, step, timeout) {
  await page.waitForFunction((id) => {
    const s = window.cases[id]; return s.done || s.errors.length > 0;
  }, step.id, { timeout, polling: 50 });
  return page.evaluate((id) => window.cases[id], step.id);
}

async function runStep(page, step) {
  const t0 = Date.now();
  const result = { id: step.id, events: [] };
  const url = `${step.pageOrigin || plan.origin}/__e2e/page.html`;
  await page.goto(url);
  await setup(page, step, 'before');
  if (step.mode === 'pause-resume') {
    // (stop waiting early when the upload failed: the final state reports why)
    await page.waitForFunction(([id, n]) => window.chunksDone(id) >= n || window.cases[id].errors.length > 0,
      [step.id, step.atChunks], { polling: 10, timeout: 30000 });
    await page.evaluate((id) => window.pauseCase(id), step.id);
    const atPause = await page.evaluate((id) => window.chunksDone(id), step.id);
    await page.waitForTimeout(500);
    const afterWait = await page.evaluate((id) => window.chunksDone(id), step.id);
    const st = await page.evaluate((id) => window.cases[id], step.id);
    result.events.push({ paused: true, chunksAtPause: atPause, chunksAfterWait: afterWait, doneWhilePaused: st.done });
    await page.evaluate((id) => window.resumeCase(id), step.id);
  } else if (step.mode === 'partial') {
    // stop after N chunks (pause aborts what is in flight) and leave the rest for a later run
    await page.waitForFunction(([id, n]) => window.chunksDone(id) >= n || window.cases[id].errors.length > 0,
      [step.id, step.atChunks], { polling: 10, timeout: 30000 });
    await page.evaluate((id) => window.pauseCase(id), step.id);
    await page.waitForTimeout(300);
    result.state = await page.evaluate((id) => window.cases[id], step.id);
    result.chunksDone = await page.evaluate((id) => window.chunksDone(id), step.id);
    result.ms = Date.now() - t0;
    return result;
  } else if (step.mode === 'reload-resume') {
    // The page reloads itself as soon as N chunks succeeded: the chunks in flight are aborted
    // mid-request and every bit of client state is lost, as when a user hits F5.
    await page.evaluate(([id, n]) => {
      const timer = setInterval(function () {
        if (window.chunksDone(id) >= n) { clearInterval(timer); location.reload(); }
      }, 5);
    }, [step.id, step.atChunks]);
    await page.waitForEvent('load', { timeout: 60000 });
    const before = await page.evaluate(() => typeof window.cases);
    result.events.push({ reloaded: true, pageStateAfterReload: before });
    // same file again: same identifier, testChunks finds what the server already has
    await setup(page, step, 'after');
  }
  const st = await waitDone(page, step, step.timeoutMs || 90000);
  result.state = st;
  result.shown = await page.$$eval('pre.done-' + step.id, (els) => els.map((e) => e.textContent));
  result.ms = Date.now() - t0;
  return result;
}

(async () => {
  const t0 = Date.now();
  fs.mkdirSync(plan.profileDir, { recursive: true });
  // playwright takes the user data dir this way (it rejects --user-data-dir in args)
  const context = await chromium.launchPersistentContext(plan.profileDir, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const results = { launchMs: Date.now() - t0, steps: [], console: [] };
  const servers = [];
  try {
    // While any route is active, Playwright answers every CORS preflight itself (allowing
    // everything), so a plan whose pages all come from other origins registers none.
    if (plan.steps.some((s) => !s.pageOrigin)) {
      await context.route(`${plan.origin}/__e2e/**`, async (route) => {
        const p = new URL(route.request().url()).pathname;
        if (p === '/__e2e/page.html') return route.fulfill({ contentType: 'text/html; charset=utf-8', body: PAGE });
        if (LIBS[p]) return route.fulfill({ contentType: 'application/javascript', body: fs.readFileSync(LIBS[p]) });
        return route.fulfill({ status: 404, body: 'no such e2e asset' });
      });
      await context.route(`${plan.origin}/favicon.ico`, (route) => route.fulfill({ status: 204, body: '' }));
    }
    const pageOrigins = [...new Set(plan.steps.map((s) => s.pageOrigin).filter(Boolean))];
    servers.push(...await Promise.all(pageOrigins.map(servePage)));
    const page = context.pages()[0] || await context.newPage();
    page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') results.console.push(m.text()); });
    page.on('pageerror', (e) => results.console.push('pageerror: ' + e.message));
    for (const step of plan.steps) {
      try {
        const r = await runStep(page, step);
        log(step.id, `${r.ms} ms`, r.state.errors.length ? r.state.errors : 'ok');
        results.steps.push(r);
      } catch (e) {
        log(step.id, 'FAILED', e.message);
        results.steps.push({ id: step.id, failure: String(e && e.stack || e) });
      }
    }
  } finally {
    await context.close();
    servers.forEach((server) => { server.closeAllConnections(); server.close(); });
  }
  results.totalMs = Date.now() - t0;
  process.stdout.write('RESULT ' + JSON.stringify(results) + '\n');
})().catch((e) => { console.error(e); process.exit(1); });
