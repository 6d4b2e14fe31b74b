// Subscribes to taskEvents with the reference graphql-transport-ws client (graphql-ws) and reports
// on stdout, one line each, for tests/test_graphql_ws_client.py:
//
//   READY                 the socket is acknowledged and the subscribe message has been sent
//   EVENT <json>          one taskEvents event (the `data.taskEvents` object)
//   ERROR <json>          the operation's `error` message: graphql-ws passes the GraphQL errors
//   CLOSED <json>         the socket closed before the events came: {"code": ..., "reason": ...}
//
// Exits 0 after --count events; 1 after ERROR or CLOSED; 2 on any other failure and 3 on
// timeout (both explained on stderr).
//
// usage: node subscribe.mjs --url ws://host:port/graphql --token JWT --project ID
//                           [--count N] [--timeout-ms MS] [--ready-delay-ms MS]

import { parseArgs } from 'node:util';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

const { values: args } = parseArgs({
  options: {
    url: { type: 'string' },
    token: { type: 'string' },
    project: { type: 'string' },
    count: { type: 'string', default: '1' },
    'timeout-ms': { type: 'string', default: '30000' },
    'ready-delay-ms': { type: 'string', default: '300' },
  },
});

for (const name of ['url', 'token', 'project']) {
  if (!args[name]) {
    process.stderr.write(`subscribe.mjs: --${name} is required\n`);
    process.exit(2);
  }
}

const TASK_EVENTS = `
  subscription TaskEvents($projectId: ID!) {
    taskEvents(projectId: $projectId) {
      cursor
      type
      occurredAt
      task { id title status position progress }
      actor { id }
      changes { field from to }
    }
  }
`;

const wanted = Number(args.count);
const timeoutMs = Number(args['timeout-ms']);
const readyDelayMs = Number(args['ready-delay-ms']);
let received = 0;
let finished = false;
let closed = false;

function line(text) {
  process.stdout.write(text + '\n');
}

// process.exit() may drop buffered stdout when it is a pipe: exit once it has been flushed.
function exit(code) {
  process.stdout.write('', () => process.exit(code));
}

// Only the first outcome counts (disposing of the client completes the subscription, say).
function finish() {
  if (finished) return false;
  finished = true;
  clearTimeout(timer);
  return true;
}

const client = createClient({
  url: args.url,
  webSocketImpl: WebSocket,
  connectionParams: { authorization: `Bearer ${args.token}` },
  retryAttempts: 0,
  on: {
    closed: () => {
      closed = true;
    },
    // After connection_ack; the client sends the subscribe message right after this. There is
    // no acknowledgement of a subscription in the protocol, so give the server a moment to
    // start the stream before saying we are ready.
    connected: () => setTimeout(() => line('READY'), readyDelayMs),
  },
});

const timer = setTimeout(() => {
  finished = true;
  process.stderr.write(`subscribe.mjs: timed out after ${timeoutMs} ms with ${received} of ${wanted} events\n`);
  exit(3);
}, timeoutMs);

// Says goodbye properly (complete, then a 1000 close), waiting at most a second for the close.
async function done() {
  const deadline = Date.now() + 1000;
  unsubscribe();
  await client.dispose();
  while (!closed && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
  exit(0);
}

const unsubscribe = client.subscribe(
  { query: TASK_EVENTS, variables: { projectId: args.project } },
  {
    next(result) {
      if (finished) return;
      if (result.errors) {
        finish();
        line('ERROR ' + JSON.stringify(result.errors));
        exit(1);
        return;
      }
      received += 1;
      line('EVENT ' + JSON.stringify(result.data.taskEvents));
      if (received >= wanted && finish()) done();
    },
    error(error) {
      if (!finish()) return;
      if (Array.isArray(error)) {
        line('ERROR ' + JSON.stringify(error));
        exit(1);
      } else if (error && typeof error.code === 'number' && 'reason' in error) {
        line('CLOSED ' + JSON.stringify({ code: error.code, reason: error.reason }));
        exit(1);
      } else {
        // An Error, or the WebSocket's error event (which carries the Error).
        const cause = error instanceof Error ? error : (error?.error ?? error);
        process.stderr.write(`subscribe.mjs: ${cause?.stack ?? cause?.message ?? String(cause)}\n`);
        exit(2);
      }
    },
    complete() {
      if (!finish()) return;
      process.stderr.write(`subscribe.mjs: the server completed the subscription after ${received} events\n`);
      exit(2);
    },
  },
);
