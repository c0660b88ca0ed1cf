// Drives the dev server's demo page in headless Chromium: uploads one file through the folder
// picker (paused and resumed on the way), a second one that is interrupted by a page reload and
// then resumed by picking it again, and a third the server refuses as too large. Run by tests/serve_browser.rs, which checks the files on disk and the server's log.
//
// usage: node tests/js/demo-page.mjs <base-url> <work-dir> <screenshot-prefix>
// Writes the source files into <work-dir>; prints one JSON line (prefixed RESULT ) at the end.
import { chromium } from "playwright-core";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const [base, workDir, shots] = process.argv.slice(2);
if (!base || !workDir || !shots) {
  console.error("usage: demo-page.mjs <base-url> <work-dir> <screenshot-prefix>");
  process.exit(2);
}
const CHUNK_KIB = 256;
const log = (...a) => console.log("[demo-page]", ...a);

function source(relative, size) {
  const bytes = crypto.randomBytes(size);
  const file = path.join(workDir, relative);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, bytes);
  return { relative, path: file, size, sha256: crypto.createHash("sha256").update(bytes).digest("hex"), bytes };
}

const upload = (page, index) => page.evaluate((i) => {
  const u = window.demo.uploads[i];
  return u && { id: u.id, done: u.done, error: u.error, storedName: u.storedName, sent: u.sent,
                skipped: u.skipped, total: u.chunks.length,
                confirmed: u.chunks.filter((c) => c.state === "done").map((c) => c.number) };
}, index);

async function waitDone(page, index, timeout) {
  await page.waitForFunction((i) => {
    const u = window.demo.uploads[i];
    return u && (u.done || u.error);
  }, index, { timeout, polling: 50 });
  const state = await upload(page, index);
  if (state.error) throw new Error(`upload ${index} failed: ${state.error}`);
  return state;
}

const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), "demo-page-profile-"));
let context;
try {
  // A persistent context is how playwright takes a fresh profile (it rejects --user-data-dir).
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: "/usr/bin/chromium",
    headless: true,
    viewport: { width: 900, height: 640 },
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const page = context.pages()[0] || (await context.newPage());
  page.on("pageerror", (e) => log("pageerror", e.message));
  page.on("console", (m) => { if (m.type() === "error") log("console", m.text()); });

  // A throttled upload link makes "mid-upload" last long enough to act on.
  await page.goto(base);
  const cdp = await context.newCDPSession(page);
  await cdp.send("Network.enable");
  const throttle = (bytesPerSecond) => cdp.send("Network.emulateNetworkConditions",
    { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: bytesPerSecond });
  const doneCount = (i) => page.evaluate((i) =>
    window.demo.uploads[i].chunks.filter((c) => c.state === "done").length, i);

  // 1. A folder with one file in it, through the folder picker (webkitdirectory), paused
  //    part-way with the row's button and resumed.
  const alpha = source("demo-folder/alpha.bin", 1536 * 1024 + 1234);
  await throttle(512 * 1024);
  await page.fill("#chunk-kib", String(CHUNK_KIB));
  await page.setInputFiles("#pick-folder", path.join(workDir, "demo-folder"));
  await page.waitForFunction(() => window.demo.uploads[0].chunks.filter((c) => c.state === "done").length >= 2,
                             null, { timeout: 60000, polling: 20 });
  await page.click("#files .file:nth-child(1) .toggle");
  await page.waitForTimeout(300);
  const pausedAt = await doneCount(0);
  await page.waitForTimeout(700);
  const paused = await page.evaluate(() => {
    const u = window.demo.uploads[0];
    return { paused: u.paused, inFlight: u.chunks.filter((c) => c.xhr).length,
             status: document.querySelector("#files .file .status").textContent,
             button: document.querySelector("#files .file .toggle").textContent };
  });
  const stillAt = await doneCount(0);
  log("alpha paused", JSON.stringify({ pausedAt, stillAt, ...paused }));
  if (!paused.paused || paused.inFlight !== 0 || stillAt !== pausedAt || pausedAt >= 6
      || paused.status !== "paused" || paused.button !== "Resume") {
    throw new Error("pause did not hold the upload");
  }
  await throttle(-1);
  await page.click("#files .file:nth-child(1) .toggle");
  const a = await waitDone(page, 0, 60000);
  log("alpha", JSON.stringify(a));

  // 2. A bigger file, reloaded mid-upload.
  const bravo = source("bravo.bin", 6 * 1024 * 1024 + 77);
  await throttle(1024 * 1024);
  const file = { name: "bravo.bin", mimeType: "application/octet-stream", buffer: bravo.bytes };
  await page.setInputFiles("#pick-files", file);
  await page.waitForFunction(() => {
    const u = window.demo.uploads[1];
    return u && (u.error || u.chunks.filter((c) => c.state === "done").length >= 6);
  }, null, { timeout: 60000, polling: 20 });
  await page.screenshot({ path: `${shots}-mid-upload.png`, fullPage: true });
  const before = await upload(page, 1);
  log("bravo before reload", JSON.stringify({ ...before, confirmed: before.confirmed.length }));
  if (before.done || before.error) throw new Error("bravo was not mid-upload at the reload");

  // 3. Reload (in-flight chunks are cut off), pick the same file again: it resumes.
  await page.reload();
  await throttle(-1);
  const after = { posts: 0, tests: 0 };
  page.on("request", (r) => {
    if (!r.url().includes("/upload")) return;
    if (r.method() === "POST") after.posts++;
    if (r.method() === "GET") after.tests++;
  });
  await page.fill("#chunk-kib", String(CHUNK_KIB));
  await page.setInputFiles("#pick-files", file);
  const b = await waitDone(page, 0, 60000);
  log("bravo after reload", JSON.stringify({ ...b, confirmed: b.confirmed.length }), JSON.stringify(after));

  // 3. A file over the server's RESUMABLE_MAX_FILE_SIZE (7M in the test): refused, in words.
  await page.setInputFiles("#pick-files",
    { name: "too-big.bin", mimeType: "application/octet-stream", buffer: crypto.randomBytes(8 << 20) });
  await page.waitForFunction(() => window.demo.uploads[1] && (window.demo.uploads[1].error || window.demo.uploads[1].done),
                             null, { timeout: 60000 });
  const refusal = await page.textContent("#files .file:nth-child(2) .status");
  log("too-big", refusal);
  if (!/^failed: the server refused it: .*larger than the maximum/.test(refusal)) {
    throw new Error(`unexpected refusal text: ${refusal}`);
  }
  await page.screenshot({ path: `${shots}-done.png`, fullPage: true });

  // 4. The listing page shows both.
  await page.goto(new URL("/files/", base).href);
  const listing = await page.textContent("body");
  await page.screenshot({ path: `${shots}-listing.png`, fullPage: true });

  const result = {
    files: [
      { source: alpha.path, sha256: alpha.sha256, size: alpha.size, stored: a.storedName, id: a.id },
      { source: bravo.path, sha256: bravo.sha256, size: bravo.size, stored: b.storedName, id: b.id },
    ],
    resumed: {
      id: b.id, total: b.total,
      confirmedBeforeReload: before.confirmed.length,
      postsAfterReload: after.posts, testsAfterReload: after.tests,
      sentAfterReload: b.sent, skippedAfterReload: b.skipped,
    },
    pause: { pausedAt, stillAt, total: a.total },
    refusal,
    listingNames: [a.storedName, b.storedName].filter((n) => listing.includes(n)),
  };
  console.log("RESULT " + JSON.stringify(result));
} catch (e) {
  console.error("[demo-page] failed:", e && e.stack || e);
  process.exitCode = 1;
} finally {
  if (context) await context.close().catch(() => {});
  fs.rmSync(userDataDir, { recursive: true, force: true });
}
