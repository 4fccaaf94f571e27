// The dashboard of `shmbus serve` in headless Chromium, driven by playwright-core: the rows of
// the segments that .ci/browser.sh made, their rates moving between samples, the detail views.
// Usage: node dashboard.cjs URL PREFIX [SCREENSHOT.png]   (NODE_PATH must find playwright-core)
"use strict";

const { chromium } = require("playwright-core");

const [url, prefix, screenshot] = process.argv.slice(2);
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
let passed = 0;
let failed = 0;

function check(what, ok, detail) {
  if (ok) {
    passed++;
    console.log(`ok   ${what}`);
  } else {
    failed++;
    console.log(`FAIL ${what}: ${detail}`);
  }
}

// A row's cells as text, and its sample count.
async function rowOf(page, name) {
  return page.$eval(`tr.segment[data-name="${name}"]`, (tr) => ({
    kind: tr.dataset.kind,
    samples: Number(tr.dataset.samples || 0),
    cells: [...tr.children].map((td) => td.textContent),
    points: (tr.querySelector("polyline")?.getAttribute("points") || "").split(" ")
      .filter(Boolean).length,
  }));
}

async function polls(page) {
  return page.$eval("#status", (s) => Number(s.dataset.polls || 0));
}

async function waitPolls(page, n) {
  const start = await polls(page);
  await page.waitForFunction((want) =>
    Number(document.getElementById("status").dataset.polls || 0) >= want, start + n,
  { timeout: 20000 + n * 2000 });
}

(async () => {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
    await page.goto(url, { waitUntil: "load" });

    const want = {
      [`${prefix}md.prices`]: "bus", [`${prefix}md.trades`]: "bus",
      [`${prefix}jobs`]: "queue", [`${prefix}joints`]: "board", [`${prefix}log`]: "records",
      [`${prefix}corrupt`]: "error",
    };
    for (const name of Object.keys(want)) {
      await page.waitForSelector(`tr.segment[data-name="${name}"]`, { timeout: 20000 });
    }
    for (const [name, kind] of Object.entries(want)) {
      const r = await rowOf(page, name);
      check(`row ${name} is a ${kind}`, r.kind === kind && r.cells[1] === kind,
        JSON.stringify(r));
    }
    const corrupt = await rowOf(page, `${prefix}corrupt`);
    check("the corrupt file's row says why", /error: .*not a shmbus segment/.test(corrupt.cells[2]),
      JSON.stringify(corrupt));

    // Rates: sampled again at each poll; the publishing bus's count and samples move.
    await waitPolls(page, 3);
    const bus = `${prefix}md.prices`;
    const a = await rowOf(page, bus);
    await waitPolls(page, 3);
    const b = await rowOf(page, bus);
    check("the bus's count goes up between samples", Number(b.cells[3]) > Number(a.cells[3]),
      `${a.cells[3]} then ${b.cells[3]}`);
    check("the bus's sparkline grows", b.samples > a.samples && b.points === b.samples,
      `${a.samples} then ${b.samples} samples, ${b.points} points`);
    check("the bus's rate is shown", /^[0-9.]+k?\/s$/.test(b.cells[4]) && b.cells[4] !== "0.0/s",
      b.cells[4]);
    const log = await rowOf(page, `${prefix}log`);
    check("the records segment's rate is shown", /\/s$/.test(log.cells[4]) &&
      log.cells[4] !== "0.0/s", log.cells[4]);
    const jobs = await rowOf(page, `${prefix}jobs`);
    check("the queue's row shows its depth and a sparkline of it",
      /^[0-9]+$/.test(jobs.cells[3]) && jobs.points > 1, JSON.stringify(jobs));

    // Detail views.
    await page.click(`tr.segment[data-name="${prefix}joints"]`);
    await page.waitForSelector("#detail-body table", { timeout: 20000 });
    const board = await page.$eval("#detail-body", (d) => d.textContent);
    check("the board's detail lists its cells, values hidden without --show-payloads",
      board.includes("knee") && board.includes("hidden"), board.slice(0, 300));
    await page.click(`tr.segment[data-name="${prefix}jobs"]`);
    await page.waitForFunction(() => document.getElementById("detail-body").textContent
      .includes("depth over time"), null, { timeout: 20000 });
    const queue = await page.$eval("#detail-body", (d) => d.textContent);
    // Its participants come and go (each push and pop attaches for a moment).
    check("the queue's detail shows its depth and participants",
      /depth\d+head \/ tail\d+ \/ \d+/.test(queue) && queue.includes("participants"),
      queue.slice(0, 300));
    await page.click(`tr.segment[data-name="${bus}"]`);
    await page.waitForFunction(() => /producers \(1 live\)/.test(
      document.getElementById("detail-body").textContent), null, { timeout: 20000 });
    await page.waitForFunction(() => /lost in the last/.test(
      document.getElementById("detail-body").textContent), null, { timeout: 20000 });
    const detail = await page.$eval("#detail-body", (d) => d.textContent);
    check("the bus's detail shows what a reader lost in the last second",
      /\d+ lost in the last 1\.\d s/.test(detail), detail.slice(0, 400));
    check("the bus's detail names its live producer's pid", /producers \(1 live\)#pidliveness.*alive/
      .test(detail.replace(/\s+/g, "")) || /\d+alive/.test(detail), detail.slice(0, 300));

    check("no script error", errors.length === 0, errors.join("; "));
    if (screenshot) {
      // A sparkline of some length: SCREENSHOT_POLLS more samples first.
      await waitPolls(page, Number(process.env.SCREENSHOT_POLLS || 4));
      await page.screenshot({ path: screenshot, fullPage: true });
      console.log(`screenshot: ${screenshot}`);
    }
  } finally {
    await browser.close();
  }
  console.log(`dashboard: ${passed} passed, ${failed} failed`);
  process.exit(failed === 0 ? 0 : 1);
})().catch((e) => {
  console.log(`FAIL ${e.stack || e}`);
  console.log(`dashboard: ${passed} passed, ${failed + 1} failed`);
  process.exit(1);
});
