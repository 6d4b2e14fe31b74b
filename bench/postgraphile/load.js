// The load driver of bench/http.py: autocannon, the same for every server.
//
// Reads one JSON line on stdin: {url, headers, bodies, connections, warmup, duration, rate}.
// `bodies` are POSTed in turn (one body: the same request every time; several: round-robin
// over all connections, e.g. updateTask over every task). `ok` counts the 2xx answers with
// `"data"` and without `"errors"`; `mismatches` the other 2xx answers.
//
// rate 0: autocannon, closed loop, each connection sending its next request when the last one
// is answered. rate > 0: an open loop instead, request i sent at start + i / rate whatever the
// earlier ones are doing, over a keep-alive agent of `connections` sockets (a request waiting
// for a free socket waits on the clock), latency from the time it was due to its last byte.
// autocannon's own fixed rate (overallRate) is not used: it lets each connection send its
// share of a second back to back and then pause until the next second, and corrects for
// coordinated omission with an expected interval of ceil(1 / per-connection rate) = 1 ms, which
// fills the histogram with made-up small values.
//
// Runs `warmup` seconds (not reported), prints {"event":"warm"}, waits for a line on stdin
// (the bench reads the server's CPU meanwhile), runs `duration` seconds and prints
// {"event":"result", ...} with autocannon's figures. Exits when stdin closes.
"use strict";

const http = require("node:http");
const readline = require("node:readline");
const autocannon = require("autocannon");

const lines = readline.createInterface({ input: process.stdin });
const waiting = []; // readers waiting for a line
const queued = []; // lines no reader was waiting for yet
lines.on("line", (line) => (waiting.length ? waiting.shift()(line) : queued.push(line)));
lines.on("close", () => process.exit(0));
const nextLine = () => new Promise((resolve) => (queued.length ? resolve(queued.shift()) : waiting.push(resolve)));

let sent = 0;
const verify = (body) => body.includes('"data"') && !body.includes('"errors"');

let good = 0; // 2xx answers with data and without errors, in the current run

function options(config, seconds) {
  const { bodies } = config;
  const onResponse = (status, body) => {
    if (status >= 200 && status <= 299 && verify(body)) good++;
  };
  const request =
    bodies.length === 1
      ? { method: "POST", body: bodies[0], onResponse }
      : {
          method: "POST",
          setupRequest(req) {
            req.body = bodies[sent++ % bodies.length];
            return req;
          },
          onResponse,
        };
  return {
    url: config.url,
    connections: config.connections,
    duration: seconds,
    headers: { "content-type": "application/json", ...config.headers },
    requests: [request],
  };
}

function percentile(sorted, p) {
  if (!sorted.length) return 0;
  return sorted[Math.max(0, Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1))];
}

function openLoop(config, seconds) {
  const url = new URL(config.url);
  const agent = new http.Agent({ keepAlive: true, maxSockets: config.connections });
  const count = Math.max(1, Math.round(config.rate * seconds));
  const interval = 1000 / config.rate;
  const out = { total: 0, ok: 0, non2xx: 0, errors: 0, timeouts: 0, mismatches: 0, bytes: 0 };
  const latencies = [];
  const start = performance.now();
  let last = start;
  return new Promise((resolve) => {
    let index = 0;
    const answered = (due, request) => {
      if (request.answered) return;
      request.answered = true;
      last = performance.now();
      latencies.push(last - due);
      if (++out.total < count) return;
      agent.destroy();
      latencies.sort((a, b) => a - b);
      const duration = (last - start) / 1000;
      resolve({
        ...out,
        duration,
        average: out.total / duration,
        p50: percentile(latencies, 50),
        p90: percentile(latencies, 90),
        p99: percentile(latencies, 99),
        max: latencies[latencies.length - 1],
      });
    };
    const send = (due) => {
      const body = config.bodies[sent++ % config.bodies.length];
      const headers = { "content-type": "application/json", "content-length": Buffer.byteLength(body) };
      const req = http.request(
        { agent, host: url.hostname, port: url.port, path: url.pathname, method: "POST", headers: { ...headers, ...config.headers } },
        (res) => {
          const chunks = [];
          res.on("data", (chunk) => chunks.push(chunk));
          res.on("end", () => {
            const text = Buffer.concat(chunks).toString();
            out.bytes += text.length;
            if (res.statusCode < 200 || res.statusCode > 299) out.non2xx++;
            else if (verify(text)) out.ok++;
            else out.mismatches++;
            answered(due, req);
          });
        },
      );
      req.setTimeout(30000, () => {
        out.timeouts++;
        req.timedOut = true;
        req.destroy(new Error("timeout"));
      });
      req.on("error", () => {
        if (!req.timedOut && !req.answered) out.errors++;
        answered(due, req);
      });
      req.end(body);
    };
    const tick = () => {
      const now = performance.now();
      for (; index < count && start + index * interval <= now; index++) send(start + index * interval);
      if (index < count) setTimeout(tick, Math.max(0, start + index * interval - performance.now()));
    };
    tick();
  });
}

function run(opts) {
  good = 0;
  return new Promise((resolve, reject) => {
    autocannon(opts, (error, result) => (error ? reject(error) : resolve(result)));
  });
}

async function main() {
  const config = JSON.parse(await nextLine());
  if (config.rate > 0) {
    if (config.warmup > 0) await openLoop(config, config.warmup);
    process.stdout.write(JSON.stringify({ event: "warm" }) + "\n");
    await nextLine();
    const result = await openLoop(config, config.duration);
    process.stdout.write(JSON.stringify({ event: "result", ...result }) + "\n");
    return;
  }
  if (config.warmup > 0) await run(options(config, config.warmup));
  process.stdout.write(JSON.stringify({ event: "warm" }) + "\n");
  await nextLine();
  const r = await run(options(config, config.duration));
  const result = {
    event: "result",
    duration: r.duration,
    total: r.requests.total,
    average: r.requests.average,
    ok: good,
    non2xx: r.non2xx,
    errors: r.errors,
    timeouts: r.timeouts,
    mismatches: r["2xx"] - good,
    p50: r.latency.p50,
    p90: r.latency.p90,
    p99: r.latency.p99,
    max: r.latency.max,
    bytes: r.throughput.total,
  };
  process.stdout.write(JSON.stringify(result) + "\n");
}

main().catch((error) => {
  process.stdout.write(JSON.stringify({ event: "error", error: String(error && error.stack) }) + "\n");
  process.exit(1);
});
