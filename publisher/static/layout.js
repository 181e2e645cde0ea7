// Caption layout for the display page: final text laid out in lines made for reading, released at a
// readable pace, and paired across tracks by audio time. Pure: no DOM, no sockets, no clock of its own
// (every call takes `now` in milliseconds), so the same code runs in the page and under node in tests.
//
//   LineComposer  finals of one track -> lines of a target length, broken at sentence ends, pauses and
//                 phrase boundaries (never inside a word), with no orphan tails (「す。」 alone)
//   Pacer         lines -> the moments they appear: one line no sooner than `intervalMs` after the
//                 previous, so a line stays on screen at least `rows x intervalMs`
//   Pairing       lines of a second track (English) -> the sentence of the first track (Japanese) whose
//                 audio span they overlap most
"use strict";

(function (root) {
  const UNSPACED = new Set(["ja", "zh", "yue", "th", "lo", "my", "km", "bo"]);
  const SENTENCE_ENDS = new Set("。．！？!?.…‼⁇⁈⁉");
  const CLOSERS = new Set("\"'”’」』）)]}〕〉》】");
  // kinsoku: characters a line must not start with, and those it must not end with
  const NO_LINE_START = new Set("、。，．・：；？！ー～…‥々ゝゞヽヾぁぃぅぇぉっゃゅょゎァィゥェォッャュョヮヵヶ」』）)]}〕〉》】,.:;!?%");
  const NO_LINE_END = new Set("「『（([{〔〈《【");
  const COMMAS = new Set("、，,;；:：");
  const HIRAGANA = /^[\u3041-\u309f]/;
  const ENDING = /(ます|です|ました|でした|ません|ください|ましょう|でしょう)$/;
  const PREFIXES = new Set(["お", "ご", "御", "第", "各", "全", "約"]);
  // Japanese particles and endings after which a phrase (bunsetsu) usually ends
  const PARTICLES = new Set(["は", "が", "を", "に", "で", "と", "も", "へ", "や", "の", "から", "まで", "より",
    "ので", "のに", "けど", "けれど", "けれども", "ながら", "では", "には", "とは", "へは", "でも", "ても", "て",
    "ては", "れば", "ば", "たら", "など", "ね", "よ", "か", "ず", "つつ", "として", "について", "によって",
    "において", "ため", "ように", "ずつ"]);
  // English words a phrase usually starts with: a line may break before them
  const PHRASE_STARTS = new Set(["and", "but", "or", "so", "because", "that", "which", "who", "whom", "whose",
    "when", "where", "while", "if", "to", "of", "in", "on", "at", "for", "with", "from", "by", "as", "than",
    "after", "before", "during", "until", "into", "about", "through"]);

  /** Defaults per kind of language: characters per line, the shortest line a break may leave, pauses. */
  function defaults(language) {
    const spaced = !UNSPACED.has(String(language || "").split("-")[0]);
    return spaced
      ? { spaced, target: 40, max: 46, min: 14, pauseS: 0.8, holdMs: 4000, staleMs: 6000, flowMs: 2000 }
      : { spaced, target: 18, max: 20, min: 6, pauseS: 0.6, holdMs: 3500, staleMs: 5500, flowMs: 2000 };
  }

  function isSentenceEnd(text, i, spaced) {
    const ch = text[i];
    if (!SENTENCE_ENDS.has(ch)) return false;
    let j = i + 1;
    while (j < text.length && CLOSERS.has(text[j])) j++;
    const next = text[j];
    if (ch === "." && /\d/.test(text[i - 1] || "") && /\d/.test(next || "")) return false; // 3.5
    if (spaced && next !== undefined && !/\s/.test(next)) return false; // e.g. "U.S" inside a word
    return true;
  }

  /** Word boundaries of `text` (offsets where a line may break), each with how good a break it is. */
  function breakScores(text, spaced, language) {
    const scores = new Map();
    if (spaced) {
      const re = /\s+/g;
      let m;
      while ((m = re.exec(text)) !== null) {
        const at = m.index + m[0].length;
        if (m.index === 0 || at >= text.length) continue;
        const before = text.slice(0, m.index);
        const word = text.slice(at).split(/\s/, 1)[0].toLowerCase().replace(/[^a-z']/g, "");
        let score = 1;
        if (COMMAS.has(before[before.length - 1])) score = 3;
        else if (PHRASE_STARTS.has(word)) score = 2;
        scores.set(at, score);
      }
      return scores;
    }
    let segments = null;
    if (typeof Intl !== "undefined" && Intl.Segmenter) {
      segments = [...new Intl.Segmenter(language || "ja", { granularity: "word" }).segment(text)];
    }
    if (!segments) segments = [...text].map((segment, index) => ({ segment, index }));
    for (let k = 1; k < segments.length; k++) {
      const at = segments[k].index;
      const prev = segments[k - 1].segment;
      const next = text[at];
      const last = prev[prev.length - 1];
      const nextWord = segments[k].segment;
      if (NO_LINE_START.has(next) || NO_LINE_END.has(last) || PREFIXES.has(prev)) continue; // never ご|案内
      let score;
      if (COMMAS.has(last)) score = 3;
      else if (ENDING.test(text.slice(0, at)) && !PARTICLES.has(nextWord)) score = 2.5; // 。 left out
      else if (PARTICLES.has(prev) && !PARTICLES.has(nextWord)) score = 2;
      else if (HIRAGANA.test(next)) score = 0.05; // inside an inflection: ござ|い|ます
      else if (HIRAGANA.test(last)) score = 0.2; // 申し|上げ
      else score = 0.5; // between two nouns: 市民|ホール
      scores.set(at, score);
    }
    return scores;
  }

  /**
   * The best place to break `text` between `low` and `high` characters, near `goal`: good phrase
   * boundaries win over near ones. Null when no boundary lies in that range.
   */
  function bestBreak(text, scores, low, high, goal, minScore) {
    let best = null;
    let bestValue = -Infinity;
    for (const [at, score] of scores) {
      const length = visibleLength(text.slice(0, at));
      if (length < low || length > high || score < (minScore || 0)) continue;
      const value = score * 3 - Math.abs(length - goal) * 0.5 - (length < 0.6 * goal ? 3 : 0);
      if (value > bestValue) {
        bestValue = value;
        best = at;
      }
    }
    return best;
  }

  function visibleLength(text) {
    return text.replace(/\s+/g, " ").trim().length;
  }

  function joinPiece(left, right, spaced) {
    if (!left) return right;
    if (!spaced || !right) return left + right;
    // "The" + "." -> "The."; "Everyone" + "'s" -> "Everyone's"
    if (/^[.,!?;:%)\]}…'’”]/.test(right) || /[(\[{“‘]$/.test(left)) return left + right;
    return left + " " + right;
  }

  /**
   * Lays the finals of one track out in lines.
   *
   * A line ends at a sentence end or a pause when one comes within `max` characters; a longer sentence
   * is cut in lines of about equal length; text without punctuation is cut at the best phrase boundary
   * near `target` once at least `min` characters follow the cut (so the end of a sentence never stands
   * alone). Text that has waited `holdMs` is cut where at least `min` characters stay behind; text that
   * has waited `staleMs` (the speaker paused, or the recogniser is slow) becomes a line as it stands,
   * except for a few words after the last phrase boundary while text is still coming (`flowMs`).
   */
  class LineComposer {
    constructor(language, options) {
      this.language = language;
      this.options = { ...defaults(language), ...(options || {}) };
      this.text = "";
      this.times = []; // per character: [audio start, audio end] of the final it came from
      this.arrived = []; // per character: when it arrived (ms)
      this.hard = new Set(); // offsets after a sentence end or a pause
      this.lastEnd = null;
      this.sentence = 0; // index of the sentence (unit) the next line belongs to
    }

    setWidth(max) {
      const base = defaults(this.language);
      const fit = Math.max(4, Math.floor(max));
      this.options.max = Math.min(this.options.userMax || base.max, fit);
      this.options.target = Math.min(this.options.userTarget || base.target, this.options.max);
      this.options.min = Math.min(base.min, Math.max(2, Math.floor(this.options.max / 3)));
    }

    add(event, now) {
      const o = this.options;
      let piece = String(event.text || "").replace(/\s+/g, " ").trim();
      if (o.spaced) piece = piece.replace(/ (?=[.,!?;:%…]|['’](?:s|re|ve|ll|d|m|t)\b)/g, "");
      if (!piece) return;
      const start = typeof event.start === "number" ? event.start : null;
      const end = typeof event.end === "number" ? event.end : start;
      if (this.text && this.lastEnd !== null && start !== null && start - this.lastEnd >= o.pauseS) {
        this.hard.add(this.text.length);
      }
      const joined = joinPiece(this.text, piece, o.spaced);
      piece = joined.slice(this.text.length);
      const base = this.text.length;
      for (let i = 0; i < piece.length; i++) {
        const t = start === null ? null : start + ((end - start) * (i + 1)) / piece.length;
        this.times.push([start, t === null ? end : t]);
        this.arrived.push(now);
      }
      this.text = joined;
      for (let i = base; i < joined.length; i++) {
        if (isSentenceEnd(joined, i, o.spaced)) {
          let j = i + 1;
          while (j < joined.length && CLOSERS.has(joined[j])) j++;
          this.hard.add(j);
        }
      }
      if (end !== null) this.lastEnd = end;
    }

    /** The text that is not in a line yet. */
    pending() {
      return this.text.trim();
    }

    /** Lines that are ready at `now` (all of the text when `flush`). */
    take(now, flush) {
      const lines = [];
      for (;;) {
        const cut = this.nextCut(now, flush);
        if (cut === null) break;
        lines.push(this.cut(cut.at, cut.unitEnds));
      }
      return lines;
    }

    nextCut(now, flush) {
      const o = this.options;
      const text = this.text;
      const length = visibleLength(text);
      if (!length) {
        this.reset();
        return null;
      }
      const hard = [...this.hard].filter((at) => at > 0 && at <= text.length).sort((a, b) => a - b);
      const firstHard = hard.find((at) => visibleLength(text.slice(0, at)) >= 1);
      const scores = () => breakScores(text, o.spaced, this.language);
      const waited = this.arrived.length ? now - this.arrived[0] : 0;
      if (firstHard !== undefined) {
        const unit = visibleLength(text.slice(0, firstHard));
        if (unit <= o.max) {
          // a short unit ("The.", 「はい。」) shares its line with what follows when that fits
          const next = hard.find((at) => at > firstHard && visibleLength(text.slice(0, at)) <= o.max);
          if (unit < o.min && next !== undefined) return { at: next, unitEnds: true };
          if (unit < o.min && !flush && waited < o.staleMs) {
            if (length < o.max + o.min) return null;
            const at = bestBreak(text, scores(), unit, Math.min(o.max, length - o.min), o.target);
            if (at !== null) return { at, unitEnds: false };
          }
          return { at: firstHard, unitEnds: true };
        }
        const lines = Math.ceil(unit / o.max);
        const at = bestBreak(text, scores(), o.min, o.max, unit / lines);
        return { at: at === null ? this.forcedAt(o.max) : at, unitEnds: false };
      }
      if (!flush && length < o.min && waited < 2 * o.staleMs) return null; // a fragment: wait for its phrase
      if (flush || waited >= o.staleMs) {
        const flowing = !flush && now - this.arrived[this.arrived.length - 1] < o.flowMs;
        if (length <= o.max && flowing) {
          // text is still coming: keep the words after the last phrase boundary for the next line
          const at = bestBreak(text, scores(), o.min, length - 1, length, 2);
          if (at !== null && visibleLength(text.slice(at)) < o.min) return { at, unitEnds: false };
        }
        if (length <= o.max) return { at: text.length, unitEnds: true };
        const at = bestBreak(text, scores(), o.min, o.max, length / Math.ceil(length / o.max));
        return { at: at === null ? this.forcedAt(o.max) : at, unitEnds: false };
      }
      if (length >= o.max + o.min) {
        const at = bestBreak(text, scores(), o.min, Math.min(o.max, length - o.min), o.target);
        return { at: at === null ? this.forcedAt(Math.min(o.max, length - o.min)) : at, unitEnds: false };
      }
      const fullish = Math.max(o.min, o.target - 4);
      if (waited >= o.holdMs && length >= fullish + o.min) {
        // a line near the target at a real phrase boundary; else wait for more text, or for staleMs
        const at = bestBreak(text, scores(), fullish, Math.min(o.max, length - o.min), o.target, 1);
        if (at !== null) return { at, unitEnds: false };
      }
      return null;
    }

    /** A cut inside a word, for text with no boundary at all (a long number, a run of one script). */
    forcedAt(chars) {
      let at = Math.max(1, Math.min(this.text.length, chars));
      while (at < this.text.length && NO_LINE_START.has(this.text[at])) at++;
      return at;
    }

    cut(at, unitEnds) {
      const raw = this.text.slice(0, at);
      const times = this.times.slice(0, at).filter((t) => t[0] !== null);
      const line = {
        text: raw.trim(),
        start: times.length ? times[0][0] : null,
        end: times.length ? times[times.length - 1][1] : null,
        sentence: this.sentence,
        sentenceEnd: unitEnds,
      };
      let rest = at;
      while (rest < this.text.length && /\s/.test(this.text[rest])) rest++;
      this.text = this.text.slice(rest);
      this.times = this.times.slice(rest);
      this.arrived = this.arrived.slice(rest);
      this.hard = new Set([...this.hard].map((h) => h - rest).filter((h) => h > 0));
      if (unitEnds) this.sentence += 1;
      return line;
    }

    reset() {
      this.text = "";
      this.times = [];
      this.arrived = [];
      this.hard = new Set();
    }
  }

  /**
   * Releases lines at a readable pace: one line no sooner than `intervalMs` after the previous one, so
   * that with `rows` lines visible each line stays on screen at least `rows x intervalMs`. When the
   * queue holds more than `maxWaitMs` of text the interval shrinks (never below `floorMs`), so the
   * display catches up with the speaker instead of falling further behind.
   */
  class Pacer {
    constructor(intervalMs, maxWaitMs, floorMs) {
      this.intervalMs = intervalMs;
      this.maxWaitMs = maxWaitMs;
      this.floorMs = floorMs;
      this.queue = [];
      this.last = -Infinity;
    }

    push(item, now) {
      this.queue.push({ item, queued: now });
    }

    release(now, all) {
      const out = [];
      while (this.queue.length) {
        const waited = now - this.queue[0].queued;
        const interval = waited > this.maxWaitMs ? this.floorMs : this.intervalMs;
        if (!all && now - this.last < interval) break;
        out.push(this.queue.shift().item);
        this.last = now;
        if (!all) break;
      }
      return out;
    }

    get waiting() {
      return this.queue.length;
    }
  }

  function overlap(a0, a1, b0, b1) {
    return Math.min(a1, b1) - Math.max(a0, b0);
  }

  /**
   * The sentence a line of the second track belongs to: the one of `sentences` ({start, end}) its audio
   * span overlaps most; without overlap, the nearest in time. -1 when `sentences` is empty.
   */
  function pairIndex(sentences, start, end) {
    if (!sentences.length) return -1;
    if (start === null || end === null) return sentences.length - 1;
    let best = -1;
    let bestOverlap = 0;
    let nearest = sentences.length - 1;
    let nearestGap = Infinity;
    sentences.forEach((s, i) => {
      if (s.start === null || s.end === null) return;
      const shared = overlap(s.start, s.end, start, Math.max(end, start + 1e-3));
      if (shared > bestOverlap) {
        bestOverlap = shared;
        best = i;
      }
      const gap = Math.max(s.start - end, start - s.end, 0);
      if (gap < nearestGap) {
        nearestGap = gap;
        nearest = i;
      }
    });
    return best >= 0 ? best : nearest;
  }

  const api = { LineComposer, Pacer, pairIndex, breakScores, defaults, joinPiece, UNSPACED };
  if (typeof module === "object" && module.exports) module.exports = api;
  else root.WspLayout = api;
})(typeof globalThis !== "undefined" ? globalThis : this);
