// Load driver of bench/delivery.py: opens graphql-transport-ws sockets with the `ws` package, one
// taskEvents subscription each, and counts what arrives. Several drivers may run side by side;
// bench/delivery.py gives each its share of the sockets and merges their reports.
//
// Control: the first stdin line is the configuration (JSON), every later line a command (JSON);
// each command is answered with one JSON line on stdout carrying the command's `id`.
//
//   config   {url, query, sockets: [{index, project, init}], concurrency, openTimeoutMs}
//   connect  {from, to}        open the sockets whose index is in [from, to); answers when all
//                              have sent `subscribe` (or failed): times on the shared clock
//   warm     {round}           how many open sockets have seen warm-up round >= round
//   measure  {low, t0}         start counting: per project, versions <= low[project] are old;
//                              per-second buckets count from t0 (ns)
//   progress {high, from, to}  how many open sockets (index in [from, to)) have seen high[project]
//   live     {from, to}        how many of those sockets have received an event, and when the
//                              last of them first did
//   report   {high, from, to}  the counts, the latency histogram, per-second deliveries (the
//                              counts over the sockets whose index is in [from, to))
//   close    {}                close every socket, answer, exit
//
// Clock: process.hrtime.bigint() is CLOCK_MONOTONIC, the clock Python's time.monotonic_ns()
// reads, so a timestamp written by another process on this machine can be compared with it.
// An event's title is `t<ns>` (measured; ns is that clock when the event was sent) or
// `w<round>` (warm-up); task.version is the per-project sequence number.

import { createInterface } from "node:readline";
import { monitorEventLoopDelay } from "node:perf_hooks";
import WebSocket from "ws";

const PROTOCOL = "graphql-transport-ws";
// Latency histogram: bucket k holds latencies in [BASE * GROWTH^k, BASE * GROWTH^(k+1)) ms.
const BASE_MS = 0.01;
const GROWTH = 1.01;
const BUCKETS = 2200; // up to about 9 hours
const LOG_GROWTH = Math.log(GROWTH);
const MAX_SECONDS = 1200; // per-second buckets kept
const MAX_HOLE_SPAN = 100000; // a jump larger than this counts as gaps without remembering them

const now = () => Number(process.hrtime.bigint());

let config = null;
const sockets = []; // this driver's share, in config order
const byIndex = new Map();

let measuring = false;
let low = {};
let t0 = 0;
let histogram = new Float64Array(BUCKETS);
let perSecond = new Float64Array(MAX_SECONDS);
let within1s = 0;
let latencyCount = 0;
let latencyMax = 0;
let frames = 0;
let frameBytes = 0;
let measuredBytes = 0;
let measuredFrames = 0;
let lastReceive = 0;
let sample = null; // one measured frame, as received
const LAG_RESOLUTION_MS = 10;
const delay = monitorEventLoopDelay({ resolution: LAG_RESOLUTION_MS });
delay.enable();
let cpuStart = process.cpuUsage();
let wallStart = now();

function newState(spec) {
  return {
    index: spec.index,
    project: String(spec.project),
    init: spec.init,
    ws: null,
    open: false,
    error: null,
    closed: null,
    warm: -1,
    firstAt: 0, // first `next` of any kind
    startAt: 0,
    subscribedAt: 0,
    max: 0, // highest version seen in the measured range
    holes: null, // versions skipped above `low`, not (yet) received
    gapsForgotten: 0,
    delivered: 0,
    duplicates: 0,
    outOfOrder: 0,
    stale: 0,
    beyond: 0,
    errors: 0,
    lastError: null,
  };
}

function record(latencyMs) {
  let k = latencyMs <= BASE_MS ? 0 : Math.floor(Math.log(latencyMs / BASE_MS) / LOG_GROWTH);
  if (k >= BUCKETS) k = BUCKETS - 1;
  histogram[k] += 1;
  latencyCount += 1;
  if (latencyMs <= 1000) within1s += 1;
  if (latencyMs > latencyMax) latencyMax = latencyMs;
}

function onMessage(state, data) {
  const at = now();
  const text = typeof data === "string" ? data : data.toString();
  let message;
  try {
    message = JSON.parse(text);
  } catch {
    state.errors += 1;
    state.lastError = "unparsable frame";
    return;
  }
  const kind = message.type;
  if (kind === "ping") {
    state.ws.send('{"type":"pong"}');
    return;
  }
  if (kind === "pong" || kind === "connection_ack") return;
  if (kind !== "next") {
    state.errors += 1;
    state.lastError = text.slice(0, 300);
    return;
  }
  const payload = message.payload;
  if (payload.errors) {
    state.errors += 1;
    state.lastError = JSON.stringify(payload.errors).slice(0, 300);
    return;
  }
  if (state.firstAt === 0) state.firstAt = at;
  frames += 1;
  frameBytes += text.length;
  const task = payload.data.taskEvents.task;
  const title = task.title;
  if (title.charCodeAt(0) === 119 /* w */) {
    const round = Number(title.slice(1));
    if (round > state.warm) state.warm = round;
    return;
  }
  if (!measuring) return;
  const version = task.version;
  const floor = low[state.project] ?? 0;
  if (version <= floor) {
    state.stale += 1;
    return;
  }
  measuredBytes += text.length;
  measuredFrames += 1;
  if (sample === null) sample = text;
  if (version === state.max + 1) {
    state.max = version;
  } else if (version > state.max) {
    const span = version - state.max - 1;
    if (span > MAX_HOLE_SPAN) {
      state.gapsForgotten += span;
    } else {
      if (state.holes === null) state.holes = new Set();
      for (let v = state.max + 1; v < version; v++) state.holes.add(v);
    }
    state.max = version;
  } else if (state.holes !== null && state.holes.delete(version)) {
    state.outOfOrder += 1;
  } else {
    state.duplicates += 1;
    return;
  }
  state.delivered += 1;
  lastReceive = at;
  if (title.charCodeAt(0) === 116 /* t */) {
    record((at - Number(title.slice(1))) / 1e6);
  }
  const second = Math.floor((at - t0) / 1e9);
  if (second >= 0 && second < MAX_SECONDS) perSecond[second] += 1;
}

function openOne(state) {
  return new Promise((resolve) => {
    state.startAt = now();
    let settled = false;
    const done = (error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (error) {
        state.error = error;
        try {
          ws.terminate();
        } catch {
          // already gone
        }
      }
      resolve();
    };
    const ws = new WebSocket(config.url, PROTOCOL, { perMessageDeflate: false, handshakeTimeout: config.openTimeoutMs });
    state.ws = ws;
    const timer = setTimeout(() => done("timed out before subscribe"), config.openTimeoutMs);
    ws.on("open", () => {
      ws.send(JSON.stringify({ type: "connection_init", payload: state.init }));
    });
    ws.on("message", (data) => {
      if (!state.open) {
        const message = JSON.parse(data.toString());
        if (message.type === "ping") {
          ws.send('{"type":"pong"}');
          return;
        }
        if (message.type !== "connection_ack") {
          done(`no connection_ack: ${data.toString().slice(0, 120)}`);
          return;
        }
        state.open = true;
        const payload = { query: config.query, variables: { p: state.project } };
        ws.send(JSON.stringify({ id: "1", type: "subscribe", payload }), () => {
          state.subscribedAt = now();
          done(null);
        });
        return;
      }
      onMessage(state, data);
    });
    ws.on("error", (error) => {
      if (!settled) done(`${error.code ?? "error"}: ${error.message}`.slice(0, 160));
    });
    ws.on("close", (code, reason) => {
      if (state.open && state.closed === null) state.closed = `${code} ${reason.toString()}`.trim();
      state.open = false;
      done(`closed ${code} before subscribe`);
    });
  });
}

async function connect(from, to) {
  const batch = sockets.filter((s) => s.index >= from && s.index < to);
  const started = now();
  let next = 0;
  const worker = async () => {
    while (next < batch.length) {
      const state = batch[next++];
      await openOne(state);
    }
  };
  const lanes = Math.max(1, Math.min(config.concurrency, batch.length));
  await Promise.all(Array.from({ length: lanes }, worker));
  const errors = {};
  let ok = 0;
  let last = started;
  for (const s of batch) {
    if (s.error === null && s.open) {
      ok += 1;
      if (s.subscribedAt > last) last = s.subscribedAt;
    } else {
      const key = s.error ?? s.closed ?? "unknown";
      errors[key] = (errors[key] ?? 0) + 1;
    }
  }
  return { ok, failed: batch.length - ok, errors, start: started, end: last };
}

const live = () => sockets.filter((s) => s.open);

function reset(message) {
  measuring = true;
  low = message.low;
  t0 = message.t0;
  histogram = new Float64Array(BUCKETS);
  perSecond = new Float64Array(MAX_SECONDS);
  within1s = latencyCount = latencyMax = 0;
  measuredBytes = measuredFrames = 0;
  lastReceive = 0;
  sample = null;
  for (const s of sockets) {
    s.max = low[s.project] ?? 0;
    s.holes = null;
    s.gapsForgotten = 0;
    s.delivered = s.duplicates = s.outOfOrder = s.stale = s.beyond = 0;
  }
  delay.reset();
  cpuStart = process.cpuUsage();
  wallStart = now();
}

const inRange = (s, from, to) => s.index >= (from ?? 0) && s.index < (to ?? Infinity);

function report(high, from, to) {
  let expected = 0;
  let delivered = 0;
  let gaps = 0;
  let undelivered = 0;
  let duplicates = 0;
  let outOfOrder = 0;
  let stale = 0;
  let beyond = 0;
  let errors = 0;
  let gapFree = 0;
  let counted = 0;
  const lastErrors = {};
  const closed = {};
  for (const s of sockets) {
    if (!inRange(s, from, to)) continue;
    if (s.subscribedAt === 0) continue; // never subscribed: a connect error, reported there
    counted += 1;
    const floor = low[s.project] ?? 0;
    const top = high[s.project] ?? floor;
    expected += Math.max(0, top - floor);
    let holesBelow = s.gapsForgotten;
    let above = 0;
    if (s.holes !== null) {
      for (const v of s.holes) {
        if (v <= top) holesBelow += 1;
        else above += 1;
      }
    }
    const reached = Math.min(s.max, top);
    const socketGaps = holesBelow;
    const socketUndelivered = Math.max(0, top - reached);
    beyond += Math.max(0, s.max - top) - above;
    gaps += socketGaps;
    undelivered += socketUndelivered;
    delivered += s.delivered;
    duplicates += s.duplicates;
    outOfOrder += s.outOfOrder;
    stale += s.stale;
    errors += s.errors;
    if (s.lastError !== null) lastErrors[s.lastError] = (lastErrors[s.lastError] ?? 0) + 1;
    if (s.closed !== null) closed[s.closed] = (closed[s.closed] ?? 0) + 1;
    if (socketGaps === 0 && socketUndelivered === 0 && s.open) gapFree += 1;
  }
  const cpu = process.cpuUsage(cpuStart);
  const wall = (now() - wallStart) / 1e9;
  // The histogram, sparse: [bucket, count] pairs.
  const buckets = [];
  for (let k = 0; k < BUCKETS; k++) if (histogram[k] > 0) buckets.push([k, histogram[k]]);
  let lastSecond = MAX_SECONDS - 1;
  while (lastSecond >= 0 && perSecond[lastSecond] === 0) lastSecond--;
  return {
    sockets: counted,
    open: live().length,
    expected,
    delivered,
    gaps,
    undelivered,
    duplicates,
    outOfOrder,
    stale,
    beyond,
    errors,
    lastErrors,
    closed,
    gapFree,
    latencyCount,
    within1s,
    latencyMaxMs: latencyMax,
    buckets,
    perSecond: Array.from(perSecond.slice(0, lastSecond + 1)),
    frames,
    frameBytes,
    measuredBytes,
    measuredFrames,
    lastReceive,
    sample,
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
    wallSeconds: wall,
    // The histogram holds the time between two samples, resolution included.
    loopDelayP99Ms: Math.max(0, delay.percentile(99) / 1e6 - LAG_RESOLUTION_MS),
    loopDelayMaxMs: Math.max(0, delay.max / 1e6 - LAG_RESOLUTION_MS),
    rssMiB: process.memoryUsage().rss / 1048576,
  };
}

async function closeAll() {
  const closing = sockets
    .filter((s) => s.ws !== null)
    .map(
      (s) =>
        new Promise((resolve) => {
          const ws = s.ws;
          if (ws.readyState === WebSocket.CLOSED) return resolve();
          const timer = setTimeout(() => {
            ws.terminate();
            resolve();
          }, 3000);
          ws.once("close", () => {
            clearTimeout(timer);
            resolve();
          });
          s.open = false;
          ws.close(1000);
        }),
    );
  await Promise.all(closing);
}

function answer(id, body) {
  process.stdout.write(JSON.stringify({ id, ...body }) + "\n");
}

async function handle(message) {
  const { id, cmd } = message;
  switch (cmd) {
    case "connect":
      answer(id, await connect(message.from, message.to));
      break;
    case "warm": {
      const open = live();
      answer(id, { open: open.length, warm: open.filter((s) => s.warm >= message.round).length });
      break;
    }
    case "measure":
      reset(message);
      answer(id, {});
      break;
    case "progress": {
      const open = live().filter((s) => inRange(s, message.from, message.to));
      const done = open.filter((s) => s.max >= (message.high[s.project] ?? 0)).length;
      answer(id, { open: open.length, done });
      break;
    }
    case "live": {
      const batch = sockets.filter((s) => s.index >= message.from && s.index < message.to && s.open);
      const got = batch.filter((s) => s.firstAt > 0);
      answer(id, {
        open: batch.length,
        live: got.length,
        last: got.reduce((m, s) => Math.max(m, s.firstAt), 0),
      });
      break;
    }
    case "report":
      answer(id, report(message.high, message.from, message.to));
      break;
    case "close":
      await closeAll();
      answer(id, {});
      process.exit(0);
      break;
    default:
      answer(id, { error: `unknown command ${cmd}` });
  }
}

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
let queue = Promise.resolve();
lines.on("line", (line) => {
  if (!line.trim()) return;
  const message = JSON.parse(line);
  if (config === null) {
    config = message;
    for (const spec of config.sockets) {
      const state = newState(spec);
      sockets.push(state);
      byIndex.set(state.index, state);
    }
    config.sockets = null;
    process.stdout.write(JSON.stringify({ ready: sockets.length }) + "\n");
    return;
  }
  // One command at a time, in order (connect is long; the others wait for it).
  queue = queue.then(() => handle(message)).catch((error) => answer(message.id, { error: String(error) }));
});
lines.on("close", () => {
  // The orchestrator went away: do not linger.
  closeAll().finally(() => process.exit(0));
});
