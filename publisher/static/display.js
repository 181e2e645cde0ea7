// Caption display: reads the session's captions WebSocket and shows the last lines of each track.
//
// URL: /v1/sessions/{sid}/display?token=READ_TOKEN&tracks=ja,en&size=7&lines=3&theme=dark
//   size      text size (1-30, default 7: 7 % of the screen height on a landscape screen)
//   lines     visible lines per track (1-12, default 3)
//   theme     dark | light | chroma (green key colour, outlined text) | transparent (OBS)
//   bg, fg    background / text colour (any CSS colour: 00b140, %2300b140, black)
//   tracks    which tracks, top to bottom (default: every track of the session, Japanese first)
//   align     left | center        pos    bottom | top | center
//   partial=0 hide the unstable tail   indicator=0 hide the connection dot   controls=0 no buttons
// Keys: f fullscreen, + / - size, up / down lines, t theme. The page reconnects by itself with
// since=<last final per track>, so a display that lost its connection misses nothing.
"use strict";

(() => {
  const THEMES = ["dark", "light", "chroma", "transparent"];
  const UNSPACED = new Set(["ja", "zh", "yue", "th", "lo", "my", "km", "bo"]);
  const SENTENCE_ENDS = new Set("。．！？!?.…‼⁇⁈⁉");
  const CLOSERS = new Set("\"'”’」』）)]}");
  const FATAL_CLOSE = new Set([4400, 4401, 4403, 4404]);
  const PAUSE_BREAK_S = 1.0; // a new line after a pause this long, for text without punctuation
  const KEEP_SENTENCES = 200; // per track, in memory and in the page
  const KEEP_FINALS = 5000; // per track, for `window.wspDisplay` (diagnostics and tests)
  const RETRY_MIN_MS = 500;
  const RETRY_MAX_MS = 5000;
  const CONTROLS_IDLE_MS = 3000;

  const body = document.body;
  const tracksEl = document.getElementById("tracks");
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
  const opts = {
    token: params.get("token") || "",
    tracks: (params.get("tracks") || "").split(",").map((t) => t.trim()).filter(Boolean),
    size: clamp(params.get("size"), 1, 30, 7),
    lines: Math.round(clamp(params.get("lines"), 1, 12, 3)),
    theme: THEMES.includes(params.get("theme")) ? params.get("theme") : "dark",
    bg: colour(params.get("bg")),
    fg: colour(params.get("fg")),
    align: params.get("align") === "center" ? "center" : "left",
    pos: ["top", "center"].includes(params.get("pos")) ? params.get("pos") : "bottom",
    partial: params.get("partial") !== "0",
    indicator: params.get("indicator") !== "0",
    controls: params.get("controls") !== "0",
  };

  function applyOptions() {
    body.className = "";
    body.classList.add("theme-" + opts.theme, "align-" + opts.align, "pos-" + opts.pos);
    if (!opts.indicator) body.classList.add("no-indicator");
    const style = document.documentElement.style;
    style.setProperty("--size", String(opts.size));
    style.setProperty("--lines", String(opts.lines));
    if (opts.bg) style.setProperty("--bg", opts.bg);
    else style.removeProperty("--bg");
    if (opts.fg) style.setProperty("--fg", opts.fg);
    else style.removeProperty("--fg");
  }

  function optionsUrl() {
    const url = new URL(location.href);
    const set = (name, value, fallback) => {
      if (value === fallback) url.searchParams.delete(name);
      else url.searchParams.set(name, String(value));
    };
    set("size", opts.size, 7);
    set("lines", opts.lines, 3);
    set("theme", opts.theme, "dark");
    return url.toString();
  }

  function remember() {
    history.replaceState(null, "", optionsUrl());
  }

  // -- one track's text: sentences, the open sentence, and the unstable tail ------------------------
  class Track {
    constructor(name, second) {
      this.name = name;
      this.spaced = !UNSPACED.has(name.split("-")[0]);
      this.sentences = [];
      this.open = "";
      this.partial = "";
      this.lastSeq = 0;
      this.lastEnd = null;
      this.finals = [];
      this.ended = false;
      this.el = document.createElement("section");
      this.el.className = "track" + (second ? " second" : "");
      this.el.lang = name;
      this.el.dataset.track = name;
      this.dirty = true;
    }

    join(left, right) {
      if (!left) return right;
      return this.spaced ? left + " " + right : left + right;
    }

    addFinal(event) {
      this.lastSeq = event.seq;
      this.finals.push({ seq: event.seq, text: event.text });
      if (this.finals.length > KEEP_FINALS) this.finals.splice(0, this.finals.length - KEEP_FINALS);
      const text = (event.text || "").trim();
      const paused = this.lastEnd !== null && event.start !== null && event.start - this.lastEnd >= PAUSE_BREAK_S;
      if (paused && this.open) {
        this.sentences.push(this.open);
        this.open = "";
      }
      if (event.end !== null && event.end !== undefined) this.lastEnd = event.end;
      if (text) this.append(text);
      this.partial = stripPrefix(this.partial, text);
      this.dirty = true;
    }

    append(text) {
      // split the new text after each sentence end (and the quotes or brackets that close it)
      let current = this.open;
      let start = 0;
      const pieces = [];
      for (let i = 0; i < text.length; i++) {
        if (!SENTENCE_ENDS.has(text[i])) continue;
        let j = i + 1;
        while (j < text.length && CLOSERS.has(text[j])) j++;
        const next = text[j];
        const decimal = text[i] === "." && /\d/.test(text[i - 1] || "") && /\d/.test(next || "");
        if (decimal || (this.spaced && next !== undefined && !/\s/.test(next))) continue;
        pieces.push(text.slice(start, j));
        start = j;
        i = j - 1;
      }
      const rest = text.slice(start).trim();
      for (const piece of pieces) {
        this.sentences.push(this.join(current, piece.trim()));
        current = "";
      }
      this.open = rest ? this.join(current, rest) : current;
      if (this.sentences.length > KEEP_SENTENCES) {
        this.sentences.splice(0, this.sentences.length - KEEP_SENTENCES);
      }
    }

    setPartial(text) {
      this.partial = (text || "").trim();
      this.dirty = true;
    }

    skip() {
      this.append(this.spaced ? "… " : "…");
      this.dirty = true;
    }

    render() {
      if (!this.dirty) return;
      this.dirty = false;
      const fragment = document.createDocumentFragment();
      const shown = this.sentences.slice(-Math.max(20, opts.lines * 6));
      for (const sentence of shown) {
        const p = document.createElement("p");
        p.textContent = sentence;
        fragment.appendChild(p);
      }
      const tail = opts.partial ? this.partial : "";
      if (this.open || tail) {
        const p = document.createElement("p");
        p.className = "open";
        p.textContent = this.open;
        if (tail) {
          const span = document.createElement("span");
          span.className = "partial";
          span.textContent = this.open && this.spaced ? " " + tail : tail;
          p.appendChild(span);
        }
        fragment.appendChild(p);
      }
      this.el.replaceChildren(fragment);
    }
  }

  function stripPrefix(partial, final) {
    const squash = (s) => s.replace(/\s+/g, "");
    if (!partial || !final) return partial;
    const p = squash(partial);
    const f = squash(final);
    if (!p.startsWith(f)) return "";
    // drop as many characters of the partial as the final covers (ignoring spaces)
    let kept = 0;
    let i = 0;
    while (i < partial.length && kept < f.length) {
      if (!/\s/.test(partial[i])) kept++;
      i++;
    }
    return partial.slice(i).trim();
  }

  const tracks = new Map();

  function track(name) {
    let t = tracks.get(name);
    if (t) return t;
    t = new Track(name, false);
    tracks.set(name, t);
    // requested order first; otherwise the spoken language above English
    const order = (n) => {
      const i = opts.tracks.indexOf(n);
      return i >= 0 ? i : n === "en" ? 100 : 50;
    };
    const sorted = [...tracks.values()].sort((a, b) => order(a.name) - order(b.name));
    sorted.forEach((item, index) => {
      item.el.classList.toggle("second", index > 0);
      tracksEl.appendChild(item.el);
    });
    return t;
  }

  let renderQueued = false;
  function scheduleRender() {
    if (renderQueued) return;
    renderQueued = true;
    requestAnimationFrame(() => {
      renderQueued = false;
      for (const t of tracks.values()) t.render();
    });
  }

  // -- connection -----------------------------------------------------------------------------------
  const match = location.pathname.match(/^(.*\/v1\/sessions\/)([^/]+)\/display\/?$/);
  const sessionId = match ? decodeURIComponent(match[2]) : "";
  let socket = null;
  let retryMs = RETRY_MIN_MS;
  let retryTimer = null;
  let attempts = 0;
  let state = "connecting";

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

  function captionsUrl() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const url = new URL(scheme + "//" + location.host + match[1] + encodeURIComponent(sessionId) + "/captions");
    if (opts.token) url.searchParams.set("token", opts.token);
    if (opts.tracks.length) url.searchParams.set("tracks", opts.tracks.join(","));
    const since = [...tracks.values()].filter((t) => t.lastSeq > 0).map((t) => t.name + ":" + t.lastSeq);
    if (since.length) url.searchParams.set("since", since.join(","));
    return url.toString();
  }

  function connect() {
    retryTimer = null;
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
      const t = track(event.track);
      if (event.type === "final") {
        if (event.seq <= t.lastSeq) return; // already shown before a reconnect
        t.addFinal(event);
      } else if (event.type === "partial") {
        t.setPartial(event.text);
      } else if (event.type === "skip") {
        t.skip();
      } else if (event.type === "end") {
        t.ended = true;
        t.setPartial("");
        ended = [...tracks.values()].every((x) => x.ended);
      }
      scheduleRender();
    };
    ws.onclose = (close) => {
      if (socket !== ws) return;
      socket = null;
      for (const t of tracks.values()) t.setPartial("");
      scheduleRender();
      if (ended || (close.code === 1000 && close.reason === "session ended")) {
        setState("ended", "session ended");
        return;
      }
      if (FATAL_CLOSE.has(close.code)) {
        const why = fatal ? fatal.message : close.reason || "the caption server refused this display";
        setState("error", "refused");
        showMessage(refusalText(close.code, why));
        return;
      }
      const wait = retryMs;
      retryMs = Math.min(RETRY_MAX_MS, retryMs * 2);
      setState("reconnecting", attempts > 2 ? "caption server unreachable, retrying" : "reconnecting");
      retryTimer = setTimeout(connect, wait);
    };
  }

  function refusalText(code, why) {
    if (code === 4401) {
      return "This display link's token was refused (" + why + "). Ask the operator for the current display link.";
    }
    if (code === 4404) return "No such session (" + why + "). Check the display link.";
    return "The caption server refused this display: " + why;
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
    fewer: () => { opts.lines = Math.max(1, opts.lines - 1); },
    more: () => { opts.lines = Math.min(12, opts.lines + 1); },
    theme: () => {
      opts.theme = THEMES[(THEMES.indexOf(opts.theme) + 1) % THEMES.length];
      opts.bg = null;
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
      remember();
      for (const t of tracks.values()) t.dirty = true;
      scheduleRender();
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

  // -- start ----------------------------------------------------------------------------------------
  applyOptions();
  for (const name of opts.tracks) track(name);
  window.wspDisplay = {
    state: () => state,
    tracks: () => Object.fromEntries([...tracks.values()].map((t) => [t.name, {
      lastSeq: t.lastSeq, ended: t.ended, finals: t.finals.slice(), partial: t.partial,
    }])),
  };
  if (!match || !sessionId) {
    setState("error", "bad link");
    showMessage("This is not a display link: it should look like /v1/sessions/<session id>/display?token=…");
  } else {
    connect();
  }
})();
