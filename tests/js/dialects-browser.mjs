// Drives the real Dropzone 5.9 / 6.x, Fine Uploader 5.16 and Plupload 2.3 (from node_modules) in
// headless Debian chromium (playwright-core) against a real web server, for the Rust suite
// tests/e2e_dialects.rs.
//
//   node dialects-browser.mjs PLAN.json   -> prints one JSON line "RESULT {...}" on stdout
//
// PLAN: { origin: "http://127.0.0.1:PORT", profileDir: "...", steps: [STEP...] }
// STEP: { id, lib: "dropzone5"|"dropzone6"|"fineuploader"|"plupload", target: "/url",
//         opts: {...client options}, files: ["/abs/file", ...],
//         mode: "upload" | "reload-resume", atChunks: N (reload once N chunks succeeded) }
//
// Each library gets its own page (Dropzone 5 and 6 both define window.Dropzone), served through
// page.route() on the server's own origin, so uploads to `target` are same-origin and reach the
// real server untouched. The browser profile persists across the reload, and with it Fine
// Uploader's resume records in localStorage.
import { drive } from './driver.mjs';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const plan = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const log = (...a) => console.error('[dialects-browser]', ...a);

const LIBS = {
  dropzone5: path.join(here, 'node_modules/dropzone5/dist/dropzone.js'),
  dropzone6: path.join(here, 'node_modules/dropzone/dist/dropzone-min.js'),
  fineuploader: path.join(here, 'node_modules/fine-uploader/fine-uploader/fine-uploader.core.js'),
  plupload: path.join(here, 'node_modules/plupload/js/plupload.full.min.js'),
};

// One uploader + one file input per case, and the state the runner polls: `added` files,
// `successes` and `errors` per file, `chunksDone` (chunk requests the client saw succeed).
const SETUP = `
window.cases = {}; window.uploaders = {};
function short(m) { m = typeof m === 'string' ? m : JSON.stringify(m); return m && m.length > 300 ? m.slice(0, 300) + '...' : m; }
function allSettled(st) { return st.added > 0 && st.successes.length + st.errors.length >= st.added; }
window.setupCase = function (id, lib, target, opts) {
  const st = { added: 0, successes: [], errors: [], chunksDone: 0, notes: [] };
  window.cases[id] = st;
  const input = document.createElement('input');
  input.type = 'file'; input.multiple = true; input.id = 'in-' + id; document.body.appendChild(input);
  let add;
  if (lib === 'dropzone5' || lib === 'dropzone6') {
    Dropzone.autoDiscover = false;
    const el = document.createElement('div'); document.body.appendChild(el);
    const dz = new Dropzone(el, Object.assign({ url: target, chunking: true, forceChunking: true,
      parallelUploads: 3, maxFilesize: 1024 }, opts));
    dz.on('success', function (f, response) { st.successes.push({ name: f.name, size: f.size, response: response }); });
    dz.on('error', function (f, m) { st.errors.push(f.name + ': ' + short(m)); });
    // counts every chunk answered 2xx (Dropzone marks them SUCCESS)
    dz.on('uploadprogress', function (f) {
      if (f.upload && f.upload.chunks) st.chunksDone = f.upload.chunks.filter(function (c) { return c && c.status === Dropzone.SUCCESS; }).length;
    });
    add = function (files) { for (const f of files) dz.addFile(f); };
    window.uploaders[id] = dz;
  } else if (lib === 'fineuploader') {
    const o = Object.assign({}, opts);
    o.request = Object.assign({ endpoint: target }, o.request || {});
    if (o.chunking && o.chunking.successEndpoint) {
      o.chunking = Object.assign({}, o.chunking, { success: { endpoint: target } });
      delete o.chunking.successEndpoint;
    }
    o.callbacks = {
      onComplete: function (fid, name, json) {
        if (json && json.success) st.successes.push({ name: name, response: json });
        else st.errors.push(name + ': ' + short(json));
      },
      onError: function (fid, name, reason) { st.notes.push(name + ': ' + short(reason)); },
      onUploadChunkSuccess: function () { st.chunksDone++; },
      onResume: function (fid, name, chunkData) { st.notes.push('resumed ' + name + ': ' + short(chunkData)); return true; },
    };
    const fu = new qq.FineUploaderBasic(o);
    add = function (files) { fu.addFiles(files); };
    window.uploaders[id] = fu;
  } else if (lib === 'plupload') {
    const button = document.createElement('button'); button.id = 'pick-' + id; document.body.appendChild(button);
    const up = new plupload.Uploader(Object.assign({ runtimes: 'html5', browse_button: button, url: target }, opts));
    up.bind('FilesAdded', function () { up.start(); });
    up.bind('ChunkUploaded', function () { st.chunksDone++; });
    up.bind('FileUploaded', function (u, f, info) { st.successes.push({ name: f.name, size: f.size, status: info.status, response: info.response }); });
    up.bind('Error', function (u, e) { st.errors.push((e.file ? e.file.name : '?') + ': ' + e.code + ' ' + e.status + ' ' + short(e.response || e.message)); });
    const ready = new Promise(function (resolve) { up.bind('PostInit', function () { resolve(); }); });
    up.init();
    add = function (files) { ready.then(function () { for (const f of files) up.addFile(f); }); };
    window.uploaders[id] = up;
  }
  input.addEventListener('change', function () { st.added += input.files.length; add(Array.from(input.files)); });
};
window.finished = function (id) { return allSettled(window.cases[id]); };
`;

const page = (lib) => `<!doctype html><html><head><meta charset="utf-8"><title>e2e ${lib}</title>
<script src="/__e2e/${lib}.js"></script></head><body><script>${SETUP}</script></body></html>`;

async function setup(pg, step, phase) {
  const opts = JSON.parse(JSON.stringify(step.opts || {}));
  if (step.mode === 'reload-resume') {
    // which side of the reload a request was sent on, for the access log
    opts.request = Object.assign({}, opts.request, { params: { e2ephase: phase } });
  }
  await pg.evaluate(([id, lib, target, o]) => window.setupCase(id, lib, target, o),
    [step.id, step.lib, step.target, opts]);
  await pg.setInputFiles('#in-' + step.id, step.files);
}

async function waitDone(pg, step, timeout) {
  await pg.waitForFunction((id) => window.finished(id), step.id, { timeout, polling: 50 });
  return pg.evaluate((id) => window.cases[id], step.id);
}

async function runStep(pg, step) {
  const t0 = Date.now();
  const result = { id: step.id, events: [] };
  // Upload requests as the browser sent them: how many were open at once, and how many were
  // Fine Uploader's url-encoded "all parts sent" requests.
  // (A request counts as open until its answer's headers arrive: the client sends the next
  // one only after that, while the "finished" event may come later.)
  const net = { requests: 0, open: 0, maxOpen: 0, finishes: 0 };
  const open = new Set();
  const isTarget = (r) => r.method() === 'POST' && new URL(r.url()).pathname === step.target;
  const onRequest = (r) => {
    if (!isTarget(r)) return;
    open.add(r); net.requests++; net.open = open.size; net.maxOpen = Math.max(net.maxOpen, open.size);
    if ((r.headers()['content-type'] || '').startsWith('application/x-www-form-urlencoded')) net.finishes++;
  };
  const onDone = (r) => { open.delete(r.request ? r.request() : r); net.open = open.size; };
  pg.on('request', onRequest); pg.on('response', onDone); pg.on('requestfailed', onDone);
  await pg.goto(`${plan.origin}/__e2e/${step.lib}.html`);
  await setup(pg, step, 'before');
  if (step.mode === 'reload-resume') {
    // Once the server has answered N chunk requests 200, every later upload request is held
    // in the browser (never reaches the server); when the client has counted N chunks done,
    // the page reloads: the held request is cancelled and the page's state is lost
    // (localStorage stays), as when a user hits F5 between two chunks. The server then holds
    // exactly the chunks the client recorded, and the access log shows what the resumed
    // upload sends.
    const isUpload = (url) => new URL(url).pathname === step.target;
    let answered = 0;
    const onResponse = (r) => {
      if (isUpload(r.url()) && r.request().method() === 'POST' && r.status() === 200) answered++;
    };
    pg.on('response', onResponse);
    await pg.route((url) => isUpload(url.href), (route) => {
      if (answered < step.atChunks) return route.continue();
      return new Promise(() => {}); // held until the reload cancels it
    });
    await pg.waitForFunction(([id, n]) => window.cases[id].chunksDone >= n || window.finished(id),
      [step.id, step.atChunks], { polling: 10, timeout: 30000 });
    await pg.waitForTimeout(300);
    const before = await pg.evaluate((id) => window.cases[id], step.id);
    await pg.reload();
    await pg.unrouteAll({ behavior: 'ignoreErrors' });
    pg.off('response', onResponse);
    result.events.push({ reloaded: true, answeredBefore: answered, chunksDoneBefore: before.chunksDone,
      finishedBefore: before.successes.length > 0, casesAfterReload: await pg.evaluate(() => Object.keys(window.cases).length) });
    await setup(pg, step, 'after');
  }
  result.state = await waitDone(pg, step, step.timeoutMs || 90000);
  result.ms = Date.now() - t0;
  pg.off('request', onRequest); pg.off('response', onDone); pg.off('requestfailed', onDone);
  result.net = net;
  return result;
}

drive(plan, 'dialects-browser', async (context) => {
  await context.route(`${plan.origin}/__e2e/**`, async (route) => {
    const p = new URL(route.request().url()).pathname;
    const m = p.match(/^\/__e2e\/(\w+)\.(html|js)$/);
    if (m && LIBS[m[1]] && m[2] === 'html') return route.fulfill({ contentType: 'text/html; charset=utf-8', body: page(m[1]) });
    if (m && LIBS[m[1]]) return route.fulfill({ contentType: 'application/javascript', body: fs.readFileSync(LIBS[m[1]]) });
    return route.fulfill({ status: 404, body: 'no such e2e asset' });
  });
}, async (pg, step) => {
  const r = await runStep(pg, step);
  log(step.id, `${r.ms} ms`, r.state.errors.length ? r.state.errors : 'ok');
  return r;
}, async (pg, step) => ({
  state: await pg.evaluate((id) => window.cases && window.cases[id], step.id).catch(() => null),
})).catch((e) => { console.error(e); process.exit(1); });
