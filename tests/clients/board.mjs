// A board kept in Apollo Client 4's normalized cache (InMemoryCache) from task events alone, for
// tests/test_board_property.py: the whole board is loaded with the paginated `tasks` query over
// HTTP, then a taskEvents subscription (GraphQLWsLink over @pulseboard/client) resumes after the
// cursor the test gives. Each event's own task lands on Task:<id> by normalization. Its `displaced`
// entries are TaskPosition objects: Apollo normalizes them to TaskPosition:<id>, a different entity
// from Task:<id>, so this script writes each one's status and position onto Task:<id> with
// cache.modify (deliberately: no type policy aliases the two types). A DELETED task is evicted
// (then cache.gc()). The board's task ids are kept here (the snapshot's, plus created, minus
// deleted), each retained in the cache so that gc() keeps it; DUMP reads them back from the cache
// with readFragment. One line each on stdout:
//
//   READY            the snapshot is in the cache, the socket is acknowledged and the subscription
//                    has been sent
//   APPLIED <n>      an event was applied: n events so far
//   BOARD <json>     after DUMP on stdin: {taskId: {"status": ..., "position": ...}} as the cache
//                    has it (null for a task the cache cannot give whole); then it keeps running
//
// Exits 0 after EXIT on stdin (or when stdin closes); 1 when the script itself fails, an operation
// fails, or the cache disagrees with an event (explained on stderr); 3 on timeout.
//
// usage: node board.mjs --http-url http://host:port/graphql --ws-url ws://host:port/graphql
//                       --token JWT --project ID --after CURSOR [--skip-displaced] [--timeout-ms MS]
// (--skip-displaced ignores every event's `displaced`: the board then goes wrong, which the test's
// comparison must notice)

import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { ApolloClient, ApolloLink, HttpLink, InMemoryCache, gql } from '@apollo/client';
import { GraphQLWsLink } from '@apollo/client/link/subscriptions';
import { getMainDefinition } from '@apollo/client/utilities';
import { createPulseboardClient } from '@pulseboard/client';
import WebSocket from 'ws';

const { values: args } = parseArgs({
  options: {
    'http-url': { type: 'string' },
    'ws-url': { type: 'string' },
    token: { type: 'string' },
    project: { type: 'string' },
    after: { type: 'string' },
    'skip-displaced': { type: 'boolean', default: false },
    'timeout-ms': { type: 'string', default: '30000' },
  },
});

for (const name of ['http-url', 'ws-url', 'token', 'project', 'after']) {
  if (!args[name]) {
    process.stderr.write(`board.mjs: --${name} is required\n`);
    process.exit(2);
  }
}

const PAGE_SIZE = 100; // the server's largest page (page_size_max)

const TASKS = gql`
  query BoardTasks($projectId: ID!, $first: Int, $after: String) {
    tasks(projectId: $projectId, first: $first, after: $after) {
      edges { node { id title status position progress version assignee { id } } }
      pageInfo { hasNextPage endCursor }
    }
  }
`;

// The selection of the Python follower's subscription (EVENTS in tests/test_board_events.py).
const TASK_EVENTS = gql`
  subscription BoardEvents($projectId: ID!, $after: String) {
    taskEvents(projectId: $projectId, after: $after) {
      cursor type changes { field from to }
      task { id title status position progress completedAt version assignee { id } }
      displaced { id status position }
      comment { id body author { id name } }
    }
  }
`;

const BOARD_TASK = gql`
  fragment BoardTask on Task { id status position }
`;

function line(kind, value) {
  process.stdout.write(value === undefined ? `${kind}\n` : `${kind} ${JSON.stringify(value)}\n`);
}

// process.exit() may drop buffered stdout when it is a pipe: exit once it has been flushed.
function exit(code) {
  process.stdout.write('', () => process.exit(code));
}

function fail(message) {
  process.stderr.write(`board.mjs: ${message}\n`);
  exit(1);
}

const timeoutMs = Number(args['timeout-ms']);
setTimeout(() => {
  process.stderr.write(`board.mjs: timed out after ${timeoutMs} ms\n`);
  exit(3);
}, timeoutMs).unref();

let connected;
const acknowledged = new Promise((resolve) => (connected = resolve));
const pulseboard = createPulseboardClient({
  url: args['ws-url'],
  webSocketImpl: WebSocket,
  token: () => args.token,
  on: { connected: () => connected() },
  onStateChange: (state) => {
    if (state.status === 'failed') fail(`the socket failed for good: ${state.error?.message ?? state.error}`);
  },
});

const link = ApolloLink.split(
  ({ query }) => {
    const definition = getMainDefinition(query);
    return definition.kind === 'OperationDefinition' && definition.operation === 'subscription';
  },
  new GraphQLWsLink(pulseboard.client),
  new HttpLink({ uri: args['http-url'], headers: { authorization: `Bearer ${args.token}` } }),
);

const cache = new InMemoryCache({
  typePolicies: {
    // Each event replaces the last one under the subscription's root field (TaskEvent has no id).
    Subscription: { fields: { taskEvents: { merge: false } } },
  },
});
const client = new ApolloClient({ link, cache });

const board = new Set(); // the board's task ids: the snapshot's, plus created, minus deleted
const taskRef = (id) => cache.identify({ __typename: 'Task', id });

function join(id) {
  if (!board.has(id)) {
    board.add(id);
    cache.retain(taskRef(id)); // a created task is reachable only from the latest event otherwise
  }
}

function cached(id) {
  return cache.readFragment({ id: taskRef(id), fragment: BOARD_TASK });
}

async function snapshot() {
  let after = null;
  for (;;) {
    const variables = { projectId: args.project, first: PAGE_SIZE, ...(after ? { after } : {}) };
    const result = await client.query({ query: TASKS, variables, fetchPolicy: 'network-only' });
    if (result.error) throw result.error;
    for (const edge of result.data.tasks.edges) join(edge.node.id);
    if (!result.data.tasks.pageInfo.hasNextPage) return;
    after = result.data.tasks.pageInfo.endCursor;
  }
}

let applied = 0;

// Apollo has already written the event into the cache (and so its task onto Task:<id>) when this
// runs: what is left is what normalization cannot know.
function take(event) {
  const { type, task } = event;
  if (type === 'DELETED') {
    board.delete(task.id);
    cache.release(taskRef(task.id));
    cache.evict({ id: taskRef(task.id) });
    cache.gc();
    if (cached(task.id) !== null) throw new Error(`Task:${task.id} is still cached after ${type}`);
  } else {
    join(task.id);
    const here = cached(task.id);
    if (here?.status !== task.status || here?.position !== task.position) {
      throw new Error(`the cache has ${JSON.stringify(here)} after ${JSON.stringify(event)}`);
    }
  }
  if (!args['skip-displaced']) {
    for (const moved of event.displaced) {
      if (!board.has(moved.id) || cached(moved.id) === null) {
        throw new Error(`displaced ${moved.id} is not on the cached board: ${JSON.stringify(event)}`);
      }
      cache.modify({ id: taskRef(moved.id), fields: { status: () => moved.status, position: () => moved.position } });
    }
  }
  applied += 1;
  line('APPLIED', applied);
}

function dump() {
  const tasks = {};
  for (const id of board) {
    const task = cached(id);
    tasks[id] = task === null ? null : { status: task.status, position: task.position };
  }
  line('BOARD', tasks);
}

async function main() {
  await snapshot();

  let failed;
  const failure = new Promise((_, reject) => (failed = reject));
  failure.catch(() => {}); // handled where it is raced
  const variables = { projectId: args.project, after: args.after };
  const subscription = client.subscribe({ query: TASK_EVENTS, variables }).subscribe({
    next(result) {
      if (result.error) return failed(result.error);
      try {
        take(result.data.taskEvents);
      } catch (error) {
        failed(error);
      }
    },
    error: (error) => failed(error),
    complete: () => failed(new Error('the server completed the subscription')),
  });

  // graphql-ws sends the subscribe message right after connection_ack; nothing is written before
  // READY, and the subscription resumes after the cursor anyway.
  await Promise.race([acknowledged, failure]);
  await new Promise((resolve) => setTimeout(resolve, 100));
  line('READY');

  // stdin: DUMP prints the board; EXIT (or the end of stdin) ends the script.
  const input = createInterface({ input: process.stdin });
  const ended = new Promise((resolve) => {
    input.on('line', (text) => {
      const command = text.trim();
      if (command === 'DUMP') dump();
      else if (command === 'EXIT') resolve();
      else if (command) failed(new Error(`unknown command ${JSON.stringify(command)}`));
    });
    input.on('close', resolve);
  });
  await Promise.race([ended, failure]);
  input.close();
  subscription.unsubscribe();
  await pulseboard.dispose();
}

main().then(
  () => exit(0),
  (error) => {
    const detail = Array.isArray(error) ? JSON.stringify(error) : (error?.stack ?? error?.message ?? String(error));
    const closed = error && typeof error.code === 'number' && 'reason' in error;
    fail(closed ? `socket closed: ${error.code} ${error.reason}` : detail);
  },
);
