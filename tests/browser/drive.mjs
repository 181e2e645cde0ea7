// Drives the microphone and display pages in headless Chromium for tests/test_browser.py.
//
//   node drive.mjs '<JSON config>'
//
// Talks to pytest with JSON lines: {"event": "ask", "what": "..."} on stdout is answered by one line on
// stdin once pytest has done it (kill or restart a service); the last line is {"event": "result", ...}.
// Scenarios: "live" (the fake microphone plays a WAV into a new session, two displays show the captions)
// and "refusals" (bad input: wrong ids and tokens, permission denied, no microphone, servers down).
import { createInterface } from "node:readline";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const config = JSON.parse(process.argv[2]);
mkdirSync(config.artifacts, { recursive: true });

const BASE_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--autoplay-policy=no-user-gesture-required",
];

const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

function say(event) {
  process.stdout.write(JSON.stringify(event) + "\n");
}

async function ask(what) {
  say({ event: "ask", what });
  const answer = await lines.next();
  if (answer.done || answer.value.trim() !== "done") throw new Error(`pytest did not do ${what}: ${answer.value}`);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function launch(extra) {
  return chromium.launch({
    executablePath: config.chromium,
    headless: true,
    args: [...BASE_ARGS, ...extra],
    timeout: 60000,
  });
}

async function shot(page, name) {
  const path = join(config.artifacts, name + ".png");
  await page.screenshot({ path });
  return path;
}

async function displayReport(page) {
  return page.evaluate(() => ({
    state: window.wspDisplay.state(),
    tracks: window.wspDisplay.tracks(),
    visible: Object.fromEntries([...document.querySelectorAll("[data-track]")].map((el) => [el.dataset.track, el.innerText])),
    message: document.getElementById("message").hidden ? "" : document.getElementById("message").innerText,
    label: document.querySelector("#indicator .label").innerText,
  }));
}

// Records each display's distinct connection states while the scenario runs.
function watchStates(pages) {
  const seen = pages.map(() => []);
  let running = true;
  const sample = async () => {
    for (let i = 0; i < pages.length; i++) {
      try {
        const state = await pages[i].evaluate(() => window.wspDisplay && window.wspDisplay.state());
        if (state && seen[i][seen[i].length - 1] !== state) seen[i].push(state);
      } catch {
        // the page is navigating
      }
    }
  };
  const loop = (async () => {
    while (running) {
      await sample();
      await sleep(100);
    }
  })();
  return { seen, stop: async () => { running = false; await loop; await sample(); } };
}

async function waitFor(page, predicate, arg, timeoutMs, what) {
  try {
    await page.waitForFunction(predicate, arg, { timeout: timeoutMs, polling: 100 });
  } catch (error) {
    throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
  }
}

// -- scenario: live captions from the fake microphone ------------------------------------------------
async function live() {
  const browser = await launch([
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    `--use-file-for-fake-audio-capture=${config.audio}`,
  ]);
  const result = { screenshots: [] };
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const mic = await context.newPage();
    const errors = [];
    mic.on("pageerror", (error) => errors.push("mic: " + error.message));
    await mic.goto(config.ingest + "/");
    await mic.uncheck("#track-translate");
    await mic.fill("#title", "Browser test");
    await mic.click("#create");
    await waitFor(mic, () => document.querySelectorAll("#link-list input").length > 0, null, 15000, "display links");
    const links = await mic.$$eval("#link-list input", (inputs) => inputs.map((i) => i.value));
    result.links = links;
    result.session = await mic.evaluate(() => window.wspMic.session());

    const stage = await context.newPage();
    await stage.setViewportSize({ width: 1280, height: 720 });
    stage.on("pageerror", (error) => errors.push("display: " + error.message));
    await stage.goto(links[0]);
    const phoneContext = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2 });
    const phone = await phoneContext.newPage();
    phone.on("pageerror", (error) => errors.push("phone: " + error.message));
    await phone.goto(links.find((l) => l.includes("theme=light")));
    const displays = [stage, phone];
    for (const page of displays) {
      await waitFor(page, () => window.wspDisplay.state() === "live", null, 15000, "a live display");
    }
    const watch = watchStates(displays);

    await mic.bringToFront();
    await mic.click("#start");
    const started = Date.now();
    await waitFor(mic, () => document.getElementById("stage").dataset.state === "live", null, 20000, "the mic page going live");
    result.micLiveAfterMs = Date.now() - started;
    await waitFor(stage, () => Object.values(window.wspDisplay.tracks()).some((t) => t.finals.length > 0), null,
      config.firstCaptionTimeoutMs, "a first caption on the display");
    result.firstCaptionAfterMs = Date.now() - started;

    // mid-stream: screenshots with partial text, then the publisher goes away and comes back
    await sleep(Math.max(0, config.restartAtMs - (Date.now() - started)));
    result.screenshots.push(await shot(mic, "mic-streaming"), await shot(stage, "display-stage-streaming"));
    const before = await displayReport(stage);
    result.finalsBeforeRestart = Object.values(before.tracks).reduce((n, t) => n + t.finals.length, 0);
    await ask("kill-publisher");
    await waitFor(stage, () => window.wspDisplay.state() === "reconnecting", null, 10000, "the display noticing");
    result.micStateWhilePublisherDown = await mic.evaluate(() => document.getElementById("stage").dataset.state);
    result.screenshots.push(await shot(stage, "display-stage-reconnecting"));
    await sleep(config.downMs);
    await ask("start-publisher");
    for (const page of displays) {
      await waitFor(page, () => window.wspDisplay.state() === "live", null, 20000, "the display reconnecting");
    }
    result.reconnectedAfterMs = Date.now() - started;

    await sleep(Math.max(0, config.stopAtMs - (Date.now() - started)));
    await mic.click("#stop");
    await waitFor(mic, () => document.getElementById("stage").dataset.state === "stopped", null, 20000, "the mic page stopping");
    for (const page of displays) {
      await waitFor(page, () => window.wspDisplay.state() === "ended", null, config.endTimeoutMs, "the session end on a display");
    }
    await watch.stop();
    result.stateHistory = watch.seen;
    result.displays = [await displayReport(stage), await displayReport(phone)];
    result.mic = await mic.evaluate(() => ({
      stage: document.getElementById("stage").dataset.state,
      status: document.getElementById("mic-status").innerText,
      captions: window.wspMic.captions(),
      error: document.getElementById("mic-error").hidden ? "" : document.getElementById("mic-error").innerText,
    }));
    result.screenshots.push(
      await shot(mic, "mic-stopped"),
      await shot(stage, "display-stage"),
      await shot(phone, "display-phone-light"),
    );
    // the same session as an OBS source: transparent, two lines, no indicator
    const obs = await context.newPage();
    await obs.setViewportSize({ width: 1280, height: 720 });
    await obs.goto(links.find((l) => l.includes("theme=transparent")));
    await waitFor(obs, () => window.wspDisplay.state() === "ended", null, 15000, "the OBS display replaying");
    result.screenshots.push(await shot(obs, "display-obs-transparent"));
    result.obs = await displayReport(obs);
    result.pageErrors = errors;
  } finally {
    await browser.close();
  }
  return result;
}

// -- scenario: refusals and failures the pages must explain --------------------------------------
async function refusals() {
  const out = {};
  const browser = await launch(["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]);
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
    const displayText = async (url) => {
      await page.goto(url);
      await waitFor(page, () => window.wspDisplay.state() === "error", null, 10000, "a refused display");
      return displayReport(page);
    };
    const base = `${config.publisher}/v1/sessions/${config.sid}/display`;
    out.displayWrongToken = await displayText(`${base}?token=not-the-token`);
    out.screenshots = [await shot(page, "display-wrong-token")];
    out.displayUnknownSession = await displayText(`${config.publisher}/v1/sessions/NoSuchSession0000000001/display?token=x`);
    out.displayUnknownTrack = await displayText(`${base}?token=${config.readToken}&tracks=fr`);

    const mic = async (query) => {
      await page.goto(`${config.ingest}/${query}`);
      await waitFor(page, () => !document.getElementById("session-error").hidden, null, 10000, "a session error");
      return page.$eval("#session-error", (el) => el.innerText);
    };
    out.micWrongSession = await mic("?session=NoSuchSession0000000001&token=x");
    out.micWrongToken = await mic(`?session=${config.sid}&token=not-the-token`);
    out.screenshots.push(await shot(page, "mic-wrong-token"));

    // a session the page can use: the microphone works here, so Start streams (checked by the live test)
    await page.goto(`${config.ingest}/?session=${config.sid}&token=${config.audioToken}&read=${config.readToken}`);
    await waitFor(page, () => !document.getElementById("start").disabled, null, 10000, "Start enabled");
    await waitFor(page, () => document.querySelectorAll("#link-list input").length > 0, null, 10000, "display links");
    out.micLinks = await page.$$eval("#link-list input", (inputs) => inputs.map((i) => i.value));
    out.micDownloads = await page.$$eval("#download-list a", (links) => links.map((a) => a.href));
  } finally {
    await browser.close();
  }

  // permission denied: no fake permission prompt, prompts are denied
  const denying = await launch(["--use-fake-device-for-media-stream", "--deny-permission-prompts"]);
  try {
    const page = await denying.newPage({ viewport: { width: 1280, height: 720 } });
    await page.goto(`${config.ingest}/?session=${config.sid}&token=${config.audioToken}&read=${config.readToken}`);
    await waitFor(page, () => !document.getElementById("start").disabled, null, 10000, "Start enabled");
    await page.click("#start");
    await waitFor(page, () => !document.getElementById("mic-error").hidden, null, 10000, "a microphone error");
    out.permissionDenied = await page.$eval("#mic-error", (el) => el.innerText);
    out.permissionDeniedStage = await page.$eval("#stage", (el) => el.dataset.state);
    out.screenshots.push(await shot(page, "mic-permission-denied"));
  } finally {
    await denying.close();
  }

  // no microphone at all: the prompt is accepted but there is no capture device
  const deviceless = await launch(["--use-fake-ui-for-media-stream"]);
  try {
    const page = await deviceless.newPage();
    await page.goto(`${config.ingest}/?session=${config.sid}&token=${config.audioToken}`);
    await waitFor(page, () => !document.getElementById("start").disabled, null, 10000, "Start enabled");
    await page.click("#start");
    await waitFor(page, () => !document.getElementById("mic-error").hidden, null, 10000, "a microphone error");
    out.noMicrophone = await page.$eval("#mic-error", (el) => el.innerText);
  } finally {
    await deviceless.close();
  }

  // servers down: the display keeps retrying and says so; the mic page explains
  const again = await launch(["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]);
  try {
    const display = await again.newPage({ viewport: { width: 1280, height: 720 } });
    await display.goto(`${config.publisher}/v1/sessions/${config.sid}/display?token=${config.readToken}`);
    await waitFor(display, () => window.wspDisplay.state() === "live", null, 10000, "a live display");
    const micPage = await again.newPage({ viewport: { width: 1280, height: 900 } });
    await micPage.goto(`${config.ingest}/?session=${config.sid}&token=${config.audioToken}&read=${config.readToken}`);
    await waitFor(micPage, () => !document.getElementById("start").disabled, null, 10000, "Start enabled");
    const createPage = await again.newPage(); // a page without a session: its form is open
    await createPage.goto(`${config.ingest}/`);
    await ask("kill-publisher");
    await ask("kill-ingest");
    await waitFor(display, () => /unreachable/.test(document.querySelector("#indicator .label").innerText), null,
      15000, "the display saying the server is unreachable");
    out.displayServerDown = await displayReport(display);
    out.screenshots.push(await shot(display, "display-server-down"));
    await micPage.click("#start");
    await waitFor(micPage, () => /Cannot reach/.test(document.getElementById("mic-status").innerText), null, 15000,
      "the mic page saying ingest is unreachable");
    out.micServerDown = await micPage.evaluate(() => ({
      stage: document.getElementById("stage").dataset.state,
      status: document.getElementById("mic-status").innerText,
    }));
    out.screenshots.push(await shot(micPage, "mic-server-down"));
    await createPage.click("#create");
    await waitFor(createPage, () => !document.getElementById("session-error").hidden, null, 10000, "a create error");
    out.micCreateServerDown = await createPage.$eval("#session-error", (el) => el.innerText);
  } finally {
    await again.close();
  }
  return out;
}

const scenarios = { live, refusals };
try {
  const result = await scenarios[config.scenario]();
  say({ event: "result", ok: true, result });
  process.exit(0);
} catch (error) {
  say({ event: "result", ok: false, error: String(error && error.stack ? error.stack : error) });
  process.exit(1);
}
