// Reference server of bench/delivery.py: graphql-ws 6 over ws 8 with graphql-js 16, the same
// `taskEvents(projectId: ID!, after: String)` subscription shape as pulseboard's schema.graphql
// (the types and fields the bench selects), executed per subscriber as graphql-ws does by
// default. Events come from an in-process timer; nothing is stored.
//
//   node bench/reference/server.mjs --port 9000 --projects 1000000001,1000000002
//
// It accepts any connection_init payload. Control on stdin, one JSON command a line, each
// answered on stdout with one JSON line carrying the command's `id`:
//
//   warm {round}          one event per project, title `w<round>`; answers the versions
//   run  {rate, count}    `count` events at `rate` per second in total, round-robin over the
//                         projects (event i is due at start + i / rate); title `t<ns>` with ns
//                         the monotonic clock (process.hrtime) just before it is published;
//                         answers when the last is published (or on `stop`)
//   stop {}               ends a run early
//   versions {}           the last version of each project

import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { buildSchema } from "graphql";
import { useServer } from "graphql-ws/use/ws";
import { WebSocketServer } from "ws";

const { values } = parseArgs({
  options: {
    host: { type: "string", default: "127.0.0.1" },
    port: { type: "string" },
    projects: { type: "string" },
  },
});
if (!["127.0.0.1", "localhost", "::1"].includes(values.host)) {
  console.error("server.mjs: loopback addresses only");
  process.exit(2);
}
const projects = values.projects.split(",");

// The types and fields of pulseboard's schema.graphql that the bench's selection reaches.
const schema = buildSchema(`
  scalar DateTime
  enum Role { ADMIN AGENT MEMBER }
  enum TaskStatus { TODO IN_PROGRESS IN_REVIEW DONE }
  enum TaskPriority { LOW MEDIUM HIGH URGENT }
  enum TaskEventType { CREATED UPDATED MOVED ASSIGNED COMPLETED DELETED COMMENTED }
  type User { id: ID! email: String! name: String! role: Role! }
  type FieldChange { field: String! from: String to: String }
  type Task {
    id: ID!
    title: String!
    description: String!
    status: TaskStatus!
    position: Int!
    priority: TaskPriority!
    progress: Int!
    version: Int!
    assignee: User
  }
  type TaskEvent {
    cursor: String!
    type: TaskEventType!
    task: Task!
    changes: [FieldChange!]!
    occurredAt: DateTime!
    actor: User
  }
  type Query { ok: Boolean }
  type Subscription { taskEvents(projectId: ID!, after: String): TaskEvent! }
`);

// Per project: the subscribers' push functions, the version counter, the task's last title.
const listeners = new Map(projects.map((p) => [p, new Set()]));
const versions = new Map(projects.map((p) => [p, 0]));
const titles = new Map(projects.map((p) => [p, "seed"]));
const writers = new Map(projects.map((p, i) => [p, { id: String(i + 2), email: `bench-writer-${p}@example.test`, name: `bench-writer-${p}`, role: "ADMIN" }]));

/** An async iterator of one subscriber's events: unbounded queue, like most pub/sub helpers. */
function subscription(project) {
  const set = listeners.get(project);
  if (set === undefined) throw new Error(`Project ${project} not found.`);
  let queue = [];
  let head = 0;
  let waiting = null;
  let finished = false;
  const push = (event) => {
    if (waiting !== null) {
      const resolve = waiting;
      waiting = null;
      resolve({ value: event, done: false });
    } else {
      queue.push(event);
    }
  };
  set.add(push);
  const finish = () => {
    finished = true;
    set.delete(push);
    queue = [];
    head = 0;
    if (waiting !== null) {
      waiting({ value: undefined, done: true });
      waiting = null;
    }
    return Promise.resolve({ value: undefined, done: true });
  };
  return {
    [Symbol.asyncIterator]() {
      return this;
    },
    next() {
      if (head < queue.length) {
        const value = queue[head];
        queue[head++] = undefined;
        if (head > 1024 && head * 2 > queue.length) {
          queue = queue.slice(head);
          head = 0;
        }
        return Promise.resolve({ value, done: false });
      }
      if (finished) return Promise.resolve({ value: undefined, done: true });
      return new Promise((resolve) => {
        waiting = resolve;
      });
    },
    return: finish,
    throw(error) {
      finish();
      return Promise.reject(error);
    },
  };
}

const roots = {
  subscription: {
    // graphql-js calls this once per subscription; each value it yields is executed against the
    // subscriber's selection (graphql-ws's default `subscribe` / `execute`).
    taskEvents: ({ projectId }) => subscription(String(projectId)),
  },
};

/** pulseboard's DateTime form: isoformat() of an aware UTC datetime, microseconds. */
function isoformat(date) {
  return date.toISOString().replace("Z", "000+00:00");
}

// base64url with padding, as Python's urlsafe_b64encode writes it.
const cursor = (project, seq) =>
  Buffer.from(`project:${project}#${seq}`).toString("base64").replace(/\+/g, "-").replace(/\//g, "_");

function publish(index, title) {
  const project = projects[index % projects.length];
  const version = versions.get(project) + 1;
  versions.set(project, version);
  const stamped = title ?? `t${process.hrtime.bigint()}`;
  const previous = titles.get(project);
  titles.set(project, stamped);
  const event = {
    taskEvents: {
      cursor: cursor(project, version),
      type: "UPDATED",
      occurredAt: isoformat(new Date()),
      task: {
        id: String(projects.indexOf(project) + 1),
        title: stamped,
        description: "",
        status: "TODO",
        position: 0,
        priority: "MEDIUM",
        progress: 0,
        version,
        assignee: null,
      },
      actor: writers.get(project),
      changes: [{ field: "title", from: previous, to: stamped }],
    },
  };
  for (const push of listeners.get(project)) push(event);
}

let running = null;

function run(rate, count) {
  return new Promise((resolve) => {
    const started = Number(process.hrtime.bigint());
    let i = 0;
    let stopped = false;
    let maxLateMs = 0;
    const finish = () => {
      running = null;
      resolve({ sent: i, seconds: (Number(process.hrtime.bigint()) - started) / 1e9, maxLateMs });
    };
    running = { stop: () => (stopped = true) };
    const tick = () => {
      const at = Number(process.hrtime.bigint());
      while (i < count && !stopped && started + (i * 1e9) / rate <= at) {
        maxLateMs = Math.max(maxLateMs, (at - (started + (i * 1e9) / rate)) / 1e6);
        publish(i, null);
        i += 1;
      }
      if (i >= count || stopped) {
        finish();
        return;
      }
      const due = started + (i * 1e9) / rate;
      setTimeout(tick, Math.max(0, (due - Number(process.hrtime.bigint())) / 1e6));
    };
    tick();
  });
}

const wss = new WebSocketServer({ host: values.host, port: Number(values.port), path: "/graphql", perMessageDeflate: false });
useServer({ schema, roots }, wss);
wss.on("listening", () => process.stdout.write(JSON.stringify({ ready: true, pid: process.pid }) + "\n"));

const answer = (id, body) => process.stdout.write(JSON.stringify({ id, ...body }) + "\n");
const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
lines.on("line", async (line) => {
  if (!line.trim()) return;
  const message = JSON.parse(line);
  const { id, cmd } = message;
  if (cmd === "warm") {
    projects.forEach((_, i) => publish(i, `w${message.round}`));
    answer(id, { versions: Object.fromEntries(versions) });
  } else if (cmd === "run") {
    const result = await run(message.rate, message.count);
    answer(id, { ...result, versions: Object.fromEntries(versions) });
  } else if (cmd === "stop") {
    running?.stop();
    answer(id, {});
  } else if (cmd === "versions") {
    answer(id, { versions: Object.fromEntries(versions) });
  } else {
    answer(id, { error: `unknown command ${cmd}` });
  }
});
lines.on("close", () => process.exit(0));
