// Drives the real tus-js-client 4, Uppy 6 (@uppy/core + @uppy/tus, bundled here with esbuild
// because they ship as ES modules with bare imports) and blueimp-file-upload 10 (with jQuery)
// in headless Debian chromium (playwright-core) against a real web server, for the Rust
// end-to-end suite (tests/e2e_tus.rs).
//
//   node tus-browser.mjs PLAN.json   -> prints one JSON line "RESULT {...}" on stdout
//
// PLAN: { origin, profileDir, steps: [STEP...] }
// STEP: { id, lib: "tus"|"uppy"|"blueimp", endpoint: "/url", files: ["/abs/file", ...],
//         opts: {...client options}, mode: "upload" | "reload-resume" | "cancel",
//         atBytes: N (reload-resume / cancel: act once this many bytes were sent),
//         throttle: bytes per second for uploads (optional; chromium's network emulation) }
//
// Every request the page makes to the endpoint is recorded (method, URL, Upload-Offset,
// Content-Range, status, and whether it was before or after a reload), so the suite can show
// what a resume sent. The page and the libraries are answered by page.route() on the server's
// own origin; requests to the endpoint go to the real server untouched.
import { drive } from './driver.mjs';
import esbuild from 'esbuild';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const plan = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const log = (...a) => console.error('[tus-browser]', ...a);
const mod = (p) => path.join(here, 'node_modules', p);

async function uppyBundle() {
  const out = await esbuild.build({
    stdin: {
      contents: "import Uppy from '@uppy/core'; import Tus from '@uppy/tus';\n" +
        'window.Uppy = Uppy; window.UppyTus = Tus;',
      resolveDir: here,
    },
    bundle: true, format: 'iife', write: false, logLevel: 'warning',
  });
  return out.outputFiles[0].text;
}

const LIBS = {
  '/__e2e/tus.js': () => fs.readFileSync(mod('tus-js-client/dist/tus.js')),
  '/__e2e/jquery.js': () => fs.readFileSync(mod('jquery/dist/jquery.js')),
  '/__e2e/jquery.ui.widget.js': () => fs.readFileSync(mod('blueimp-file-upload/js/vendor/jquery.ui.widget.js')),
  '/__e2e/jquery.fileupload.js': () => fs.readFileSync(mod('blueimp-file-upload/js/jquery.fileupload.js')),
};

const PAGE = `<!doctype html><html><head><meta charset="utf-8"><title>tus e2e</title>
<script src="/__e2e/tus.js"></script><script src="/__e2e/uppy.js"></script>
<script src="/__e2e/jquery.js"></script><script src="/__e2e/jquery.ui.widget.js"></script>
<script src="/__e2e/jquery.fileupload.js"></script></head>
<body><script>
window.cases = {}; window.uploaders = {};
function short(m) { m = String(m); return m.length > 300 ? m.slice(0, 300) + '...' : m; }
function state(id, count) {
  const st = { done: false, errors: [], successes: [], sent: 0, expected: count, completeFiles: {} };
  window.cases[id] = st; return st;
}
function finishOne(st) { if (st.successes.length + st.errors.length >= st.expected) st.done = true; }
function input(id) {
  let el = document.getElementById('in-' + id);
  if (!el) { el = document.createElement('input'); el.type = 'file'; el.multiple = true; el.id = 'in-' + id; document.body.appendChild(el); }
  return el;
}
// tus-js-client: one Upload per file, resumed from localStorage when the same file was begun.
window.startTus = function (id, endpoint, opts) {
  const files = Array.from(input(id).files); const st = state(id, files.length);
  const progress = {};
  for (const file of files) {
    const up = new tus.Upload(file, Object.assign({
      endpoint: endpoint, retryDelays: [0, 300, 1000],
      metadata: { filename: file.name, filetype: file.type },
      onProgress: function (sent) { progress[file.name] = sent; st.sent = Object.values(progress).reduce((a, b) => a + b, 0); },
      onAfterResponse: function (req, res) {
        const done = res.getHeader('Upload-Complete-File');
        if (done) st.completeFiles[file.name] = decodeURIComponent(done);
      },
      onSuccess: function () { st.successes.push({ name: file.name, size: file.size, url: up.url }); finishOne(st); },
      onError: function (e) { st.errors.push(file.name + ': ' + short(e)); finishOne(st); },
    }, opts));
    (window.uploaders[id] = window.uploaders[id] || []).push(up);
    up.findPreviousUploads().then(function (previous) {
      if (previous.length) up.resumeFromPreviousUpload(previous[0]);
      up.start();
    });
  }
};
// Uppy with @uppy/tus: every file added from the input, autoProceed.
window.startUppy = function (id, endpoint, opts) {
  const files = Array.from(input(id).files); const st = state(id, files.length);
  const uppy = new Uppy({ id: 'uppy-' + id, autoProceed: true });
  uppy.use(UppyTus, Object.assign({ endpoint: endpoint,
    onAfterResponse: function (req, res) {
      const done = res.getHeader('Upload-Complete-File');
      if (done) st.completeFiles[res.getUnderlyingObject().responseURL] = decodeURIComponent(done);
    } }, opts));
  uppy.on('upload-progress', function () {
    st.sent = uppy.getFiles().reduce(function (a, f) { return a + (f.progress.bytesUploaded || 0); }, 0);
  });
  uppy.on('upload-success', function (file, response) { st.successes.push({ name: file.name, size: file.size, url: response.uploadURL }); finishOne(st); });
  uppy.on('upload-error', function (file, error) { st.errors.push(file.name + ': ' + short(error)); finishOne(st); });
  window.uploaders[id] = uppy;
  for (const f of files) uppy.addFile({ name: f.name, type: f.type, data: f, source: 'input' });
};
window.cancelUppy = function (id) {
  const uppy = window.uploaders[id];
  for (const f of uppy.getFiles()) uppy.removeFile(f.id);
  window.cases[id].cancelled = true;
};
// blueimp jQuery-File-Upload with maxChunkSize and the resume recipe of its documentation: ask
// the server what it has (GET ?file=name), start from there.
window.startBlueimp = function (id, endpoint, opts) {
  const el = input(id); const files = Array.from(el.files); const st = state(id, files.length);
  $(el).fileupload(Object.assign({
    url: endpoint, dataType: 'json', sequentialUploads: true,
    add: function (e, data) {
      const that = this;
      $.getJSON(endpoint, { file: data.files[0].name }, function (result) {
        const file = result.file;
        data.uploadedBytes = file && file.size;
        st.resumedFrom = st.resumedFrom || {}; st.resumedFrom[data.files[0].name] = data.uploadedBytes || 0;
        $.blueimp.fileupload.prototype.options.add.call(that, e, data);
      });
    },
    progressall: function (e, data) { st.sent = data.loaded; },
    done: function (e, data) {
      const f = data.result && data.result.files && data.result.files[0];
      st.successes.push({ name: data.files[0].name, size: data.files[0].size, stored: f && f.file, result: data.result });
      finishOne(st);
    },
    fail: function (e, data) { st.errors.push(data.files[0].name + ': ' + short(data.errorThrown || data.textStatus)); finishOne(st); },
  }, opts));
  $(el).fileupload('add', { files: files });
};
</script></body></html>`;

async function startStep(page, step) {
  await page.evaluate((id) => { const el = document.createElement('input'); el.type = 'file'; el.multiple = true; el.id = 'in-' + id; document.body.appendChild(el); }, step.id);
  await page.setInputFiles('#in-' + step.id, step.files);
  const fn = { tus: 'startTus', uppy: 'startUppy', blueimp: 'startBlueimp' }[step.lib];
  await page.evaluate(([fn, id, endpoint, opts]) => window[fn](id, endpoint, opts),
    [fn, step.id, step.endpoint, step.opts || {}]);
}

async function waitDone(page, step, timeout) {
  await page.waitForFunction((id) => {
    const s = window.cases[id]; return s && (s.done || s.errors.length > 0);
  }, step.id, { timeout, polling: 50 });
  return page.evaluate((id) => window.cases[id], step.id);
}

async function runStep(context, page, step, requests) {
  const t0 = Date.now();
  const result = { id: step.id, events: [] };
  const phase = { name: 'before' };
  const onRequest = async (req) => {
    const url = new URL(req.url());
    if (!url.pathname.startsWith(step.endpoint)) return;
    const h = req.headers();
    const entry = { phase: phase.name, method: req.method(), path: url.pathname + url.search,
      offset: h['upload-offset'], range: h['content-range'] };
    requests.push(entry);
    try { const res = await req.response(); entry.status = res ? res.status() : null; } catch (e) { entry.status = null; }
  };
  page.on('request', onRequest);
  page.on('requestfailed', (req) => {
    const entry = requests.find((r) => r.path === new URL(req.url()).pathname + new URL(req.url()).search && r.status === undefined);
    if (entry) entry.failed = true;
  });
  let cdp = null;
  if (step.throttle) {
    cdp = await context.newCDPSession(page);
    await cdp.send('Network.enable');
    await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: step.throttle });
  }
  await page.goto(`${plan.origin}/__e2e/page.html`);
  await startStep(page, step);
  if (step.mode === 'reload-resume' || step.mode === 'cancel') {
    await page.waitForFunction(([id, n]) => {
      const s = window.cases[id]; return s && (s.sent >= n || s.done || s.errors.length > 0);
    }, [step.id, step.atBytes], { polling: 5, timeout: 60000 });
    const atAct = await page.evaluate((id) => window.cases[id], step.id);
    result.events.push({ acted: step.mode, sentBefore: atAct.sent, doneBefore: atAct.done });
    if (step.mode === 'cancel') {
      await page.evaluate((id) => window.cancelUppy(id), step.id);
      // the DELETE (termination) is sent after the abort; give it time to land
      await page.waitForTimeout(1500);
      result.state = await page.evaluate((id) => window.cases[id], step.id);
      result.ms = Date.now() - t0;
      return result;
    }
    phase.name = 'after';
    await page.reload();
    if (cdp) {
      await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
    }
    result.events.push({ reloaded: true, pageStateAfterReload: await page.evaluate(() => typeof window.cases[0]) });
    await startStep(page, step);
  }
  result.state = await waitDone(page, step, step.timeoutMs || 120000);
  result.ms = Date.now() - t0;
  page.removeAllListeners('request');
  page.removeAllListeners('requestfailed');
  if (cdp) await cdp.detach();
  return result;
}

// The requests of the step running now, kept in its record whether it passes or fails.
let requests = [];
const uppy = await uppyBundle();
drive(plan, 'tus-browser', async (context) => {
  await context.route(`${plan.origin}/__e2e/**`, async (route) => {
    const p = new URL(route.request().url()).pathname;
    if (p === '/__e2e/page.html') return route.fulfill({ contentType: 'text/html; charset=utf-8', body: PAGE });
    if (p === '/__e2e/uppy.js') return route.fulfill({ contentType: 'application/javascript', body: uppy });
    if (LIBS[p]) return route.fulfill({ contentType: 'application/javascript', body: LIBS[p]() });
    return route.fulfill({ status: 404, body: 'no such e2e asset' });
  });
}, async (page, step, context) => {
  requests = [];
  const r = await runStep(context, page, step, requests);
  r.requests = requests;
  log(step.id, `${r.ms} ms`, r.state.errors.length ? r.state.errors : 'ok');
  return r;
}, async () => ({ requests })).catch((e) => { console.error(e); process.exit(1); });
