// Plain form uploads from headless Debian chromium (playwright-core) against a real web server,
// for tests/e2e_forms.rs: a <form> submitted by a click, fetch + FormData, Dropzone (chunking
// off) and Uppy's @uppy/xhr-upload, the last two from node_modules.
//
//   node forms-browser.mjs PLAN.json   -> prints one JSON line "RESULT {...}" on stdout
//
// PLAN: { origin, profileDir, steps: [STEP...] }
// STEP: { id, kind: "form" | "demo" | "fetch" | "dropzone" | "uppy", target: "/url", files: ["/abs", ...],
//         dir?: "/abs/folder" (form: a webkitdirectory input too), maxFileSize?: N (form) }
//
// The pages are served by this script through page.route() on the server's own origin, so the
// uploads are same-origin and reach the real server untouched. @uppy/core is ES modules with
// bare imports (and CommonJS dependencies): it is bundled once with esbuild for the page.
import { drive } from './driver.mjs';
import { build } from 'esbuild';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const plan = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const log = (...a) => console.error('[forms-browser]', ...a);

async function uppyBundle() {
  const out = await build({
    stdin: {
      contents: "import Uppy from '@uppy/core'; import XHRUpload from '@uppy/xhr-upload';" +
        ' window.Uppy = Uppy; window.XHRUpload = XHRUpload;',
      resolveDir: here,
    },
    bundle: true, format: 'iife', write: false, logLevel: 'silent',
  });
  return out.outputFiles[0].contents;
}

const page = (body) => `<!doctype html><html><head><meta charset="utf-8"><title>forms</title>
<script src="/__forms/dropzone.js"></script><script src="/__forms/uppy.js"></script></head>
<body>${body}</body></html>`;

async function sha256Hex(page, url) {
  return page.evaluate(async (u) => {
    const res = await fetch(u);
    const bytes = await res.arrayBuffer();
    const digest = await crypto.subtle.digest('SHA-256', bytes);
    return { status: res.status, size: bytes.byteLength,
      sha256: [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('') };
  }, url);
}

// The HTML answer a form post navigated to: each file's name, error code and link, and what
// each link downloads.
async function answerPage(p, response) {
  const items = await p.$$eval('#files li', (lis) => lis.map((li) => ({
    name: li.querySelector('.name').textContent, error: Number(li.dataset.error),
    link: li.querySelector('a') && li.querySelector('a').getAttribute('href'),
  })));
  const downloads = [];
  for (const item of items) if (item.link) downloads.push({ name: item.name, ...(await sha256Hex(p, item.link)) });
  return { status: response.status(), contentType: response.headers()['content-type'],
    title: await p.title(), items, downloads };
}

// Each kind leaves { answers: [...], downloads: [...] } for the Rust side to check.
const KINDS = {
  // A real <form>: the click makes the browser post it and navigate to the answer page.
  async form(p, step) {
    const hidden = step.maxFileSize ? `<input type="hidden" name="MAX_FILE_SIZE" value="${step.maxFileSize}">` : '';
    const folder = step.dir ? '<input type="file" name="folder[]" id="folder" webkitdirectory>' : '';
    await p.setContent(page(`<form method="post" enctype="multipart/form-data" action="${step.target}">
      <input name="note" value="sent by a form">${hidden}
      <input type="file" name="files[]" id="files" multiple>${folder}
      <button id="send">Upload</button></form>`));
    await p.setInputFiles('#files', step.files);
    if (step.dir) await p.setInputFiles('#folder', step.dir);
    const [response] = await Promise.all([p.waitForNavigation(), p.click('#send')]);
    return answerPage(p, response);
  },

  // The dev server's own page (`resumable-cgi serve`): its plain form, submitted by a click.
  async demo(p, step) {
    await p.goto(`${plan.origin}/`);
    await p.setInputFiles('#plain-form input[type=file]', step.files);
    const [response] = await Promise.all([p.waitForNavigation(), p.click('#plain-form button')]);
    return answerPage(p, response);
  },

  // fetch with a FormData built from a file input: the JSON answer.
  async fetch(p, step) {
    await p.setContent(page('<input type="file" id="pick" multiple>'));
    await p.setInputFiles('#pick', step.files);
    return p.evaluate(async (target) => {
      const fd = new FormData();
      fd.append('album', 'fetched');
      for (const f of document.getElementById('pick').files) fd.append('photos[]', f);
      const res = await fetch(target, { method: 'POST', body: fd });
      return { status: res.status, contentType: res.headers.get('content-type'), body: await res.json() };
    }, step.target);
  },

  // Dropzone with chunking off: one plain multipart POST per file, the file part last.
  async dropzone(p, step) {
    await p.setContent(page('<div id="dz" class="dropzone"></div>'));
    await p.evaluate(([target, count]) => {
      Dropzone.autoDiscover = false;
      const st = window.dzState = { successes: [], errors: [], expected: count };
      const dz = new Dropzone('#dz', { url: target, chunking: false, parallelUploads: 2 });
      dz.on('success', (file, response) => st.successes.push({ name: file.name, response }));
      dz.on('error', (file, message) => st.errors.push(file.name + ': ' + JSON.stringify(message)));
    }, [step.target, step.files.length]);
    await p.setInputFiles('.dz-hidden-input', step.files);
    await p.waitForFunction(() => {
      const s = window.dzState; return s.successes.length + s.errors.length >= s.expected;
    }, null, { timeout: 60000, polling: 50 });
    return p.evaluate(() => window.dzState);
  },

  // Uppy with @uppy/xhr-upload: one multipart POST per file, its meta fields first.
  async uppy(p, step) {
    await p.setContent(page('<input type="file" id="pick" multiple>'));
    await p.setInputFiles('#pick', step.files);
    const result = await p.evaluate(async (target) => {
      const uppy = new Uppy({ autoProceed: false }).use(XHRUpload, { endpoint: target, limit: 2 });
      for (const f of document.getElementById('pick').files) {
        uppy.addFile({ name: f.name, type: f.type, data: f, source: 'local' });
      }
      const r = await uppy.upload();
      return {
        successful: r.successful.map((f) => ({ name: f.name, body: f.response.body, uploadURL: f.response.uploadURL })),
        failed: r.failed.map((f) => f.name + ': ' + String(f.error)),
      };
    }, step.target);
    const downloads = [];
    for (const f of result.successful) if (f.uploadURL) downloads.push({ name: f.name, ...(await sha256Hex(p, f.uploadURL)) });
    return { ...result, downloads };
  },
};

const uppy = await uppyBundle();
const dropzone = fs.readFileSync(path.join(here, 'node_modules/dropzone/dist/dropzone-min.js'));
drive(plan, 'forms-browser', async (context) => {
  await context.route(`${plan.origin}/__forms/**`, (route) => {
    const p = new URL(route.request().url()).pathname;
    if (p === '/__forms/page.html') return route.fulfill({ contentType: 'text/html; charset=utf-8', body: page('') });
    if (p === '/__forms/uppy.js') return route.fulfill({ contentType: 'application/javascript', body: Buffer.from(uppy) });
    if (p === '/__forms/dropzone.js') return route.fulfill({ contentType: 'application/javascript', body: dropzone });
    return route.fulfill({ status: 404, body: 'no such asset' });
  });
}, async (p, step) => {
  const t = Date.now();
  // A page on the server's origin first, so that the pages set below post same-origin.
  await p.goto(`${plan.origin}/__forms/page.html`);
  const outcome = await KINDS[step.kind](p, step);
  log(step.id, `${Date.now() - t} ms`);
  return { id: step.id, ms: Date.now() - t, outcome };
}).catch((e) => { console.error(e); process.exit(1); });
