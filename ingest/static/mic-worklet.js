// AudioWorklet processor: microphone audio (the context's own sample rate) -> 16 kHz mono PCM s16le,
// posted to the page in frames of `frameSamples` samples (an ArrayBuffer, transferred).
//
// Resampling is a windowed-sinc low-pass evaluated at each output instant (Blackman window, 8 zero
// crossings each side, cut-off just under the lower Nyquist frequency), so 44.1/48 kHz input does not alias.

const OUT_RATE = 16000;
const HALF_TAPS = 8; // zero crossings of the low-pass kernel on each side

class PcmFramer extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = (options && options.processorOptions) || {};
    this.frameSamples = opts.frameSamples || 8000;
    this.step = sampleRate / OUT_RATE; // input samples per output sample
    this.cutoff = (0.45 * Math.min(sampleRate, OUT_RATE)) / sampleRate; // cycles per input sample
    this.history = new Float32Array(0); // input samples not yet fully used
    this.historyStart = 0; // absolute index of history[0]
    this.nextOut = 0; // absolute input position of the next output sample
    this.frame = new Int16Array(this.frameSamples);
    this.filled = 0;
    this.peak = 0;
    this.running = true;
    this.port.onmessage = (event) => {
      if (event.data === "flush") {
        this.flush();
      } else if (event.data === "stop") {
        this.flush();
        this.running = false;
      }
    };
  }

  // distance and width in input samples
  kernel(distance, width) {
    const x = distance / width;
    if (x <= -1 || x >= 1) return 0;
    const window = 0.42 + 0.5 * Math.cos(Math.PI * x) + 0.08 * Math.cos(2 * Math.PI * x);
    const arg = 2 * this.cutoff * distance;
    const sinc = arg === 0 ? 1 : Math.sin(Math.PI * arg) / (Math.PI * arg);
    return window * sinc;
  }

  push(value) {
    const clipped = Math.max(-1, Math.min(1, value));
    this.frame[this.filled++] = clipped < 0 ? clipped * 0x8000 : clipped * 0x7fff;
    this.peak = Math.max(this.peak, Math.abs(clipped));
    if (this.filled === this.frameSamples) this.flush();
  }

  flush() {
    if (this.filled === 0) return;
    const out = this.frame.slice(0, this.filled);
    this.port.postMessage({ pcm: out.buffer, peak: this.peak }, [out.buffer]);
    this.filled = 0;
    this.peak = 0;
  }

  process(inputs) {
    if (!this.running) return false;
    const input = inputs[0];
    if (!input || input.length === 0) return true;
    const block = input[0];
    const joined = new Float32Array(this.history.length + block.length);
    joined.set(this.history);
    joined.set(block, this.history.length);
    const width = HALF_TAPS * Math.max(1, this.step); // input samples each side of an output instant
    const end = this.historyStart + joined.length;
    while (this.nextOut + width < end) {
      const centre = this.nextOut;
      const first = Math.max(this.historyStart, Math.ceil(centre - width));
      const last = Math.min(end - 1, Math.floor(centre + width));
      let sum = 0;
      let weight = 0;
      for (let i = first; i <= last; i++) {
        const w = this.kernel(i - centre, width);
        sum += w * joined[i - this.historyStart];
        weight += w;
      }
      this.push(weight > 0 ? sum / weight : 0);
      this.nextOut += this.step;
    }
    const keepFrom = Math.max(this.historyStart, Math.floor(this.nextOut - width) - 1);
    this.history = joined.slice(keepFrom - this.historyStart);
    this.historyStart = keepFrom;
    return true;
  }
}

registerProcessor("pcm-framer", PcmFramer);
