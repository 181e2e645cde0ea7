// Measures what an audience sees on the caption display, for tests/test_screens_browser.py.
//
//   node screens.mjs '<JSON config>'   ->   one JSON line {"ok": true, "result": {...}} on stdout
//
// Scenario "pacing": the display page (its files read from `static`, served to Chromium under a fixed
// address) gets a recorded caption stream (tests/fixtures/*.jsonl: what a display received from the real
// model) through a routed WebSocket, under Playwright's fake clock, so 75 s of captions replay in a few
// seconds and every run is the same. Every 100 ms of page time the visible lines are read off the screen
// (text laid out in line boxes, clipped by the caption area) and, per display, the figures a reader
// feels are computed: characters per line, characters on screen, line changes per minute, how long each
// line stays on screen, how often only unstable text is visible. Screenshots go to `artifacts`.
// Scenario "obs": a transparent display over nothing, screenshotted with its alpha channel.
import { readFileSync, mkdirSync, writeFileSync } from "node:fs";
import { join, extname } from "node:path";
import { chromium } from "playwright-core";

const config = JSON.parse(process.argv[2]);
mkdirSync(config.artifacts, { recursive: true });
const ORIGIN = "http://display.test";
const SID = "ReplayedSession00000001";
const STEP_MS = 100;
const TAIL_MS = 15000; // page time replayed after the last event
const TYPES = { ".html": "text/html", ".css": "text/css", ".js": "text/javascript" };

function launch() {
  return chromium.launch({
    executablePath: config.chromium,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
    timeout: 60000,
  });
}

/** Serves the display page from `dir` and the session record; the captions socket is the caller's. */
async function serve(page, dir, title) {
  await page.route(ORIGIN + "/**", async (route) => {
    const url = new URL(route.request().url());
    if (url.pathname.startsWith("/static/")) {
      const name = url.pathname.slice("/static/".length);
      try {
        const body = readFileSync(join(dir, name));
        await route.fulfill({ status: 200, contentType: TYPES[extname(name)] || "text/plain", body });
      } catch {
        await route.fulfill({ status: 404, body: "not found" });
      }
    } else if (url.pathname.endsWith("/display")) {
      await route.fulfill({ status: 200, contentType: "text/html", body: readFileSync(join(dir, "display.html")) });
    } else if (url.pathname.endsWith("/record")) {
      await route.fulfill({ status: 200, contentType: "application/json",
        body: JSON.stringify({ id: SID, title, language: "ja", tracks: [], created_at: 0 }) });
    } else {
      await route.fulfill({ status: 404, body: "not found" });
    }
  });
}

// Runs in the page: the visible lines of final text, and the visible unstable text, as a reader sees them.
function snapshot() {
  const area = document.getElementById("lines") || document.getElementById("tracks");
  const preview = document.getElementById("preview");
  const clipOf = (node) => {
    let el = node.parentElement;
    while (el && el !== document.body) {
      const style = getComputedStyle(el);
      if (style.overflow === "hidden" || style.overflowY === "hidden") return el.getBoundingClientRect();
      el = el.parentElement;
    }
    return { top: 0, bottom: window.innerHeight, left: 0, right: window.innerWidth };
  };
  const view = { top: 0, bottom: window.innerHeight };
  const rows = new Map();
  let partial = "";
  const walker = document.createTreeWalker(area, NodeFilter.SHOW_TEXT);
  const range = document.createRange();
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (!node.textContent.trim()) continue;
    const holder = node.parentElement;
    if (holder.closest(".partial") || getComputedStyle(holder).visibility === "hidden") {
      partial += node.textContent;
      continue;
    }
    const clip = clipOf(node);
    range.selectNodeContents(node);
    const box = range.getBoundingClientRect();
    if (box.bottom <= Math.max(clip.top, view.top) || box.top >= Math.min(clip.bottom, view.bottom)) continue;
    const text = node.textContent;
    for (let i = 0; i < text.length; i++) {
      range.setStart(node, i);
      range.setEnd(node, i + 1);
      const r = range.getBoundingClientRect();
      if (!r.height) continue;
      const middle = (r.top + r.bottom) / 2;
      if (middle < Math.max(clip.top, view.top) || middle > Math.min(clip.bottom, view.bottom)) continue;
      const key = Math.round(r.top / 4) * 4 + ":" + (holder.closest(".second,[lang=en]") ? "en" : "");
      const row = rows.get(key) || { top: r.top, text: "", second: key.endsWith("en") };
      row.text += text[i];
      rows.set(key, row);
    }
  }
  if (preview && !preview.hidden && getComputedStyle(preview).display !== "none") partial = preview.innerText;
  const lines = [...rows.values()].sort((a, b) => a.top - b.top).map((r) => ({ text: r.text.trim(), second: r.second }))
    .filter((r) => r.text);
  return { lines, partial: partial.trim(), state: document.body.dataset.state };
}

/** Figures over the samples from the first final on; rates per minute of the stream (first to last final). */
function figures(samples, firstAt, lastAt) {
  const live = samples.filter((s) => s.t >= firstAt);
  const minutes = (lastAt - firstAt) / 60000;
  let changes = 0;
  let partialChanges = 0;
  let unstableOnly = 0;
  let charsOnScreen = 0;
  const open = new Map(); // line text -> first seen
  const durations = [];
  const distinct = new Map();
  let previous = null;
  let previousPartial = "";
  for (const s of live) {
    const key = s.lines.map((l) => l.text).join("\n");
    if (previous !== null && key !== previous) changes += 1;
    if (s.partial !== previousPartial) partialChanges += 1;
    previous = key;
    previousPartial = s.partial;
    if (!s.lines.length && s.partial) unstableOnly += 1;
    charsOnScreen += s.lines.filter((l) => !l.second).reduce((n, l) => n + l.text.length, 0);
    const now = new Set(s.lines.map((l) => l.text));
    for (const text of now) {
      if (!open.has(text)) open.set(text, s.t);
      const line = s.lines.find((l) => l.text === text);
      if (!distinct.has(text)) distinct.set(text, line.second);
    }
    for (const [text, since] of [...open]) {
      if (!now.has(text)) {
        durations.push({ text, ms: s.t - since });
        open.delete(text);
      }
    }
  }
  const firstTrack = [...distinct].filter(([, second]) => !second).map(([text]) => text.length);
  const sorted = durations.map((d) => d.ms).sort((a, b) => a - b);
  const pick = (q) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] : null);
  return {
    minutes: Number(minutes.toFixed(2)),
    line_changes: changes,
    line_changes_per_minute: Number((changes / minutes).toFixed(1)),
    partial_changes: partialChanges,
    distinct_lines: firstTrack.length,
    chars_per_line_mean: firstTrack.length ? Number((firstTrack.reduce((a, b) => a + b, 0) / firstTrack.length).toFixed(1)) : 0,
    chars_per_line_max: firstTrack.length ? Math.max(...firstTrack) : 0,
    short_lines: [...distinct].filter(([text, second]) => !second && text.length <= 3).map(([text]) => text),
    chars_on_screen_mean: Number((charsOnScreen / live.length).toFixed(1)),
    on_screen_min_s: sorted.length ? Number((sorted[0] / 1000).toFixed(1)) : null,
    on_screen_p10_s: sorted.length ? Number((pick(0.1) / 1000).toFixed(1)) : null,
    on_screen_median_s: sorted.length ? Number((pick(0.5) / 1000).toFixed(1)) : null,
    shortest: durations.sort((a, b) => a.ms - b.ms).slice(0, 3),
    unstable_only_share: Number((unstableOnly / live.length).toFixed(3)),
  };
}

async function replay(browser, display) {
  const events = readFileSync(display.fixture, "utf8").trim().split("\n").map((l) => JSON.parse(l));
  const context = await browser.newContext({
    viewport: display.viewport,
    deviceScaleFactor: display.scale || 1,
  });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (error) => errors.push(error.message));
  const start = Date.parse("2026-01-01T18:00:00Z");
  await page.clock.install({ time: start });
  await serve(page, display.static || config.static, display.title || "");
  let server = null;
  await page.routeWebSocket(/\/captions/, (ws) => {
    server = ws;
  });
  await page.goto(`${ORIGIN}/v1/sessions/${SID}/display?token=replayed${display.query ? "&" + display.query : ""}`);
  await page.clock.runFor(500);
  if (!server) throw new Error("the display did not open its captions socket");
  const samples = [];
  let t = 0;
  let firstAt = null;
  let lastAt = null;
  const sample = async () => samples.push({ t, ...(await page.evaluate(snapshot)) });
  const shots = {};
  const end = events[events.length - 1].t * 1000 + TAIL_MS;
  let next = 0;
  while (t <= end) {
    while (next < events.length && events[next].t * 1000 <= t) {
      const event = { ...events[next].event, emitted_at: (start + 500 + t) / 1000 };
      server.send(JSON.stringify(event));
      if (firstAt === null && event.type === "final") firstAt = t;
      if (event.type === "final") lastAt = t;
      next += 1;
    }
    await page.clock.runFor(STEP_MS);
    t += STEP_MS;
    await sample();
    for (const at of display.shotsAt || []) {
      if (t === at * 1000) {
        const path = join(config.artifacts, `${display.name}-${at}s.png`);
        await page.screenshot({ path });
        shots[at] = path;
      }
    }
  }
  const path = join(config.artifacts, `${display.name}-end.png`);
  await page.screenshot({ path, fullPage: false });
  shots.end = path;
  const result = {
    name: display.name,
    figures: figures(samples, firstAt, lastAt),
    errors,
    screenshots: shots,
    last: samples[samples.length - 1],
    options: await page.evaluate(() => (window.wspDisplay.options ? window.wspDisplay.options() : null)),
    scroll: await page.evaluate(() => ({ y: window.scrollY, height: document.documentElement.scrollHeight, view: window.innerHeight })),
  };
  if (display.keepSamples) writeFileSync(join(config.artifacts, `${display.name}-samples.json`), JSON.stringify(samples));
  await context.close();
  return result;
}

async function pacing() {
  const browser = await launch();
  try {
    const out = {};
    for (const display of config.displays) out[display.name] = await replay(browser, display);
    return out;
  } finally {
    await browser.close();
  }
}

const scenarios = { pacing };
try {
  const result = await scenarios[config.scenario]();
  process.stdout.write(JSON.stringify({ ok: true, result }) + "\n");
  process.exit(0);
} catch (error) {
  process.stdout.write(JSON.stringify({ ok: false, error: String(error && error.stack ? error.stack : error) }) + "\n");
  process.exit(1);
}
