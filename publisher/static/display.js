// Caption display: reads the session's captions WebSocket and shows final text in lines made for
// reading (publisher/static/layout.js), released at a readable pace, with each sentence of the first
// track paired with its translation.
//
// URL: /v1/sessions/{sid}/display?token=READ_TOKEN&tracks=ja,en&size=7&lines=3&theme=dark
//   mode      stage (a fixed number of lines at the bottom) | phone (the whole screen, the whole session
//             so far, scrolled by the reader)
//   size      text size (1-30, default 7: 7 % of the screen height on a landscape screen)
//   lines     visible lines of final text (1-12; default 3, 5 with two tracks)
//   chars     characters per line of the first track (default: Japanese 18, English 40; never more
//             than fit the width)
//   hold      seconds a line stays on screen at least (1-15, default 4)
//   theme     dark | light | chroma (green key colour) | transparent (OBS)
//   bg, fg    background / text colour (any CSS colour: 00b140, %2300b140, black)
//   box=1     a dark box behind the caption lines only      outline=1 outlined text (chroma, transparent)
//   tracks    which tracks (default: every track of the session, the spoken language first)
//   pair      stack (each sentence above its translation) | side (side by side)
//   align     left | center        pos    bottom | top | center
//   partial   1 shows the text not yet laid out and the unstable tail in a row of its own (default on
//             a stage screen; off for phone, chroma and transparent)
//   title=0   no session title     indicator=0 no connection dot     controls=0 no buttons
// Keys: f fullscreen, + / - size, up / down lines, t theme. The page reconnects by itself with
// since=<last final per track>, so a display that lost its connection misses nothing.
"use strict";

(() => {
  const Layout = window.WspLayout;
  const THEMES = ["dark", "light", "chroma", "transparent"];
  const KEYED = new Set(["chroma", "transparent"]);
  const FATAL_CLOSE = new Set([4400, 4401, 4403, 4404]);
  const TICK_MS = 200; // how often lines are laid out and released
  const PREVIEW_MS = 600; // the preview row changes at most this often
  const HISTORY_AGE_S = 8; // a final older than this on arrival is history: laid out at once, unpaced
  const PAIR_WAIT_MS = 6000; // a translation line waits this long at most for its sentence to appear
  const BLOCK_LINES = 3; // a sentence block of the first track holds at most this many lines
  const KEEP_BLOCKS = { stage: 40, phone: 4000 };
  const KEEP_FINALS = 5000; // per track, for `window.wspDisplay` (diagnostics and tests)
  const KEEP_SHOWN = 5000;
  const RETRY_MIN_MS = 500;
  const RETRY_MAX_MS = 5000;
  const GONE_RETRY_MS = 30000; // a session that is gone is asked for again this often
  const CONTROLS_IDLE_MS = 3000;
  const MAX_WAIT_MS = 5000; // lines queued longer than this are released faster, to catch up
  const CATCH_UP_ON_SCREEN_MS = 2000; // ... but even then a line stays on screen this long
  const SEEN_KEY = "wsp-display-seen:"; // localStorage: sessions this browser has read with this token

  const root = document.documentElement;
  const body = document.body;
  const captionsEl = document.getElementById("captions");
  const linesEl = document.getElementById("lines");
  const previewEl = document.getElementById("preview");
  const titleEl = document.getElementById("title");
  const followEl = document.getElementById("follow");
  const messageEl = document.getElementById("message");
  const indicatorLabel = document.querySelector("#indicator .label");
  const controlsEl = document.getElementById("controls");

  // -- options --------------------------------------------------------------------------------------
  const params = new URLSearchParams(location.search);
  const clamp = (value, low, high, fallback) => {
    if (value === null || value.trim() === "") return fallback;
    const n = Number(value);
    return Number.isFinite(n) ? Math.min(high, Math.max(low, n)) : fallback;
  };
  const colour = (value) => {
    if (!value) return null;
    const candidates = [value, "#" + value];
    return candidates.find((c) => CSS.supports("color", c)) || null;
  };
  const flag = (name, fallback) => (params.has(name) ? !["0", "false", "no", "off"].includes(params.get(name)) : fallback);
  const mode = params.get("mode") === "phone" ? "phone" : "stage";
  const theme = THEMES.includes(params.get("theme")) ? params.get("theme") : "dark";
  const opts = {
    token: params.get("token") || "",
    tracks: (params.get("tracks") || "").split(",").map((t) => t.trim()).filter(Boolean),
    mode,
    size: clamp(params.get("size"), 1, 30, 7),
    lines: params.has("lines") ? Math.round(clamp(params.get("lines"), 1, 12, 3)) : null,
    chars: params.has("chars") ? Math.round(clamp(params.get("chars"), 4, 80, 18)) : null,
    hold: clamp(params.get("hold"), 1, 15, 4),
    theme,
    bg: colour(params.get("bg")),
    fg: colour(params.get("fg")),
    align: params.get("align") === "center" ? "center" : "left",
    pos: ["top", "center"].includes(params.get("pos")) ? params.get("pos") : "bottom",
    pair: params.get("pair") === "side" ? "side" : "stack",
    partial: flag("partial", mode === "stage" && !KEYED.has(theme)),
    box: flag("box", false),
    outline: flag("outline", KEYED.has(theme)),
    title: flag("title", !KEYED.has(theme)),
    indicator: flag("indicator", true),
    controls: flag("controls", true),
  };

  const visibleLines = () => opts.lines || (order().length > 1 ? 5 : 3);

  function applyOptions() {
    root.className = "";
    root.classList.add("theme-" + opts.theme, "mode-" + opts.mode, "align-" + opts.align, "pos-" + opts.pos,
      "pair-" + opts.pair);
    if (!opts.indicator) root.classList.add("no-indicator");
    if (opts.box) root.classList.add("box");
    if (opts.outline) root.classList.add("outline");
    const style = root.style;
    style.setProperty("--size", String(opts.size));
    style.setProperty("--lines", String(visibleLines()));
    if (opts.bg) style.setProperty("--bg", opts.bg);
    else style.removeProperty("--bg");
    if (opts.fg) style.setProperty("--fg", opts.fg);
    else style.removeProperty("--fg");
    previewEl.hidden = !opts.partial || opts.mode === "phone";
    titleEl.hidden = !(opts.title && titleEl.textContent);
    measure();
  }

  function optionsUrl() {
    const url = new URL(location.href);
    const set = (name, value, fallback) => {
      if (value === fallback) url.searchParams.delete(name);
      else url.searchParams.set(name, String(value));
    };
    set("size", opts.size, 7);
    set("lines", opts.lines, null);
    set("theme", opts.theme, "dark");
    return url.toString();
  }

  function remember() {
    history.replaceState(null, "", optionsUrl());
  }

  // -- tracks: finals in, lines out -------------------------------------------------------------------
  class Track {
    constructor(name) {
      this.name = name;
      this.composer = new Layout.LineComposer(name, {});
      this.lastSeq = 0;
      this.finals = [];
      this.partial = "";
      this.ended = false;
      this.waiting = []; // lines of a second track waiting for their sentence: {line, since}
    }

    get spaced() {
      return !Layout.UNSPACED.has(this.name.split("-")[0]);
    }
  }

  const tracks = new Map();
  function track(name) {
    let t = tracks.get(name);
    if (!t) {
      t = new Track(name);
      tracks.set(name, t);
      measure();
      root.style.setProperty("--lines", String(visibleLines()));
    }
    return t;
  }

  /** Tracks in display order: the requested order, else the spoken language first and English after. */
  function order() {
    const rank = (n) => {
      const i = opts.tracks.indexOf(n);
      return i >= 0 ? i : n === "en" ? 100 : 50;
    };
    return [...tracks.values()].sort((a, b) => rank(a.name) - rank(b.name));
  }

  // -- widths: how many characters fit on a line -----------------------------------------------------
  const ruler = document.createElement("canvas").getContext("2d");
  function charWidth(fontPx, spaced) {
    if (!spaced) return fontPx; // CJK characters are one em wide
    ruler.font = "700 " + fontPx + "px " + getComputedStyle(body).fontFamily;
    const sample = "the quick brown fox jumps over the lazy dog, THANK YOU for coming tonight";
    return ruler.measureText(sample).width / sample.length;
  }

  function measure() {
    if (!tracks.size) return;
    const fontPx = parseFloat(getComputedStyle(captionsEl).fontSize) || 16;
    let width = linesEl.clientWidth || window.innerWidth;
    if (opts.pair === "side" && tracks.size > 1) width = (width - 1.2 * fontPx) / 2;
    order().forEach((t, index) => {
      const px = index === 0 ? fontPx : fontPx * (opts.pair === "side" ? 0.8 : 0.85);
      const fit = Math.floor((width - 2) / charWidth(px, t.spaced));
      if (index === 0 && opts.chars) {
        t.composer.options.userTarget = opts.chars;
        t.composer.options.userMax = opts.chars + 2;
      }
      t.composer.setWidth(fit);
    });
  }

  // -- the screen: blocks of lines, each a sentence of the first track and its translation ----------
  const blocks = [];
  const pacer = new Layout.Pacer(opts.hold * 1000, MAX_WAIT_MS, CATCH_UP_ON_SCREEN_MS);
  const shown = []; // every line put on screen: {track, text, at} (diagnostics and tests)
  let catchingUp = false;

  function setPacing() {
    // with N lines visible a line leaves the screen N lines after it came: N x interval >= hold
    const rows = opts.mode === "phone" ? Math.max(4, Math.floor(window.innerHeight / lineHeightPx())) : visibleLines();
    pacer.intervalMs = (opts.hold * 1000) / rows;
    pacer.floorMs = Math.min(pacer.intervalMs, CATCH_UP_ON_SCREEN_MS / rows);
  }

  function lineHeightPx() {
    return (parseFloat(getComputedStyle(captionsEl).fontSize) || 16) * 1.4;
  }

  function span(text) {
    const s = document.createElement("span");
    s.textContent = text;
    return s;
  }

  function newBlock(line) {
    const el = document.createElement("div");
    el.className = "block";
    const first = document.createElement("div");
    first.className = "first";
    first.lang = order()[0].name;
    first.dataset.track = order()[0].name;
    el.appendChild(first);
    const block = { sentence: line.sentence, start: line.start, end: line.end, lines: 0, el, first, seconds: new Map() };
    blocks.push(block);
    const keep = KEEP_BLOCKS[opts.mode];
    while (blocks.length > keep) blocks.shift().el.remove();
    return block;
  }

  function followed() {
    return opts.mode === "phone" && window.scrollY + window.innerHeight >= document.documentElement.scrollHeight - 48;
  }

  function showLine(trackName, line, now) {
    const atBottom = followed();
    let block = blocks[blocks.length - 1];
    if (!block || block.sentence !== line.sentence || block.lines >= BLOCK_LINES) block = newBlock(line);
    const p = document.createElement("p");
    p.className = "line";
    p.appendChild(span(line.text));
    block.first.appendChild(p);
    block.lines += 1;
    if (line.start !== null && (block.start === null || line.start < block.start)) block.start = line.start;
    if (line.end !== null && (block.end === null || line.end > block.end)) block.end = line.end;
    if (!block.el.isConnected) linesEl.appendChild(block.el);
    record(trackName, line.text, now);
    afterAppend(atBottom);
  }

  function showSecond(t, line, block, now) {
    const atBottom = followed();
    let el = block.seconds.get(t.name);
    if (!el) {
      el = document.createElement("div");
      el.className = "second";
      el.lang = t.name;
      el.dataset.track = t.name;
      block.el.appendChild(el);
      block.seconds.set(t.name, el);
    }
    // a line of its own, laid out to fit: what is already there never re-wraps
    const p = document.createElement("p");
    p.className = "line";
    p.appendChild(span(line.text));
    el.appendChild(p);
    record(t.name, line.text, now);
    afterAppend(atBottom);
  }

  function record(trackName, text, now) {
    shown.push({ track: trackName, text, at: now });
    if (shown.length > KEEP_SHOWN) shown.splice(0, shown.length - KEEP_SHOWN);
  }

  function afterAppend(atBottom) {
    if (opts.mode !== "phone") return;
    if (atBottom) window.scrollTo(0, document.documentElement.scrollHeight);
    else followEl.hidden = false;
  }

  /** Lines of a second track, once paired with the sentence they translate, go into the pacer. */
  function pairSeconds(t, now, all) {
    const first = order()[0];
    const spans = blocks.map((b) => ({ start: b.start, end: b.end }));
    const reached = blocks.length ? blocks[blocks.length - 1].end : null;
    while (t.waiting.length) {
      const { line, since } = t.waiting[0];
      // wait until the first track has shown the audio this line covers
      const behind = reached === null || (line.end !== null && reached < line.end - 0.5);
      if (!all && behind && !first.ended && now - since < PAIR_WAIT_MS) break;
      const index = Layout.pairIndex(spans, line.start, line.end);
      if (index < 0) break;
      t.waiting.shift();
      pacer.push({ track: t, line, block: blocks[index] }, now);
    }
  }

  let lastPreview = -Infinity;
  function updatePreview(now) {
    if (previewEl.hidden || now - lastPreview < PREVIEW_MS) return;
    const first = order()[0];
    if (!first) return;
    const waiting = pacer.queue.filter((q) => q.item.track === first).map((q) => q.item.line.text);
    const pending = [...waiting, first.composer.pending()].filter(Boolean);
    let finalText = pending.reduce((a, b) => Layout.joinPiece(a, b, first.spaced), "");
    let partial = opts.partial ? first.partial : "";
    const fit = first.composer.options.max + 2;
    // show the end of it: the newest words
    const total = finalText.length + (partial ? partial.length + 1 : 0);
    if (total > fit) {
      let drop = total - fit;
      const cut = Math.min(drop, finalText.length);
      finalText = finalText.slice(cut);
      drop -= cut;
      partial = partial.slice(drop);
    }
    const next = finalText + "\u0000" + partial;
    if (previewEl.dataset.text === next) return;
    previewEl.dataset.text = next;
    lastPreview = now;
    const finalSpan = span(finalText);
    finalSpan.className = "pending";
    const partialSpan = span(partial ? (finalText && first.spaced ? " " : "") + partial : "");
    partialSpan.className = "partial";
    previewEl.replaceChildren(finalSpan, partialSpan);
  }

  let historyTick = null;
  function tick() {
    historyTick = null;
    const now = performance.now();
    const list = order();
    if (!list.length) return;
    const [first, ...others] = list;
    for (const line of first.composer.take(now, catchingUp || first.ended)) pacer.push({ track: first, line }, now);
    for (const t of others) {
      for (const line of t.composer.take(now, catchingUp || t.ended)) t.waiting.push({ line, since: now });
      pairSeconds(t, now, catchingUp);
    }
    // one line at a time, whichever track it belongs to: every line on screen stays long enough to read
    for (const item of pacer.release(now, catchingUp)) {
      if (item.block) showSecond(item.track, item.line, item.block, now);
      else showLine(item.track.name, item.line, now);
    }
    catchingUp = false;
    updatePreview(now);
  }

  // -- connection -----------------------------------------------------------------------------------
  const match = location.pathname.match(/^(.*\/v1\/sessions\/)([^/]+)\/display\/?$/);
  const sessionId = match ? decodeURIComponent(match[2]) : "";
  let socket = null;
  let retryMs = RETRY_MIN_MS;
  let attempts = 0;
  let state = "connecting";
  let titleAsked = false;

  function setState(next, label) {
    state = next;
    body.dataset.state = next;
    indicatorLabel.textContent = label || next;
    document.getElementById("indicator").title = "Connection: " + (label || next);
  }

  function showMessage(text) {
    messageEl.textContent = text;
    messageEl.hidden = !text;
  }

  function seenKey() {
    // a digest of the token, not the token itself
    let h = 2166136261;
    for (const c of opts.token) h = Math.imul(h ^ c.charCodeAt(0), 16777619) >>> 0;
    return SEEN_KEY + sessionId + ":" + h.toString(36);
  }

  function seen() {
    try {
      return localStorage.getItem(seenKey()) === "1";
    } catch {
      return false;
    }
  }

  function markSeen() {
    try {
      localStorage.setItem(seenKey(), "1");
    } catch {
      // storage disabled: the page just cannot tell a lost session from a wrong link later
    }
  }

  function sessionBase() {
    return location.origin + match[1] + encodeURIComponent(sessionId);
  }

  function captionsUrl() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const url = new URL(scheme + "//" + location.host + match[1] + encodeURIComponent(sessionId) + "/captions");
    if (opts.token) url.searchParams.set("token", opts.token);
    if (opts.tracks.length) url.searchParams.set("tracks", opts.tracks.join(","));
    const since = [...tracks.values()].filter((t) => t.lastSeq > 0).map((t) => t.name + ":" + t.lastSeq);
    if (since.length) url.searchParams.set("since", since.join(","));
    return url.toString();
  }

  /** The session's title, from its record; a record read with this token also marks the session seen. */
  async function loadTitle() {
    if (titleAsked) return;
    titleAsked = true;
    try {
      const url = new URL(sessionBase() + "/record");
      if (opts.token) url.searchParams.set("token", opts.token);
      const response = await fetch(url);
      if (!response.ok) return;
      markSeen(); // the token opened the session: a later refusal means the session is gone
      const record = await response.json();
      const title = String(record.title || "").trim();
      titleEl.textContent = title;
      if (title) document.title = title + " · live captions";
      titleEl.hidden = !(opts.title && title);
    } catch {
      titleAsked = false; // ask again after the next connection
    }
  }

  function onEvent(event, now) {
    const t = track(event.track);
    if (event.type === "final") {
      if (event.seq <= t.lastSeq) return; // already shown before a reconnect
      t.lastSeq = event.seq;
      t.finals.push({ seq: event.seq, text: event.text, start: event.start, end: event.end });
      if (t.finals.length > KEEP_FINALS) t.finals.splice(0, t.finals.length - KEEP_FINALS);
      if (typeof event.emitted_at === "number" && event.emitted_at < Date.now() / 1000 - HISTORY_AGE_S) {
        catchingUp = true;
      }
      t.composer.add(event, now);
      t.partial = stripPrefix(t.partial, event.text || "");
    } else if (event.type === "partial") {
      t.partial = (event.text || "").trim();
    } else if (event.type === "skip") {
      t.composer.add({ text: t.spaced ? "…" : "……", start: event.start, end: event.end }, now);
    } else if (event.type === "end") {
      t.ended = true;
      t.partial = "";
    }
  }

  function connect() {
    attempts += 1;
    let fatal = null;
    let ended = false;
    const ws = new WebSocket(captionsUrl());
    socket = ws;
    ws.onopen = () => {
      attempts = 0;
      retryMs = RETRY_MIN_MS;
      setState("live", "live");
      showMessage("");
      loadTitle();
    };
    ws.onmessage = (message) => {
      let event;
      try {
        event = JSON.parse(message.data);
      } catch {
        return;
      }
      if (event.type === "error") {
        fatal = event;
        return;
      }
      if (!fatal && tracks.size === 0) markSeen();
      onEvent(event, performance.now());
      if (catchingUp && !historyTick) historyTick = setTimeout(tick, 0); // history shows at once
      ended = tracks.size > 0 && [...tracks.values()].every((x) => x.ended);
    };
    ws.onclose = (close) => {
      if (socket !== ws) return;
      socket = null;
      for (const t of tracks.values()) t.partial = "";
      if (ended || (close.code === 1000 && close.reason === "session ended")) {
        tick(); // what the end flushed goes on screen before the page says it ended
        setState("ended", "session ended");
        return;
      }
      if (FATAL_CLOSE.has(close.code)) {
        const why = fatal ? fatal.message : close.reason || "the caption server refused this display";
        if ((close.code === 4401 || close.code === 4404) && seen()) {
          // this link worked before, and tokens never change: the session itself is gone
          setState("gone", "session gone");
          showMessage("This session has ended or the caption server lost its data: its captions are no " +
            "longer available. The screen will pick them up again if the server gets them back; " +
            "otherwise ask the operator for a new display link.");
          setTimeout(connect, GONE_RETRY_MS);
          return;
        }
        setState("error", "refused");
        showMessage(refusalText(close.code, why));
        return;
      }
      const wait = retryMs;
      retryMs = Math.min(RETRY_MAX_MS, retryMs * 2);
      setState("reconnecting", attempts > 2 ? "caption server unreachable, retrying" : "reconnecting");
      setTimeout(connect, wait);
    };
  }

  function refusalText(code, why) {
    if (code === 4401) {
      return "This display link's token was refused (" + why + "). Ask the operator for the current display link.";
    }
    if (code === 4404) return "No such session (" + why + "). Check the display link.";
    return "The caption server refused this display: " + why;
  }

  function stripPrefix(partial, final) {
    const squash = (s) => s.replace(/\s+/g, "");
    if (!partial || !final) return partial;
    const p = squash(partial);
    const f = squash(final);
    if (!p.startsWith(f)) return "";
    let kept = 0;
    let i = 0;
    while (i < partial.length && kept < f.length) {
      if (!/\s/.test(partial[i])) kept++;
      i++;
    }
    return partial.slice(i).trim();
  }

  // -- controls -------------------------------------------------------------------------------------
  async function toggleFullscreen() {
    try {
      if (document.fullscreenElement) await document.exitFullscreen();
      else await document.documentElement.requestFullscreen();
    } catch (error) {
      showMessage("Fullscreen is not available here: " + error.message);
    }
  }

  async function copyLink() {
    const link = optionsUrl();
    try {
      await navigator.clipboard.writeText(link);
      setState(state, "link copied");
      setTimeout(() => setState(state), 1500);
    } catch {
      window.prompt("Copy this link:", link);
    }
  }

  const actions = {
    smaller: () => { opts.size = Math.max(1, Math.round((opts.size - 0.5) * 2) / 2); },
    larger: () => { opts.size = Math.min(30, Math.round((opts.size + 0.5) * 2) / 2); },
    fewer: () => { opts.lines = Math.max(1, visibleLines() - 1); },
    more: () => { opts.lines = Math.min(12, visibleLines() + 1); },
    theme: () => {
      opts.theme = THEMES[(THEMES.indexOf(opts.theme) + 1) % THEMES.length];
      opts.bg = null;
      opts.outline = KEYED.has(opts.theme);
    },
    fullscreen: toggleFullscreen,
    link: copyLink,
  };

  function act(name) {
    const action = actions[name];
    if (!action) return;
    const result = action();
    if (!["fullscreen", "link"].includes(name)) {
      applyOptions();
      setPacing();
      remember();
    }
    return result;
  }

  controlsEl.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action]");
    if (button) act(button.dataset.action);
  });

  const keyActions = { f: "fullscreen", "+": "larger", "=": "larger", "-": "smaller", ArrowUp: "more",
    ArrowDown: "fewer", t: "theme" };
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const name = keyActions[event.key];
    if (name) {
      event.preventDefault();
      act(name);
    }
  });
  document.addEventListener("dblclick", toggleFullscreen);

  let idleTimer = null;
  function wake() {
    body.classList.remove("hide-cursor");
    if (opts.controls) controlsEl.hidden = false;
    clearTimeout(idleTimer);
    idleTimer = setTimeout(() => {
      controlsEl.hidden = true;
      body.classList.add("hide-cursor");
    }, CONTROLS_IDLE_MS);
  }
  for (const name of ["mousemove", "touchstart", "keydown"]) document.addEventListener(name, wake);

  followEl.addEventListener("click", () => {
    window.scrollTo(0, document.documentElement.scrollHeight);
    followEl.hidden = true;
  });
  window.addEventListener("scroll", () => {
    if (followed()) followEl.hidden = true;
  });
  window.addEventListener("resize", () => {
    measure();
    setPacing();
  });

  // -- start ----------------------------------------------------------------------------------------
  for (const name of opts.tracks) track(name);
  applyOptions();
  setPacing();
  setInterval(tick, TICK_MS);
  window.wspDisplay = {
    state: () => state,
    options: () => ({ ...opts, lines: visibleLines() }),
    tracks: () => Object.fromEntries([...tracks.values()].map((t) => [t.name, {
      lastSeq: t.lastSeq, ended: t.ended, finals: t.finals.slice(), partial: t.partial,
      maxChars: t.composer.options.max,
    }])),
    shown: () => shown.slice(),
    blocks: () => blocks.map((b) => ({
      first: b.first.innerText.replace(/\n/g, ""), start: b.start, end: b.end,
      seconds: Object.fromEntries([...b.seconds].map(([name, el]) => [name, el.innerText.replace(/\s+/g, " ").trim()])),
    })),
  };
  if (!match || !sessionId) {
    setState("error", "bad link");
    showMessage("This is not a display link: it should look like /v1/sessions/<session id>/display?token=…");
  } else {
    connect();
  }
})();
