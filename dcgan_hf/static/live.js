// dcgan_hf live mode (issue 18): the generator runs in this page, with ONNX Runtime Web (WASM).
//
// app.py's Edit and Interpolate tabs each hold a panel (dcgan_hf/live.py PANEL_TEMPLATES) whose
// js_on_load imports this module and calls attach(). With the switch on, slider drags (Edit) and
// the play/scrub control (Interpolate) are drawn here every animation frame, and the server sees no
// request until a slider is released: then the slider's usual event goes to the server, which draws
// the canonical PNG/GIF and writes the URL state, as with the switch off.
//
// The server hands out the model (exported once at start-up), its directions and the latents of the
// faces shown, as exact tokens; this page computes only G(z·t + Σ amountᵢ·dᵢ) and slerp/lerp paths,
// with the same float32/float64 steps as dcgan_hf (directions.Directions.apply, latent.path), and
// turns the outputs into pixels as dcgan_hf.images.to_uint8 does. Before live mode turns on, the
// page draws the manifest's check face and compares it with the server's pixels.
//
// window.dcganLive is the page's interface to it (the tests and bench/live_mode.py use it).

const SIDE = 64;
const PIXELS = SIDE * SIDE;
const SOURCE_SETTLE_MS = 300; // a typed seed or token is fetched once it has stayed put this long
const FPS_WINDOW = 60; // frames the frame rate is measured over
// a WebAssembly module with SIMD instructions (the probe ONNX Runtime Web itself uses)
const SIMD_PROBE = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 4, 1, 96, 0, 0, 3, 2, 1, 0, 10, 30, 1, 28, 0, 65,
  0, 253, 15, 253, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 253, 186, 1, 26, 11]);

class LiveError extends Error {}

const shared = {
  root: null, manifest: null, probe: null, engine: null, panels: {}, held: new Set(), passing: false,
  pointerDown: false, watching: false,
};

const url = (path) => new URL(path, shared.root || location.href).href;
const host = (target) => new URL(target).host;
const describe = (error) => (error instanceof LiveError ? error.message
  : `unexpected error: ${String((error && error.message) || error).slice(0, 160)}`);

// -- the runtime, the model and the check face ----------------------------------------------------

function unsupported() {
  if (typeof WebAssembly !== "object" || typeof WebAssembly.validate !== "function") {
    return "this browser has no WebAssembly";
  }
  try {
    if (!WebAssembly.validate(SIMD_PROBE)) return "this browser's WebAssembly has no SIMD";
  } catch (error) {
    return "this browser's WebAssembly has no SIMD";
  }
  return null;
}

async function getJSON(path) {
  let response;
  try {
    response = await fetch(url(path), { cache: "no-store", credentials: "same-origin" });
  } catch (error) {
    throw new LiveError("the server cannot be reached");
  }
  let body = null;
  try {
    body = await response.json();
  } catch (error) { /* not JSON: the status says enough */ }
  if (!response.ok) throw new LiveError((body && body.error) || `the server answered ${response.status}`);
  return body;
}

function manifest() {
  shared.manifest ??= (async () => {
    let body;
    try {
      body = await getJSON("live/manifest.json");
    } catch (error) {
      throw new LiveError(error.message.includes("404") ? "this server has no live mode" : error.message);
    }
    if (!body || !body.available) throw new LiveError((body && body.reason) || "this server has no live mode");
    return body;
  })();
  return shared.manifest;
}

function probeRuntime(m) {
  shared.probe ??= (async () => {
    const target = url(m.runtime.files["ort.wasm.min.js"].url);
    const sameOrigin = new URL(target).origin === location.origin;
    let response;
    try {
      response = await fetch(target, { method: "HEAD", mode: sameOrigin ? "same-origin" : "no-cors", cache: "no-store" });
    } catch (error) {
      throw new LiveError(`ONNX Runtime Web cannot be reached (${host(target)})`);
    }
    if (sameOrigin && !response.ok) throw new LiveError(`ONNX Runtime Web is not served here (${response.status})`);
  })();
  return shared.probe;
}

async function fetchBytes(target, integrity, what) {
  let response;
  try {
    response = await fetch(target, { integrity, cache: "force-cache", credentials: "same-origin" });
  } catch (error) {
    throw new LiveError(`${what} could not be loaded from ${host(target)} (unreachable, or not the pinned file)`);
  }
  if (!response.ok) throw new LiveError(`${what}: ${host(target)} answered ${response.status}`);
  return response.arrayBuffer();
}

function addScript(src, integrity) {
  return new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.src = src;
    script.integrity = integrity;
    script.crossOrigin = "anonymous";
    script.onload = () => (window.ort ? resolve(window.ort)
      : reject(new LiveError("the ONNX Runtime Web script did not start")));
    script.onerror = () => reject(new LiveError(
      `ONNX Runtime Web could not be loaded from ${host(src)} (unreachable, or not the pinned file)`));
    document.head.appendChild(script);
  });
}

function threadCount() {
  // threads need SharedArrayBuffer, which a page only has when it is cross-origin isolated
  if (!self.crossOriginIsolated) return 1;
  return Math.max(1, Math.min(4, Math.ceil((navigator.hardwareConcurrency || 1) / 2)));
}

async function loadRuntime(runtime) {
  const file = (name) => ({ target: url(runtime.files[name].url), integrity: runtime.files[name].integrity });
  const script = file("ort.wasm.min.js");
  const ort = window.ort || await addScript(script.target, script.integrity);
  const glue = file("ort-wasm-simd-threaded.mjs");
  const binary = file("ort-wasm-simd-threaded.wasm");
  const [glueBytes, wasmBytes] = await Promise.all([
    fetchBytes(glue.target, glue.integrity, "ONNX Runtime Web"),
    fetchBytes(binary.target, binary.integrity, "ONNX Runtime Web"),
  ]);
  // both checked against their SRI hashes above; the runtime takes them from memory
  ort.env.wasm.wasmPaths = { mjs: URL.createObjectURL(new Blob([glueBytes], { type: "text/javascript" })) };
  ort.env.wasm.wasmBinary = wasmBytes;
  ort.env.wasm.numThreads = threadCount();
  ort.env.wasm.proxy = false;
  ort.env.logLevel = "error";
  return ort;
}

function engine() {
  shared.engine ??= (async () => {
    const m = await manifest();
    const ort = await loadRuntime(m.runtime);
    const model = await fetchBytes(url(m.model.url), m.model.integrity, "the model");
    let session;
    try {
      session = await ort.InferenceSession.create(new Uint8Array(model), {
        executionProviders: ["wasm"], graphOptimizationLevel: "all",
      });
    } catch (error) {
      throw new LiveError(`this browser cannot run the model (${String(error.message || error).slice(0, 120)})`);
    }
    const ready = new Engine(ort, session, m);
    await ready.selfCheck();
    return ready;
  })();
  return shared.engine;
}

class Engine {
  constructor(ort, session, m) {
    this.ort = ort;
    this.session = session;
    this.nz = m.nz;
    this.nc = m.nc;
    this.input = m.model.input;
    this.output = m.model.output;
    this.vectors = floats(base64Bytes(m.directions.vectors), m.directions.count * m.nz);
    this.directions = m.directions;
    this.check = m.check;
    this.tolerance = m.tolerance;
    this.threads = ort.env.wasm.numThreads;
    this.runs = 0;
    this.runMs = 0;
  }

  async run(z) {
    const started = performance.now();
    const results = await this.session.run({ [this.input]: new this.ort.Tensor("float32", z, [1, this.nz]) });
    const images = results[this.output];
    if (!images || images.data.length !== this.nc * PIXELS) throw new LiveError("the model gave no 64×64 face");
    const rgba = toRGBA(images.data, this.nc);
    if (images.dispose) images.dispose();
    this.runs += 1;
    this.runMs += performance.now() - started;
    return rgba;
  }

  async selfCheck() {
    const rgba = await this.run(decodeToken(this.check.latent, this.nz));
    const { max, within } = compare(rgba, base64Bytes(this.check.pixels), this.nc, this.tolerance.levels);
    this.checked = { max, within };
    if (within < this.tolerance.share) {
      throw new LiveError(`this browser draws the model differently from the server (${(100 * within).toFixed(2)}% `
        + `of pixels within ${this.tolerance.levels}/255, ${max}/255 at worst)`);
    }
  }

  info() {
    return { nz: this.nz, threads: this.threads, runs: this.runs, meanRunMs: this.runs ? this.runMs / this.runs : null,
      check: this.checked, crossOriginIsolated: Boolean(self.crossOriginIsolated) };
  }
}

// -- latents and pixels: dcgan_hf's arithmetic, step for step -------------------------------------

function base64Bytes(text) {
  const binary = atob(text.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(text.length / 4) * 4, "="));
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

function floats(bytes, count) {
  if (bytes.length !== 4 * count) throw new LiveError("the server sent numbers of the wrong size");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const values = new Float32Array(count);
  for (let i = 0; i < count; i++) values[i] = view.getFloat32(4 * i, true);
  return values;
}

function decodeToken(token, nz) {
  // "z2." + base64url of float32 little-endian: dcgan_hf.latent_token.encode_exact
  if (typeof token !== "string" || !token.startsWith("z2.")) throw new LiveError("the server sent an unknown latent");
  return floats(base64Bytes(token.slice(3)), nz);
}

function toByte(x) {
  // images.to_uint8: float32 (x + 1) * 127.5 + 0.5, clamped to [0, 255], truncated (round half up)
  const f = Math.fround;
  const value = f(f(f(x + 1) * 127.5) + 0.5);
  return value >= 255 ? 255 : value > 0 ? Math.floor(value) : 0;
}

function toRGBA(data, nc) {
  const rgba = new Uint8ClampedArray(4 * PIXELS);
  for (let p = 0; p < PIXELS; p++) {
    for (let c = 0; c < 3; c++) rgba[4 * p + c] = toByte(data[(nc === 1 ? 0 : c) * PIXELS + p]);
    rgba[4 * p + 3] = 255;
  }
  return rgba;
}

function compare(rgba, expected, nc, levels) {
  let max = 0;
  let within = 0;
  for (let p = 0; p < PIXELS; p++) {
    for (let c = 0; c < nc; c++) {
      const difference = Math.abs(rgba[4 * p + c] - expected[nc * p + c]);
      max = Math.max(max, difference);
      if (difference <= levels) within += 1;
    }
  }
  return { max, within: within / (PIXELS * nc) };
}

function scale(z, truncation) {
  // torch: float32 tensor × Python float = float32(z × float32(t)); the product of two float32 is exact in a double
  const t = Math.fround(truncation);
  const out = new Float32Array(z.length);
  for (let i = 0; i < z.length; i++) out[i] = z[i] * t;
  return out;
}

function amountOf(value) {
  // the page sends amounts to the server as format_edit's "%g" text: 6 significant digits
  const number = Number(value);
  return Number.isFinite(number) ? Number(number.toPrecision(6)) : 0;
}

function applyEdit(z, amounts, vectors) {
  // Directions.apply: shift = Σ amount·d (float64, in index order), then float32(z + shift)
  const moves = amounts.filter(([, amount]) => amount !== 0);
  if (!moves.length) return z;
  const nz = z.length;
  const shift = new Float64Array(nz);
  for (const [index, amount] of moves) {
    for (let j = 0; j < nz; j++) shift[j] += amount * vectors[index * nz + j];
  }
  const out = new Float32Array(nz);
  for (let j = 0; j < nz; j++) out[j] = z[j] + shift[j];
  return out;
}

function lerpNumber(a, b, weight) {
  // torch.lerp's formula
  return Math.abs(weight) < 0.5 ? a + weight * (b - a) : b - (b - a) * (1 - weight);
}

function lerp(a, b, t) {
  const out = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = lerpNumber(a[i], b[i], t);
  return out;
}

function norm(v) {
  let sum = 0;
  for (let i = 0; i < v.length; i++) sum += v[i] * v[i];
  return Math.sqrt(sum);
}

function slerp(a, b, t) {
  // latent.slerp, in float64: great circle between the unit vectors, norms interpolated linearly
  const normA = norm(a);
  const normB = norm(b);
  let dot = 0;
  for (let i = 0; i < a.length; i++) dot += (a[i] / normA) * (b[i] / normB);
  const theta = Math.acos(Math.min(1, Math.max(-1, dot)));
  if (Math.abs(theta) < 1e-6) return lerp(a, b, t);
  const sin = Math.sin(theta);
  const weightA = Math.sin((1 - t) * theta);
  const weightB = Math.sin(t * theta);
  const radius = lerpNumber(normA, normB, t);
  const out = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = ((weightA * a[i] / normA + weightB * b[i] / normB) / sin) * radius;
  return out;
}

function pathPoint(stops, position, method) {
  // latent.path at a position measured in segments travelled (frame k sits at k·step)
  const segments = stops.length - 1;
  const segment = Math.min(Math.floor(position), segments - 1);
  const t = position - segment;
  if (t <= 1e-12) return stops[segment];
  if (t >= 1 - 1e-12) return stops[segment + 1];
  return (method === "lerp" ? lerp : slerp)(stops[segment], stops[segment + 1], t);
}

function pathStep(segments, frames, closed) {
  return closed ? segments / frames : segments / (frames - 1);
}

function rgbBase64(rgba) {
  let binary = "";
  for (let p = 0; p < PIXELS; p++) binary += String.fromCharCode(rgba[4 * p], rgba[4 * p + 1], rgba[4 * p + 2]);
  return btoa(binary);
}

// -- the page's fields ----------------------------------------------------------------------------

function field(id, selector) {
  return document.querySelector(`#${id} ${selector}`);
}

function textOf(id) {
  const box = field(id, "textarea") || field(id, "input");
  return box ? box.value : "";
}

function numberOf(id) {
  const box = field(id, "input[type=range]") || field(id, "input[type=number]");
  return box ? box.value : "";
}

// Slider drags: while a panel is live, the input events of the sliders it draws stop here (Gradio
// would send each one to the server); a release (pointerup, or the change a key press ends with)
// hands the slider's value to Gradio with one input event, which reaches the server as usual.
function watchSliders() {
  if (shared.watching) return;
  shared.watching = true;
  const release = () => {
    shared.pointerDown = false;
    for (const range of [...shared.held]) commit(range);
  };
  window.addEventListener("pointerdown", () => { shared.pointerDown = true; }, true);
  window.addEventListener("pointerup", release, true);
  window.addEventListener("pointercancel", release, true);
  window.addEventListener("change", (event) => { if (shared.held.has(event.target)) commit(event.target); }, true);
  window.addEventListener("input", (event) => {
    const range = event.target;
    if (shared.passing || !(range instanceof HTMLInputElement) || range.type !== "range") return;
    if (!Object.values(shared.panels).some((panel) => panel.live && panel.holds(range))) return;
    event.stopImmediatePropagation();
    shared.held.add(range);
    mirror(range);
  }, true);
}

function mirror(range) {
  // what the slider shows while Gradio does not hear of it: its number box and its filled track
  let block = range.parentElement;
  while (block && !block.querySelector("input[type=number]")) block = block.parentElement;
  const box = block && block.querySelector("input[type=number]");
  if (box) box.value = range.value;
  const low = Number(range.min);
  const high = Number(range.max);
  range.style.setProperty("--range_progress", `${((Number(range.value) - low) / (high - low)) * 100}%`);
}

function commit(range) {
  shared.held.delete(range);
  shared.passing = true;
  try {
    range.dispatchEvent(new Event("input", { bubbles: true }));
  } finally {
    shared.passing = false;
  }
}

// -- the panels -----------------------------------------------------------------------------------

class Panel {
  constructor(element, config) {
    this.element = element;
    this.config = config;
    this.switch = element.querySelector(".live-switch");
    this.status = element.querySelector(".live-status");
    this.stage = element.querySelector(".live-stage");
    this.canvas = element.querySelector(".live-canvas");
    this.context = this.canvas.getContext("2d");
    this.live = false;
    this.disabled = true;
    this.engine = null;
    this.base = null;
    this.sourceKey = null;
    this.pending = null;
    this.fetching = false;
    this.busy = false;
    this.renderedKey = null;
    this.stats = { ticks: 0, frames: 0, stamps: [], drawnTicks: 0 };
    this.tick = this.tick.bind(this);
    this.switch.addEventListener("change", () => (this.switch.checked ? this.turnOn() : this.turnOff()));
  }

  say(text) {
    this.status.textContent = text;
  }

  enable(text) {
    this.disabled = false;
    this.switch.disabled = false;
    this.say(text);
  }

  disable(reason) {
    this.turnOff(`live mode is off: ${reason}`);
    this.disabled = true;
    this.switch.disabled = true;
  }

  async turnOn() {
    this.switch.disabled = true;
    this.say("loading ONNX Runtime Web and the model…");
    try {
      this.engine = await engine();
    } catch (error) {
      for (const panel of Object.values(shared.panels)) panel.disable(describe(error));
      return;
    }
    this.switch.disabled = false;
    this.switch.checked = true;
    this.live = true;
    this.base = null;
    this.sourceKey = null;
    this.pending = null;
    this.renderedKey = null;
    this.say(`live: drawn in this browser (WASM, ${this.engine.threads} thread${this.engine.threads > 1 ? "s" : ""})`);
    requestAnimationFrame(this.tick);
  }

  turnOff(message) {
    this.live = false;
    this.switch.checked = false;
    this.stage.hidden = true;
    this.stopped();
    for (const range of [...shared.held]) if (this.holds(range)) commit(range);
    this.say(message || "off: the server draws every change");
  }

  fail(error) {
    if (this.live) this.turnOff(`live mode turned off: ${describe(error)}`);
  }

  holds() {
    return false;
  }

  stopped() {}

  tick(now) {
    if (!this.live) return;
    requestAnimationFrame(this.tick);
    this.stats.ticks += 1;
    const source = this.readSource();
    if (source.key !== this.sourceKey) this.follow(source, now);
    if (!this.base || this.busy || this.element.offsetParent === null) return;
    const state = this.readState(now);
    if (state.key === this.renderedKey) return;
    this.busy = true;
    const tickCount = this.stats.ticks;
    let z;
    try {
      z = state.latent();
    } catch (error) {
      this.busy = false;
      this.fail(error);
      return;
    }
    this.engine.run(z).then((rgba) => {
      if (!this.live) return;
      this.context.putImageData(new ImageData(rgba, SIDE, SIDE), 0, 0);
      this.stage.hidden = false;
      this.renderedKey = state.key;
      this.stats.frames += 1;
      this.stats.drawnTicks = tickCount;
      this.stats.stamps.push(performance.now());
      if (this.stats.stamps.length > FPS_WINDOW) this.stats.stamps.shift();
    }, (error) => this.fail(error)).finally(() => { this.busy = false; });
  }

  follow(source, now) {
    // a new face to start from: fetched once its fields have settled and no pointer is down
    if (!this.pending || this.pending.key !== source.key) this.pending = { key: source.key, since: now };
    if (this.fetching || (this.base && (shared.pointerDown || now - this.pending.since < SOURCE_SETTLE_MS))) return;
    this.fetching = true;
    const key = source.key;
    getJSON(this.sourcePath(source)).then((answer) => {
      if (!this.live) return;
      this.base = this.takeBase(answer);
      this.sourceKey = key;
      this.renderedKey = null;
    }).catch((error) => this.fail(error)).finally(() => { this.fetching = false; });
  }

  statistics() {
    const stamps = this.stats.stamps;
    const span = stamps.length > 1 ? stamps[stamps.length - 1] - stamps[0] : 0;
    return {
      live: this.live, disabled: this.disabled, status: this.status.textContent, ticks: this.stats.ticks,
      frames: this.stats.frames, fps: span > 0 ? ((stamps.length - 1) * 1000) / span : null,
      engine: this.engine ? this.engine.info() : null,
    };
  }
}

class EditPanel extends Panel {
  holds(range) {
    return [this.config.truncation, ...this.config.sliders].some((id) => range.closest(`#${id}`));
  }

  readSource() {
    const seed = numberOf(this.config.seed);
    const latent = textOf(this.config.latent).trim();
    return { key: latent ? `token ${latent}` : `seed ${seed}`, seed, latent };
  }

  sourcePath(source) {
    const query = new URLSearchParams({ seed: source.seed, truncation: numberOf(this.config.truncation),
      latent: source.latent });
    return `live/latent?${query}`;
  }

  takeBase(answer) {
    return { z: decodeToken(answer.latent, this.engine.nz), scaled: answer.scaled };
  }

  readState() {
    const truncation = this.base.scaled ? Number(numberOf(this.config.truncation)) : 1;
    const amounts = this.config.sliders.map((id, index) => [index, amountOf(numberOf(id))]);
    const key = `${this.sourceKey}|${truncation}|${amounts.map(([, amount]) => amount).join(",")}`;
    const base = this.base;
    return { key, latent: () => applyEdit(base.scaled ? scale(base.z, truncation) : base.z, amounts,
      this.engine.vectors) };
  }
}

class WalkPanel extends Panel {
  constructor(element, config) {
    super(element, config);
    this.play = element.querySelector(".live-play");
    this.scrub = element.querySelector(".live-scrub");
    this.label = element.querySelector(".live-frame");
    this.position = 0;
    this.playing = false;
    this.last = null;
    this.play.addEventListener("click", () => this.setPlaying(!this.playing));
    this.scrub.addEventListener("input", () => {
      this.setPlaying(false);
      this.position = (Number(this.scrub.value) / 1000) * this.span();
    });
    this.scrub.addEventListener("change", () => this.pickFrame());
  }

  setPlaying(playing) {
    this.playing = playing && this.live;
    this.last = null;
    this.play.textContent = this.playing ? "pause" : "play";
  }

  stopped() {
    this.setPlaying(false);
  }

  readSource() {
    const ids = this.config;
    const source = {
      seed_a: numberOf(ids.seed_a), seed_b: numberOf(ids.seed_b), more_seeds: textOf(ids.more_seeds).trim(),
      start_latent: textOf(ids.start_latent).trim(), end_latent: textOf(ids.end_latent).trim(),
    };
    return { ...source, key: JSON.stringify(source) };
  }

  settings() {
    const ids = this.config;
    const method = document.querySelector(`#${ids.method} input[type=radio]:checked`);
    const closed = field(ids.closed, "input[type=checkbox]");
    return { frames: Math.max(2, Math.round(Number(numberOf(ids.frames)) || 2)), method: method ? method.value : "slerp",
      closed: Boolean(closed && closed.checked), truncation: Number(numberOf(ids.truncation)) || 1 };
  }

  sourcePath(source) {
    const { frames, method, closed, truncation } = this.settings();
    const { key, ...fields } = source;
    return `live/walk?${new URLSearchParams({ ...fields, frames, method, closed, truncation })}`;
  }

  takeBase(answer) {
    return { rows: answer.keyframes.map((token) => decodeToken(token, this.engine.nz)), scaled: answer.scaled,
      stops: null, stopsKey: null };
  }

  span() {
    if (!this.base) return 1;
    return this.base.rows.length - (this.settings().closed ? 0 : 1);
  }

  stops(truncation, closed) {
    const key = `${truncation}|${closed}`;
    if (this.base.stopsKey !== key) {
      const rows = this.base.rows.map((row, index) => (this.base.scaled[index] ? scale(row, truncation) : row));
      this.base.stops = closed ? [...rows, rows[0]] : rows;
      this.base.stopsKey = key;
    }
    return this.base.stops;
  }

  readState(now) {
    const { frames, method, closed, truncation } = this.settings();
    const span = this.span();
    const step = pathStep(span, frames, closed);
    if (this.playing) {
      if (this.last !== null) this.position += ((now - this.last) / this.config.frame_ms) * step;
      this.last = now;
      if (this.position >= span + (closed ? 0 : 1e-9)) this.position = 0;
    }
    this.position = Math.min(Math.max(this.position, 0), closed ? span - 1e-9 : span);
    this.scrub.value = String(Math.round((this.position / span) * 1000));
    this.label.textContent = `frame ${Math.min(frames, Math.round(this.position / step) + 1)} of ${frames}`;
    const position = this.position;
    const key = `${this.sourceKey}|${truncation}|${method}|${closed}|${position}`;
    return { key, latent: () => pathPoint(this.stops(truncation, closed), position, method) };
  }

  pickFrame() {
    // the scrub's nearest frame becomes the "Edit this frame" number (a page value: no server call)
    const { frames, closed } = this.settings();
    const step = pathStep(this.span(), frames, closed);
    const box = field(this.config.frame_number, "input[type=number]");
    if (!box) return;
    box.value = String(Math.min(frames, Math.round(this.position / step) + 1));
    box.dispatchEvent(new Event("input", { bubbles: true }));
  }
}

// -- the page's interface -------------------------------------------------------------------------

async function editLatent({ seed = 0, truncation = 1, latent = "", edit = {} } = {}) {
  const ready = await engine();
  const answer = await getJSON(`live/latent?${new URLSearchParams({ seed, truncation, latent })}`);
  const base = decodeToken(answer.latent, ready.nz);
  const amounts = Object.entries(edit).map(([index, amount]) => [Number(index), amountOf(amount)])
    .sort((a, b) => a[0] - b[0]);
  return applyEdit(answer.scaled ? scale(base, truncation) : base, amounts, ready.vectors);
}

async function walkLatent(fields, frame) {
  const ready = await engine();
  const answer = await getJSON(`live/walk?${new URLSearchParams(fields)}`);
  const rows = answer.keyframes.map((token, index) => (answer.scaled[index]
    ? scale(decodeToken(token, ready.nz), answer.truncation) : decodeToken(token, ready.nz)));
  const stops = answer.closed ? [...rows, rows[0]] : rows;
  const step = pathStep(stops.length - 1, answer.frames, answer.closed);
  return pathPoint(stops, frame * step, answer.method);
}

function installInterface() {
  window.dcganLive ??= {
    ready: () => engine().then((ready) => ready.info()),
    editPixels: async (options) => rgbBase64(await (await engine()).run(await editLatent(options))),
    walkPixels: async (fields, frame) => rgbBase64(await (await engine()).run(await walkLatent(fields, frame))),
    stats: (kind) => (shared.panels[kind] ? shared.panels[kind].statistics() : null),
    canvas: (kind) => rgbBase64(shared.panels[kind].context.getImageData(0, 0, SIDE, SIDE).data),
    setPlaying: (playing) => shared.panels.walk && shared.panels.walk.setPlaying(playing),
  };
}

export async function attach(element, config, root) {
  shared.root ??= root;
  installInterface();
  watchSliders();
  const panel = config.kind === "walk" ? new WalkPanel(element, config) : new EditPanel(element, config);
  shared.panels[config.kind] = panel;
  const reason = unsupported();
  if (reason) return panel.disable(reason);
  panel.say("preparing…");
  try {
    const m = await manifest();
    await probeRuntime(m);
    panel.enable(`off: the server draws every change (ONNX Runtime Web ${m.runtime.version} from `
      + `${m.runtime.source === "cdn" ? "the CDN" : "this server"}, model ${(m.model.bytes / 2 ** 20).toFixed(1)} MB)`);
  } catch (error) {
    panel.disable(describe(error));
  }
  return panel;
}
