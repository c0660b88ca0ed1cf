// The frame every browser driver of the Rust suite shares: headless Debian chromium through
// playwright-core in a fresh profile, the driver's own routes, each step of the plan in turn
// (a failing step is reported, the others still run), and the result as one line
// "RESULT {...}" on stdout for the test to read.
import { chromium } from 'playwright-core';
import fs from 'node:fs';

// `routes(context)` installs the driver's pages and scripts; `step(page, step, context)` runs one
// step and answers its result object (with `id`); `failed(page, step)`, when given, answers what
// a failed step's record carries besides its failure.
export async function drive(plan, name, routes, step, failed = async () => ({})) {
  const log = (...a) => console.error(`[${name}]`, ...a);
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
  try {
    await routes(context);
    await context.route(`${plan.origin}/favicon.ico`, (route) => route.fulfill({ status: 204, body: '' }));
    const page = context.pages()[0] || await context.newPage();
    page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') results.console.push(m.text()); });
    page.on('pageerror', (e) => results.console.push('pageerror: ' + e.message));
    for (const s of plan.steps) {
      try {
        results.steps.push(await step(page, s, context));
      } catch (e) {
        log(s.id, 'FAILED', e.message);
        results.steps.push({ id: s.id, failure: String(e && e.stack || e), ...await failed(page, s) });
      }
    }
  } finally {
    await context.close();
  }
  results.totalMs = Date.now() - t0;
  process.stdout.write('RESULT ' + JSON.stringify(results) + '\n');
}
