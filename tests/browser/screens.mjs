// Measures what an audience sees on the caption display, for tests/test_screens_browser.py.
//
//   node screens.mjs '<JSON config>'   ->   JSON lines on stdout, the last {"event": "result", "ok": ..., "result": ...}
//
// Scenario "pacing": the display page (its files read from `static`, served to Chromium under a fixed
// address) gets a recorded caption stream (tests/fixtures/*.jsonl: what a display received from the real
// model) through a routed WebSocket, under Playwright's fake clock, so 75 s of captions replay in a few
// seconds and every run is the same. Every 100 ms of page time the visible lines are read off the screen
// (text laid out in line boxes, clipped by the caption area) and, per display, the figures a reader
// feels are computed: characters per line, characters on screen, line changes per minute, how long each
// line stays on screen, how often only unstable text is visible. Screenshots go to `artifacts`.
// A display with `alpha` is also screenshotted over nothing (its alpha channel kept): OBS composites it.
// Scenario "mic": the microphone page of a running pipeline: display links with QR codes and short links,
// the locked form and New session, the input device and channel pickers, the lag readout.
// Scenario "gone": a session whose server data is lost: honest words on the display and the mic page,
// and dimmed captions while the caption server is away. pytest does what it is asked (JSON lines).
import { readFileSync, mkdirSync, writeFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { join, extname } from "node:path";
import { chromium } from "playwright-core";

const config = JSON.parse(process.argv[2]);
mkdirSync(config.artifacts, { recursive: true });
const ORIGIN = "http://display.test";
const SID = "ReplayedSession00000001";
const STEP_MS = config.stepMs || 100; // page time between two readings of the screen
const TAIL_MS = 15000; // page time replayed after the last event
const TYPES = { ".html": "text/html", ".css": "text/css", ".js": "text/javascript" };

function launch(extra = []) {
  return chromium.launch({
    executablePath: config.chromium,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
      "--autoplay-policy=no-user-gesture-required", ...extra],
    timeout: 60000,
  });
}

const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function ask(what) {
  process.stdout.write(JSON.stringify({ event: "ask", what }) + "\n");
  const answer = await lines.next();
  if (answer.done || answer.value.trim() !== "done") throw new Error(`pytest did not do ${what}`);
}

async function waitFor(page, predicate, arg, timeoutMs, what) {
  try {
    await page.waitForFunction(predicate, arg, { timeout: timeoutMs, polling: 100 });
  } catch {
    throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
  }
}

async function shot(page, name, options = {}) {
  const path = join(config.artifacts, name + ".png");
  await page.screenshot({ path, ...options });
  return path;
}

/** Alpha of a PNG's pixels, read back through a canvas: shares fully transparent, fully opaque, between. */
async function alphaStats(browser, png) {
  const page = await browser.newPage();
  try {
    return await page.evaluate(async (b64) => {
      const img = new Image();
      img.src = "data:image/png;base64," + b64;
      await img.decode();
      const canvas = document.createElement("canvas");
      canvas.width = img.width;
      canvas.height = img.height;
      const g = canvas.getContext("2d");
      g.drawImage(img, 0, 0);
      const data = g.getImageData(0, 0, canvas.width, canvas.height).data;
      let clear = 0;
      let solid = 0;
      for (let i = 3; i < data.length; i += 4) {
        if (data[i] === 0) clear += 1;
        else if (data[i] === 255) solid += 1;
      }
      const n = data.length / 4;
      return { transparent: clear / n, opaque: solid / n, between: (n - clear - solid) / n, topLeftAlpha: data[3] };
    }, png.toString("base64"));
  } finally {
    await page.close();
  }
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
  let alpha = null;
  if (display.alpha) {
    const png = await page.screenshot({ path: join(config.artifacts, `${display.name}-alpha.png`), omitBackground: true });
    shots.alpha = join(config.artifacts, `${display.name}-alpha.png`);
    alpha = await alphaStats(page.context().browser(), png);
  }
  const result = {
    name: display.name,
    figures: figures(samples, firstAt, lastAt),
    errors,
    alpha,
    screenshots: shots,
    last: samples[samples.length - 1],
    options: await page.evaluate(() => (window.wspDisplay.options ? window.wspDisplay.options() : null)),
    blocks: await page.evaluate(() => (window.wspDisplay.blocks ? window.wspDisplay.blocks() : null)),
    title: await page.evaluate(() => {
      const el = document.getElementById("title");
      return el && !el.hidden && getComputedStyle(el).display !== "none" ? el.innerText : "";
    }),
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

// -- the microphone page --------------------------------------------------------------------------
async function mic() {
  const browser = await launch(["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
    `--use-file-for-fake-audio-capture=${config.audio}`]);
  const out = { screenshots: [], errors: [] };
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 1100 } });
    const page = await context.newPage();
    page.on("pageerror", (error) => out.errors.push(error.message));
    page.on("dialog", (dialog) => dialog.accept());
    await page.goto(config.ingest + "/");
    await page.fill("#title", "秋の定期演奏会");
    await page.click("#create");
    await waitFor(page, () => document.querySelectorAll("#link-list li.display").length >= 4, null, 15000, "display cards");
    out.cards = await page.$$eval("#link-list li.display", (items) => items.map((li) => ({
      kind: li.dataset.kind,
      label: li.querySelector(".label").innerText,
      short: li.querySelector(".short").href,
      shortText: li.querySelector(".short").innerText,
      url: li.querySelector("input").value,
      qrViewBox: li.querySelector(".qr svg") ? li.querySelector(".qr svg").getAttribute("viewBox") : null,
      qrSize: li.querySelector(".qr").getBoundingClientRect().width,
    })));
    out.session = await page.evaluate(() => window.wspMic.session());
    out.locked = await page.evaluate(() => ({
      fields: document.getElementById("create-fields").disabled,
      createHidden: document.getElementById("create").hidden,
      newSession: !document.getElementById("new-session").hidden,
      localWarning: document.getElementById("links-local").hidden ? "" : document.getElementById("links-local").innerText,
    }));
    out.screenshots.push(await shot(page, "mic-links", { fullPage: true }));

    // a short link opens its display on "another device"
    const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2 });
    const phonePage = await phone.newPage();
    phonePage.on("pageerror", (error) => out.errors.push("phone: " + error.message));
    await phonePage.goto(out.cards.find((c) => c.kind === "phone").short);
    await waitFor(phonePage, () => window.wspDisplay && window.wspDisplay.state() === "live", null, 15000, "the phone display");
    out.phoneLanded = phonePage.url();
    out.phoneOptions = await phonePage.evaluate(() => window.wspDisplay.options());

    // the input pickers: start, then the channels of the (two-channel) fake device
    await page.click("#start");
    await waitFor(page, () => document.getElementById("stage").dataset.state === "live", null, 20000, "streaming");
    await waitFor(page, () => document.querySelectorAll("#device option").length > 1, null, 10000, "named inputs");
    out.devices = await page.$$eval("#device option", (o) => o.map((x) => ({ value: x.value, label: x.textContent })));
    out.channels = await page.$$eval("#channel option", (o) => o.map((x) => ({ value: x.value, label: x.textContent })));
    out.channelDisabled = await page.$eval("#channel", (s) => s.disabled);
    const level = async () => {
      let peak = 0;
      for (let i = 0; i < 30; i++) {
        peak = Math.max(peak, await page.$eval("#level-bar", (el) => parseFloat(el.style.width) || 0));
        await sleep(100);
      }
      return peak;
    };
    await page.selectOption("#channel", "0");
    await sleep(300);
    out.levelChannel1 = await level();
    await page.selectOption("#channel", "1");
    await sleep(300);
    out.levelChannel2 = await level();
    await waitFor(page, () => /behind the audio/.test(document.getElementById("lag").innerText), null, 30000, "a lag readout");
    out.lag = await page.evaluate(() => window.wspMic.lag());
    out.input = await page.evaluate(() => window.wspMic.input());
    out.newSessionWhileStreaming = await page.$eval("#new-session", (b) => b.disabled);
    out.screenshots.push(await shot(page, "mic-streaming"));
    await page.click("#stop");
    await waitFor(page, () => document.getElementById("stage").dataset.state === "stopped", null, 20000, "stopped");

    // New session: the form opens again; a chosen input is used by the next Start
    await page.click("#new-session");
    await waitFor(page, () => !document.getElementById("create-fields").disabled, null, 5000, "the form unlocked");
    out.afterNewSession = await page.evaluate(() => ({ links: document.getElementById("links").hidden, url: location.search }));
    const second = out.devices.find((d) => /Input 2/.test(d.label));
    await page.selectOption("#device", second.value);
    await page.click("#create");
    await waitFor(page, () => document.querySelectorAll("#link-list li.display").length >= 3, null, 15000, "new links");
    out.secondSession = await page.evaluate(() => window.wspMic.session().id);
    await page.click("#start");
    await waitFor(page, () => document.getElementById("stage").dataset.state === "live", null, 20000, "streaming again");
    out.secondInput = await page.evaluate(() => window.wspMic.input());
    out.chosenDevice = second;
    await page.click("#stop");
    await waitFor(page, () => document.getElementById("stage").dataset.state === "stopped", null, 20000, "stopped again");
    await phone.close();
  } finally {
    await browser.close();
  }
  return out;
}

// -- a session that is gone -----------------------------------------------------------------------
async function gone() {
  const browser = await launch(["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
    `--use-file-for-fake-audio-capture=${config.audio}`]);
  const out = { screenshots: [], errors: [] };
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 720 } });
    const display = await context.newPage();
    display.on("pageerror", (error) => out.errors.push("display: " + error.message));
    await display.goto(`${config.publisher}/v1/sessions/${config.sid}/display?token=${config.readToken}`);
    await waitFor(display, () => window.wspDisplay.state() === "live", null, 15000, "a live display");
    const micPage = await context.newPage();
    micPage.on("pageerror", (error) => out.errors.push("mic: " + error.message));
    await micPage.setViewportSize({ width: 1280, height: 900 });
    await micPage.goto(`${config.ingest}/?session=${config.sid}&token=${config.audioToken}&read=${config.readToken}`);
    await waitFor(micPage, () => !document.getElementById("start").disabled, null, 10000, "Start enabled");
    await micPage.click("#start");
    await waitFor(micPage, () => document.getElementById("stage").dataset.state === "live", null, 20000, "streaming");
    await waitFor(display, () => document.querySelectorAll("#lines .line").length > 0, null, 30000, "captions");

    // the caption server goes away: the captions on screen are dimmed, not blanked
    await ask("kill-publisher");
    await waitFor(display, () => window.wspDisplay.state() === "reconnecting", null, 10000, "reconnecting");
    await display.bringToFront();
    await sleep(2600);
    out.dimmed = await display.evaluate(() => ({
      opacity: Number(getComputedStyle(document.getElementById("captions")).opacity),
      lines: document.querySelectorAll("#lines .line").length,
    }));
    out.screenshots.push(await shot(display, "display-stale-dimmed"));

    // it comes back without the session's data (a restart that lost Redis)
    await ask("lose-data");
    await waitFor(display, () => window.wspDisplay.state() === "gone", null, 20000, "the display saying the session is gone");
    out.display = await display.evaluate(() => ({
      state: window.wspDisplay.state(),
      message: document.getElementById("message").innerText,
      opacity: Number(getComputedStyle(document.getElementById("captions")).opacity),
    }));
    out.screenshots.push(await shot(display, "display-session-gone"));
    await waitFor(micPage, () => /no longer on the server/.test(document.getElementById("mic-error").innerText), null,
      30000, "the mic page saying the session is gone");
    out.mic = await micPage.evaluate(() => ({
      error: document.getElementById("mic-error").innerText,
      status: document.getElementById("mic-status").innerText,
      stage: document.getElementById("stage").dataset.state,
      start: document.getElementById("start").disabled,
      newSession: document.getElementById("new-session").disabled,
    }));
    out.screenshots.push(await shot(micPage, "mic-session-gone"));

    // a stranger's link to a session this browser never read is still "token refused"
    const fresh = await browser.newContext();
    const stranger = await fresh.newPage();
    await stranger.goto(`${config.publisher}/v1/sessions/${config.sid}/display?token=${config.readToken}`);
    await sleep(3000);
    out.stranger = await stranger.evaluate(() => ({
      state: window.wspDisplay.state(),
      message: document.getElementById("message").innerText,
    }));
    await fresh.close();
  } finally {
    await browser.close();
  }
  return out;
}

const scenarios = { pacing, mic, gone };
try {
  const result = await scenarios[config.scenario]();
  process.stdout.write(JSON.stringify({ event: "result", ok: true, result }) + "\n");
  process.exit(0);
} catch (error) {
  const message = String(error && error.stack ? error.stack : error);
  process.stdout.write(JSON.stringify({ event: "result", ok: false, error: message }) + "\n");
  process.exit(1);
}
