// Microphone and session-control page.
//
// 1. Create a session (POST /v1/sessions) or continue one (id + audio token); the page shows its display
//    links and SRT/WebVTT downloads. The address bar keeps ?session=&token=&read= so a reload resumes.
// 2. Start: the microphone goes through an AudioWorklet (mic-worklet.js) that resamples to 16 kHz PCM s16le
//    in 500 ms frames, sent over WS /v1/sessions/{sid}/audio. A dropped connection is reopened by itself;
//    the server's `ready` says how much audio it holds, and frames it has not acknowledged are sent again.
// 3. Stop ends the session's audio ({"type": "end"}): the last words are flushed as final captions.
// The session's live captions (publisher WebSocket, reconnecting with since=) are shown under the buttons.
"use strict";

(() => {
  const SAMPLE_RATE = 16000;
  const FRAME_SAMPLES = 8000; // 500 ms per WebSocket frame
  const MAX_BACKLOG_FRAMES = 240; // 2 minutes kept while the connection is down
  const FATAL_AUDIO = new Set([4400, 4401, 4403, 4404, 4409, 4413]);
  const FATAL_CAPTIONS = new Set([4400, 4401, 4403, 4404]);
  const RETRY_MIN_MS = 500;
  const RETRY_MAX_MS = 5000;
  const END_TIMEOUT_MS = 10000;
  const UNSPACED = new Set(["ja", "zh", "yue", "th", "lo", "my", "km", "bo"]);
  const MAX_CHANNELS = 8; // asked of the input device, so a multi-channel interface shows its channels
  const SEEN_KEY = "wsp-mic-seen:"; // localStorage: sessions this browser created or opened
  const LAG_KEEP_FRAMES = 1200; // capture times kept for the lag readout (10 minutes of 500 ms frames)
  const LAG_SLOW_S = 4; // the lag readout turns amber beyond this, red beyond LAG_BAD_S
  const LAG_BAD_S = 8;
  const QUIET_S = 15; // no caption for this long while streaming: the readout says so
  const DEVICE_KEY = "wsp-mic-device"; // localStorage: the input device and channel chosen last

  const $ = (id) => document.getElementById(id);
  const stage = $("stage");
  const statusEl = $("mic-status");
  const startButton = $("start");
  const stopButton = $("stop");

  // the worklet is fetched with the page, so Start works even if the service is briefly unreachable
  const workletUrl = fetch("/static/mic-worklet.js")
    .then((response) => (response.ok ? response.text() : Promise.reject(new Error("HTTP " + response.status))))
    .then((code) => URL.createObjectURL(new Blob([code], { type: "text/javascript" })))
    .catch(() => "/static/mic-worklet.js");

  let session = null; // {id, audioToken, readToken, audioUrl, captionsUrl, displayUrl, tracks}
  let capture = null; // {stream, context, node, analyser}
  let sender = null;
  let captions = null;
  let captureProblem = false; // the last Start failed before any audio went out

  // -- messages -------------------------------------------------------------------------------------
  function show(el, text) {
    el.textContent = text || "";
    el.hidden = !text;
  }
  const sessionError = (text) => show($("session-error"), text);
  const micError = (text) => show($("mic-error"), text);

  async function serverMessage(response) {
    try {
      const body = await response.json();
      if (body && body.message) return body.message;
    } catch {
      // not JSON: fall through
    }
    return "HTTP " + response.status;
  }

  // -- the stage: border colour, lamp and status line ----------------------------------------------
  function updateStage() {
    let state = "idle";
    let text = session ? "Ready. Press Start to stream the microphone." : "Create or choose a session, then press Start.";
    if (!sender && captureProblem) {
      state = "error";
      text = "The microphone is not available: see the message below.";
    } else if (sender && sender.fatal) {
      state = "error";
      text = "Stopped: " + sender.fatal;
    } else if (sender && sender.finished) {
      state = "stopped";
      text = "Stopped. The session's audio has ended; create a new session to stream again.";
    } else if (sender && sender.finishing) {
      state = "connecting";
      text = "Stopping: sending the last audio…";
    } else if (sender) {
      if (!sender.open) {
        state = sender.everOpen || sender.attempts > 1 ? "down" : "connecting";
        if (sender.everOpen) {
          text = "Disconnected from the ingest service: reconnecting (attempt " + sender.attempts + ")…";
        } else if (sender.attempts > 1) {
          text = "Cannot reach the ingest service at " + location.host + ": retrying (attempt " + sender.attempts + ")…";
        } else {
          text = "Connecting to the ingest service…";
        }
      } else if (!captions || !captions.open) {
        state = "down";
        text = "Streaming audio, but the caption feed is disconnected: reconnecting…";
      } else {
        state = "live";
        text = "Streaming: audio is going in and captions are coming back.";
      }
    }
    if (session && session.status === "gone") {
      state = "error";
      text = "Session " + session.id + " is gone from the server: create a new session.";
    }
    stage.dataset.state = state;
    statusEl.textContent = text;
    const over = session && ["ended", "gone"].includes(session.status);
    startButton.disabled = !session || Boolean(sender && !sender.fatal) || Boolean(over);
    stopButton.disabled = !sender || sender.finished || Boolean(sender.fatal) || sender.finishing;
    const streaming = Boolean(sender && !sender.finished && !sender.fatal);
    $("new-session").disabled = streaming;
    $("new-session").title = streaming ? "Stop the microphone first" : "Create another session";
    $("device").disabled = Boolean(capture);
  }

  // -- sessions -------------------------------------------------------------------------------------
  function withToken(url, token) {
    if (!url || !token) return url;
    const u = new URL(url);
    if (!u.searchParams.get("token")) u.searchParams.set("token", token);
    return u.toString();
  }

  // sessions this browser created or opened: a later refusal of the same id means the session is gone
  function seenKey(id, token) {
    // a digest of the token, not the token itself
    let h = 2166136261;
    for (const c of token || "") h = Math.imul(h ^ c.charCodeAt(0), 16777619) >>> 0;
    return SEEN_KEY + id + ":" + h.toString(36);
  }

  function markSeen(id, token) {
    try {
      localStorage.setItem(seenKey(id, token), "1");
    } catch {
      // storage disabled: a lost session then reads like a wrong id or token
    }
  }

  function wasSeen(id, token) {
    try {
      return localStorage.getItem(seenKey(id, token)) === "1";
    } catch {
      return false;
    }
  }

  function goneText(id) {
    return "Session " + id + " is no longer on the server: it ended and its data expired, or the server lost " +
      "its data. Its audio cannot continue; press New session and hand out the new display links.";
  }

  function markGone() {
    if (!session) return;
    session.status = "gone";
    stopCapture();
    micError(goneText(session.id));
    updateStage();
  }

  function lockForm(locked) {
    $("create-fields").disabled = locked;
    $("create").hidden = locked;
    $("locked-note").hidden = !locked;
  }

  function useSession(info) {
    session = info;
    markSeen(info.id, info.audioToken);
    const here = new URL(location.href);
    here.search = "";
    here.searchParams.set("session", info.id);
    if (info.audioToken) here.searchParams.set("token", info.audioToken);
    if (info.readToken) here.searchParams.set("read", info.readToken);
    history.replaceState(null, "", here.toString());
    lockForm(true);
    renderLinks();
    if (captions) captions.close();
    captions = new CaptionFeed(withToken(info.captionsUrl, info.readToken || info.audioToken), info.tracks);
    captions.connect();
    sessionError("");
    updateStage();
  }

  function newSession() {
    if (!session || (sender && !sender.finished && !sender.fatal)) return;
    const question = "Start a new session? Screens showing session " + session.id + " keep showing it; " +
      "the new session has new display links.";
    if (!window.confirm(question)) return;
    resetSender();
    if (captions) captions.close();
    captions = null;
    session = null;
    $("live").replaceChildren();
    $("links").hidden = true;
    $("link-list").replaceChildren();
    $("download-list").replaceChildren();
    lockForm(false);
    history.replaceState(null, "", location.pathname);
    updateStage();
    $("language").focus();
  }

  function fromResponse(body, audioToken, readToken) {
    const record = body.record || {};
    return {
      id: body.id,
      audioToken: body.audio_token || audioToken || "",
      readToken: body.read_token || readToken || "",
      audioUrl: body.audio_url,
      captionsUrl: body.captions_url,
      displayUrl: body.display_url,
      tracks: (record.tracks || []).map((t) => t.name),
      status: body.status || record.status || "open",
    };
  }

  async function createSession(event) {
    event.preventDefault();
    if (session) return; // the form is locked: New session first
    sessionError("");
    const language = $("language").value;
    const tracks = [{ name: language, task: "transcribe" }];
    if ($("track-translate").checked && language !== "en") tracks.push({ name: "en", task: "translate" });
    const glossary = $("glossary").value.split("\n").map((t) => t.trim()).filter(Boolean);
    const headers = { "Content-Type": "application/json" };
    const key = $("api-key").value.trim();
    if (key) headers.Authorization = "Bearer " + key;
    $("create").disabled = true;
    try {
      const response = await fetch("/v1/sessions", {
        method: "POST",
        headers,
        body: JSON.stringify({ language, tracks, glossary, title: $("title").value.trim() }),
      });
      if (response.status === 401) {
        sessionError("The server needs a valid API key to create a session: " + (await serverMessage(response)));
        document.querySelector("#create-form details").open = true;
        return;
      }
      if (!response.ok) {
        sessionError("The session could not be created: " + (await serverMessage(response)));
        return;
      }
      if (sender) resetSender();
      useSession(fromResponse(await response.json()));
    } catch (error) {
      sessionError("Cannot reach the ingest service at " + location.host + " (" + error.message +
        "). Is it running?");
    } finally {
      $("create").disabled = false;
    }
  }

  async function joinSession(id, audioToken, readToken) {
    sessionError("");
    id = id.trim();
    if (!id) {
      sessionError("Enter the session id.");
      return;
    }
    const url = new URL("/v1/sessions/" + encodeURIComponent(id), location.href);
    if (audioToken) url.searchParams.set("token", audioToken);
    try {
      const response = await fetch(url);
      if ((response.status === 401 || response.status === 404) && wasSeen(id, audioToken)) {
        sessionError(goneText(id));
        return;
      }
      if (response.status === 401 || response.status === 404 || response.status === 400) {
        sessionError("Session " + id + " was refused: " + (await serverMessage(response)) +
          ". Check the session id and its audio token.");
        return;
      }
      if (!response.ok) {
        sessionError("Session " + id + " could not be loaded: " + (await serverMessage(response)));
        return;
      }
      const info = fromResponse(await response.json(), audioToken, readToken);
      if (sender) resetSender();
      useSession(info);
      if (info.status === "ended") {
        micError("This session has ended: its captions can still be viewed and downloaded, but it takes no more audio.");
      }
    } catch (error) {
      sessionError("Cannot reach the ingest service at " + location.host + " (" + error.message +
        "). Is it running?");
    }
  }

  function renderLinks() {
    $("links").hidden = false;
    $("session-id").textContent = session.id;
    $("session-tracks").textContent = session.tracks.length ? "tracks: " + session.tracks.join(", ") : "";
    const list = $("link-list");
    list.replaceChildren();
    $("links-local").hidden = true;
    if (!session.readToken) {
      const li = document.createElement("li");
      li.className = "hint";
      li.textContent = "Display links need the session's read token (shown when the session is created).";
      list.appendChild(li);
    } else {
      loadDisplayLinks(session);
    }
    const downloads = $("download-list");
    downloads.replaceChildren();
    const token = session.readToken || session.audioToken;
    const http = new URL(session.displayUrl || location.href);
    for (const t of session.tracks) {
      for (const ext of ["srt", "vtt"]) {
        const u = new URL(http.origin + "/v1/sessions/" + encodeURIComponent(session.id) + "/captions." + ext);
        u.searchParams.set("track", t);
        if (token) u.searchParams.set("token", token);
        const a = document.createElement("a");
        a.className = "button";
        a.href = u.toString();
        a.download = session.id + "-" + t + "." + ext;
        a.textContent = t + " ." + (ext === "srt" ? "srt" : "vtt");
        a.title = (ext === "srt" ? "SubRip" : "WebVTT") + " subtitles of the " + t + " track";
        downloads.appendChild(a);
      }
    }
  }

  async function loadDisplayLinks(forSession) {
    const list = $("link-list");
    try {
      const response = await fetch("/v1/sessions/" + encodeURIComponent(forSession.id) + "/displays", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ read_token: forSession.readToken }),
      });
      if (session !== forSession) return;
      if (!response.ok) {
        const li = document.createElement("li");
        li.className = "error";
        li.textContent = "The display links could not be made: " + (await serverMessage(response));
        list.replaceChildren(li);
        return;
      }
      const body = await response.json();
      if (session !== forSession) return;
      list.replaceChildren(...body.displays.map(linkCard));
      const host = new URL(body.displays[0].url).hostname;
      if (/^(127\.|localhost$|\[?::1\]?$)/.test(host)) {
        $("links-local").textContent = "These links point at " + host + ": they open on this computer only. " +
          "For phones and screens, run `wsp up` without --local, or set WSP_PUBLIC_URL to the address they reach.";
        $("links-local").hidden = false;
      }
    } catch (error) {
      if (session !== forSession) return;
      const li = document.createElement("li");
      li.className = "error";
      li.textContent = "The display links could not be made: " + error.message;
      list.replaceChildren(li);
    }
  }

  function linkCard(display) {
    const li = document.createElement("li");
    li.className = "display";
    li.dataset.kind = display.kind;
    const qr = document.createElement("div");
    qr.className = "qr";
    // inline SVG as HTML parses it (it carries no XML namespace); scripts never run in a parsed document
    const svg = new DOMParser().parseFromString(display.qr_svg, "text/html").querySelector("svg");
    if (svg) qr.appendChild(document.importNode(svg, true));
    const name = document.createElement("span");
    name.className = "label";
    name.textContent = display.label;
    const short = document.createElement("a");
    short.className = "short";
    short.href = display.short_url;
    short.target = "_blank";
    short.rel = "noopener";
    short.textContent = display.short_url.replace(/^https?:\/\//, "");
    const actions = linkRow(display.url);
    li.append(qr, name, short, actions);
    return li;
  }

  function linkRow(href) {
    const row = document.createElement("div");
    row.className = "row-actions";
    const input = document.createElement("input");
    input.readOnly = true;
    input.value = href;
    input.title = href;
    input.addEventListener("focus", () => input.select());
    const copy = document.createElement("button");
    copy.type = "button";
    copy.textContent = "Copy";
    copy.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(href);
      } catch {
        input.select();
        document.execCommand("copy");
      }
      copy.textContent = "Copied";
      setTimeout(() => { copy.textContent = "Copy"; }, 1500);
    });
    const open = document.createElement("a");
    open.className = "button";
    open.href = href;
    open.target = "_blank";
    open.rel = "noopener";
    open.textContent = "Open";
    row.append(input, copy, open);
    return row;
  }

  // -- audio: microphone -> worklet -> WebSocket ------------------------------------------------------
  class AudioSender {
    constructor(url) {
      this.url = url;
      this.ws = null;
      this.open = false;
      this.everOpen = false;
      this.attempts = 0;
      this.retryMs = RETRY_MIN_MS;
      this.origin = null; // server sample count when streaming began (from the first `ready`)
      this.captured = 0; // samples captured since Start
      this.unacked = []; // [{offset, pcm}] frames the server has not acknowledged (offset: since Start)
      this.finishing = false;
      this.finished = false;
      this.fatal = null;
      this.endTimer = null;
      this.captureTimes = []; // [{end: samples since Start at the end of a frame, at: ms when captured}]
    }

    /** When the audio at `seconds` of the session was captured (ms), or null if not by this page. */
    capturedAt(seconds) {
      if (this.origin === null) return null;
      const sample = seconds * SAMPLE_RATE - this.origin;
      const frame = this.captureTimes.find((f) => f.end >= sample);
      if (!frame) return null;
      return frame.at - ((frame.end - sample) / SAMPLE_RATE) * 1000;
    }

    connect() {
      if (this.finished || this.fatal) return;
      this.attempts += 1;
      let ws;
      try {
        ws = new WebSocket(this.url);
      } catch (error) {
        this.fail("the audio address is not valid (" + error.message + ")");
        return;
      }
      ws.binaryType = "arraybuffer";
      this.ws = ws;
      let refusal = null;
      ws.onopen = () => ws.send(JSON.stringify({ type: "start", sample_rate: SAMPLE_RATE, format: "s16le" }));
      ws.onmessage = (message) => {
        let body;
        try {
          body = JSON.parse(message.data);
        } catch {
          return;
        }
        if (body.type === "ready") this.ready(body.samples);
        else if (body.type === "ack") this.acked(body.samples);
        else if (body.type === "ended") this.done();
        else if (body.type === "error") refusal = body;
      };
      ws.onclose = (close) => {
        if (this.ws !== ws) return;
        this.ws = null;
        this.open = false;
        if (this.finished) return;
        if ((close.code === 4401 || close.code === 4404) && session && wasSeen(session.id, session.audioToken) && this.everOpen) {
          // this token streamed before, and tokens never change: the session itself is gone
          this.fail(goneText(session.id));
          markGone();
          return;
        }
        if (FATAL_AUDIO.has(close.code)) {
          this.fail(audioRefusal(close.code, refusal ? refusal.message : close.reason));
          return;
        }
        const wait = this.retryMs;
        this.retryMs = Math.min(RETRY_MAX_MS, this.retryMs * 2);
        setTimeout(() => this.connect(), wait);
        updateStage();
      };
      updateStage();
    }

    ready(samples) {
      this.open = true;
      this.everOpen = true;
      this.attempts = 0;
      this.retryMs = RETRY_MIN_MS;
      if (this.origin === null) this.origin = samples;
      this.acked(samples);
      // the server holds everything before `samples`: send again what came after
      for (const frame of this.unacked) {
        const skip = Math.max(0, samples - (this.origin + frame.offset));
        if (skip * 2 < frame.pcm.byteLength) this.ws.send(skip ? frame.pcm.slice(skip * 2) : frame.pcm);
      }
      if (this.finishing) this.sendEnd();
      micError("");
      updateStage();
    }

    acked(samples) {
      while (this.unacked.length) {
        const first = this.unacked[0];
        if (this.origin + first.offset + first.pcm.byteLength / 2 > samples) break;
        this.unacked.shift();
      }
    }

    push(pcm) {
      if (this.finished || this.fatal) return;
      const frame = { offset: this.captured, pcm };
      this.captured += pcm.byteLength / 2;
      this.captureTimes.push({ end: this.captured, at: performance.now() });
      if (this.captureTimes.length > LAG_KEEP_FRAMES) this.captureTimes.shift();
      this.unacked.push(frame);
      if (this.unacked.length > MAX_BACKLOG_FRAMES) this.unacked.shift();
      if (this.open) this.ws.send(pcm);
      $("clock").textContent = clock(this.captured / SAMPLE_RATE) + " of audio sent";
    }

    finish() {
      this.finishing = true;
      if (this.open) this.sendEnd();
      this.endTimer = setTimeout(() => {
        if (!this.finished) this.fail("the ingest service did not confirm the end of the audio in time");
      }, END_TIMEOUT_MS);
      updateStage();
    }

    sendEnd() {
      this.ws.send(JSON.stringify({ type: "end" }));
    }

    done() {
      this.finished = true;
      clearTimeout(this.endTimer);
      if (this.ws) this.ws.close(1000);
      updateStage();
    }

    fail(message) {
      this.fatal = message;
      clearTimeout(this.endTimer);
      if (this.ws) this.ws.close(1000);
      stopCapture();
      micError(message);
      updateStage();
    }
  }

  function audioRefusal(code, message) {
    if (code === 4401) return "the session id or its audio token was refused (" + message + ").";
    if (code === 4404) return "there is no such session (" + message + ").";
    if (code === 4409) return "this session takes no more audio (" + message + "). Create a new session.";
    return "the ingest service refused the audio (" + message + ").";
  }

  function clock(seconds) {
    const s = Math.floor(seconds);
    return String(Math.floor(s / 60)).padStart(2, "0") + ":" + String(s % 60).padStart(2, "0");
  }

  function microphoneProblem(error) {
    switch (error && error.name) {
      case "NotAllowedError":
      case "SecurityError":
        return "Microphone permission was denied. Allow the microphone for this page (the icon in the address " +
          "bar or the browser's site settings), then press Start again.";
      case "NotFoundError":
      case "OverconstrainedError":
        return "No microphone was found. Connect one (or choose it in the system's sound settings) and press Start again.";
      case "NotReadableError":
      case "AbortError":
        return "The microphone could not be opened: another program may be using it. Close it and press Start again.";
      default:
        return "The microphone could not be started: " + (error && error.message ? error.message : String(error));
    }
  }

  async function start() {
    micError("");
    captureProblem = false;
    if (!session) return;
    if (!window.isSecureContext || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      micError("This browser only allows the microphone on https:// pages or on localhost. Open this page over " +
        "https (or on the machine that runs the ingest service).");
      captureProblem = true;
      updateStage();
      return;
    }
    startButton.disabled = true;
    let stream;
    try {
      const device = $("device").value;
      stream = await navigator.mediaDevices.getUserMedia({
        audio: {
          ...(device ? { deviceId: { exact: device } } : {}),
          channelCount: { ideal: MAX_CHANNELS },
          echoCancellation: false,
          noiseSuppression: false,
          autoGainControl: false,
        },
      });
    } catch (error) {
      micError(microphoneProblem(error));
      captureProblem = true;
      updateStage();
      return;
    }
    try {
      const context = new AudioContext({ latencyHint: "interactive" });
      await context.audioWorklet.addModule(await workletUrl);
      const source = context.createMediaStreamSource(stream);
      const settings = stream.getAudioTracks()[0].getSettings();
      const channels = Math.max(1, settings.channelCount || source.channelCount || 1);
      const splitter = context.createChannelSplitter(channels);
      source.connect(splitter);
      const node = new AudioWorkletNode(context, "pcm-framer", {
        numberOfInputs: 1,
        numberOfOutputs: 1,
        channelCount: 1,
        channelCountMode: "explicit",
        channelInterpretation: "speakers",
        processorOptions: { frameSamples: FRAME_SAMPLES },
      });
      const analyser = context.createAnalyser();
      analyser.fftSize = 1024;
      const mute = context.createGain();
      mute.gain.value = 0;
      node.connect(mute).connect(context.destination);
      capture = { stream, context, node, analyser, source, splitter, channels, input: null };
      showChannels(channels);
      routeChannel();
      await context.resume();
      listDevices(settings.deviceId);
      sender = new AudioSender(withToken(session.audioUrl, session.audioToken));
      node.port.onmessage = (event) => {
        if (sender && event.data && event.data.pcm) sender.push(event.data.pcm);
      };
      for (const track of stream.getAudioTracks()) {
        track.onended = () => {
          if (sender && !sender.finished && !sender.fatal) {
            micError("The microphone was disconnected. Reconnect it and press Start again.");
            stopStreaming();
          }
        };
      }
      sender.connect();
      meter();
    } catch (error) {
      for (const track of stream.getTracks()) track.stop();
      micError("Audio processing could not start in this browser: " + error.message);
      captureProblem = true;
    }
    updateStage();
  }

  /** The chosen channel (or the mix of all) into the framer and the level meter, live. */
  function routeChannel() {
    if (!capture) return;
    const { source, splitter, node, analyser, channels } = capture;
    if (capture.input) capture.input.disconnect();
    const choice = $("channel").value;
    const index = choice === "mix" ? -1 : Number(choice);
    if (index >= 0 && index < channels) {
      const pick = capture.context.createGain();
      splitter.connect(pick, index, 0);
      capture.input = pick;
    } else {
      const mix = capture.context.createGain();
      source.connect(mix);
      capture.input = mix;
    }
    capture.input.connect(node);
    capture.input.connect(analyser);
    remember();
  }

  function showChannels(count) {
    const select = $("channel");
    const keep = select.value || storedChoice().channel || "mix";
    const options = [["mix", count > 1 ? "Mix of all " + count + " channels" : "Mono"]];
    for (let i = 0; i < count && count > 1; i++) options.push([String(i), "Channel " + (i + 1)]);
    select.replaceChildren(...options.map(([value, label]) => new Option(label, value)));
    select.value = options.some(([value]) => value === keep) ? keep : "mix";
    select.disabled = count < 2;
  }

  function storedChoice() {
    try {
      return JSON.parse(localStorage.getItem(DEVICE_KEY) || "{}");
    } catch {
      return {};
    }
  }

  function remember() {
    try {
      localStorage.setItem(DEVICE_KEY, JSON.stringify({ device: $("device").value, channel: $("channel").value }));
    } catch {
      // storage disabled: the default input is used next time
    }
  }

  /** The audio inputs in the picker (their names appear once the browser has given the microphone). */
  async function listDevices(current) {
    if (!navigator.mediaDevices || !navigator.mediaDevices.enumerateDevices) return;
    let devices;
    try {
      devices = (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === "audioinput");
    } catch {
      return;
    }
    const select = $("device");
    const wanted = current || select.value || storedChoice().device || "";
    const options = [new Option("Default input", "")];
    devices.forEach((d, i) => {
      if (!d.deviceId || d.deviceId === "default") return;
      options.push(new Option(d.label || "Input " + (i + 1) + " (its name shows once the microphone is allowed)", d.deviceId));
    });
    select.replaceChildren(...options);
    select.value = options.some((o) => o.value === wanted) ? wanted : "";
  }

  /** How far the captions are behind the audio: from capture of a final's last sample to its arrival. */
  const lag = { seconds: null, lastFinalAt: null };
  function noteFinal(event) {
    if (!sender || event.end === null || event.end === undefined) return;
    const at = sender.capturedAt(event.end);
    if (at === null) return;
    lag.seconds = Math.max(0, (performance.now() - at) / 1000);
    lag.lastFinalAt = performance.now();
    showLag();
  }

  function showLag() {
    const el = $("lag");
    if (!sender || sender.finished || sender.fatal || !capture) {
      el.textContent = "";
      el.removeAttribute("data-level");
      return;
    }
    const quiet = lag.lastFinalAt === null ? null : (performance.now() - lag.lastFinalAt) / 1000;
    if (lag.seconds === null) {
      el.textContent = "Captions: waiting for the first";
      el.dataset.level = "slow";
    } else if (quiet > QUIET_S) {
      el.textContent = "No caption for " + Math.round(quiet) + " s (silence, or the recogniser is behind)";
      el.dataset.level = "slow";
    } else {
      el.textContent = "Captions " + lag.seconds.toFixed(1) + " s behind the audio";
      el.dataset.level = lag.seconds > LAG_BAD_S ? "bad" : lag.seconds > LAG_SLOW_S ? "slow" : "ok";
    }
  }

  function meter() {
    if (!capture) {
      $("level-bar").style.width = "0";
      return;
    }
    const data = new Float32Array(capture.analyser.fftSize);
    capture.analyser.getFloatTimeDomainData(data);
    let peak = 0;
    for (const v of data) peak = Math.max(peak, Math.abs(v));
    $("level-bar").style.width = Math.min(100, Math.round(Math.sqrt(peak) * 100)) + "%";
    requestAnimationFrame(meter);
  }

  function stopCapture() {
    if (!capture) return;
    const { stream, context, node } = capture;
    capture = null;
    node.port.postMessage("stop");
    for (const track of stream.getTracks()) track.stop();
    setTimeout(() => context.close(), 200);
  }

  function stopStreaming() {
    if (!sender) return;
    stopCapture();
    // the worklet posts its last partial frame on "stop"; give it a moment before ending the session
    setTimeout(() => sender && sender.finish(), 250);
    stopButton.disabled = true;
  }

  function resetSender() {
    stopCapture();
    if (sender && sender.ws) sender.ws.close(1000);
    sender = null;
    micError("");
  }

  // -- live captions --------------------------------------------------------------------------------
  class CaptionFeed {
    constructor(url, tracks) {
      this.url = url;
      this.tracks = new Map();
      for (const name of tracks) this.track(name);
      this.ws = null;
      this.open = false;
      this.closed = false;
      this.ended = false;
      this.everOpen = false;
      this.retryMs = RETRY_MIN_MS;
      this.render();
    }

    track(name) {
      if (!this.tracks.has(name)) {
        this.tracks.set(name, { name, lastSeq: 0, text: "", partial: "", finals: 0, ended: false,
          spaced: !UNSPACED.has(name.split("-")[0]) });
      }
      return this.tracks.get(name);
    }

    connect() {
      if (this.closed || !this.url) return;
      const url = new URL(this.url);
      const since = [...this.tracks.values()].filter((t) => t.lastSeq).map((t) => t.name + ":" + t.lastSeq);
      if (since.length) url.searchParams.set("since", since.join(","));
      const ws = new WebSocket(url.toString());
      this.ws = ws;
      let refusal = null;
      ws.onopen = () => {
        this.open = true;
        this.retryMs = RETRY_MIN_MS;
        updateStage();
      };
      ws.onmessage = (message) => {
        let e;
        try {
          e = JSON.parse(message.data);
        } catch {
          return;
        }
        if (e.type === "error") {
          refusal = e;
          return;
        }
        this.everOpen = true; // captions came: a refusal later means the session is gone
        const t = this.track(e.track);
        if (e.type === "final" && e.seq > t.lastSeq) {
          noteFinal(e);
          t.lastSeq = e.seq;
          t.finals += 1;
          const piece = (e.text || "").trim();
          t.text = (t.text && t.spaced && piece ? t.text + " " : t.text) + piece;
          if (t.text.length > 2000) t.text = t.text.slice(-1500);
          t.partial = "";
        } else if (e.type === "partial") {
          t.partial = (e.text || "").trim();
        } else if (e.type === "end") {
          t.ended = true;
          t.partial = "";
        }
        this.render();
      };
      ws.onclose = (close) => {
        if (this.ws !== ws) return;
        this.ws = null;
        this.open = false;
        for (const t of this.tracks.values()) t.partial = "";
        this.render();
        const allEnded = [...this.tracks.values()].every((t) => t.ended);
        if (this.closed || allEnded || (close.code === 1000 && close.reason === "session ended")) {
          this.ended = true;
          updateStage();
          return;
        }
        if ((close.code === 4401 || close.code === 4404) && session && wasSeen(session.id, session.audioToken) && this.everOpen) {
          markGone();
          return;
        }
        if (FATAL_CAPTIONS.has(close.code)) {
          micError("The caption feed refused this page: " + (refusal ? refusal.message : close.reason));
          updateStage();
          return;
        }
        setTimeout(() => this.connect(), this.retryMs);
        this.retryMs = Math.min(RETRY_MAX_MS, this.retryMs * 2);
        updateStage();
      };
    }

    close() {
      this.closed = true;
      if (this.ws) this.ws.close(1000);
    }

    render() {
      const live = $("live");
      if (captions !== this && captions !== null) return;
      live.replaceChildren();
      for (const t of this.tracks.values()) {
        const div = document.createElement("div");
        div.className = "track";
        div.lang = t.name;
        div.dataset.track = t.name;
        const name = document.createElement("div");
        name.className = "name";
        name.textContent = t.name + (t.ended ? " · ended" : "");
        const p = document.createElement("div");
        p.className = "text";
        p.textContent = t.text;
        if (t.partial) {
          const span = document.createElement("span");
          span.className = "partial";
          span.textContent = (t.text && t.spaced ? " " : "") + t.partial;
          p.appendChild(span);
        }
        if (!t.text && !t.partial) {
          const empty = document.createElement("span");
          empty.className = "empty";
          empty.textContent = "Captions of this track appear here.";
          p.appendChild(empty);
        }
        div.append(name, p);
        live.appendChild(div);
      }
    }
  }

  // -- wiring ---------------------------------------------------------------------------------------
  $("create-form").addEventListener("submit", createSession);
  $("join-form").addEventListener("submit", (event) => {
    event.preventDefault();
    joinSession($("join-id").value, $("join-token").value.trim(), $("join-read").value.trim());
  });
  $("language").addEventListener("change", () => {
    const english = $("language").value === "en";
    $("track-translate").disabled = english;
    if (english) $("track-translate").checked = false;
  });
  startButton.addEventListener("click", start);
  stopButton.addEventListener("click", stopStreaming);
  $("new-session").addEventListener("click", newSession);
  $("channel").addEventListener("change", routeChannel);
  $("device").addEventListener("change", remember);
  if (navigator.mediaDevices && navigator.mediaDevices.addEventListener) {
    navigator.mediaDevices.addEventListener("devicechange", () => listDevices());
  }
  setInterval(showLag, 1000);
  listDevices();

  window.wspMic = {
    stage: () => stage.dataset.state,
    session: () => session && { ...session },
    captions: () => captions && Object.fromEntries([...captions.tracks.values()].map((t) => [t.name, { ...t }])),
    lag: () => ({ ...lag, text: $("lag").textContent }),
    input: () => capture && { channels: capture.channels, channel: $("channel").value,
      device: capture.stream.getAudioTracks()[0].getSettings().deviceId, label: capture.stream.getAudioTracks()[0].label },
  };

  const query = new URLSearchParams(location.search);
  if (query.get("session")) {
    $("join-id").value = query.get("session");
    $("join-token").value = query.get("token") || "";
    $("join-read").value = query.get("read") || "";
    joinSession(query.get("session"), query.get("token") || "", query.get("read") || "");
  }
  updateStage();
})();
