// urql 6 (@urql/core) against a live pulseboard, for tests/test_clients.py: fetchExchange for a
// paginated query and a mutation over HTTP, subscriptionExchange over graphql-ws for taskEvents.
// One line each on stdout:
//
//   PAGE <json>      a page of tasks(projectId, first: 2): {"titles": [...], "ids": [...], "pageInfo": {...}}
//   READY            the socket is acknowledged and the subscription has been sent (then: GO on stdin)
//   MUTATED <json>   the updateTask result: {"id": ..., "title": ..., "version": ...}
//   EVENT <json>     the taskEvents event (`data.taskEvents`)
//
// Exits 0 after the event; 1 when an operation fails (explained on stderr); 3 on timeout.
//
// usage: node urql.mjs --http-url http://host:port/graphql --ws-url ws://host:port/graphql
//                      --token JWT --project ID --task ID --title NEW_TITLE
//                      [--timeout-ms MS] [--ready-delay-ms MS]
// (each also from the environment: HTTP_URL, WS_URL, TOKEN, PROJECT_ID, TASK_ID, NEW_TITLE)

import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { Client, cacheExchange, fetchExchange, gql, subscriptionExchange } from '@urql/core';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

const { values: args } = parseArgs({
  options: {
    'http-url': { type: 'string', default: process.env.HTTP_URL },
    'ws-url': { type: 'string', default: process.env.WS_URL },
    token: { type: 'string', default: process.env.TOKEN },
    project: { type: 'string', default: process.env.PROJECT_ID },
    task: { type: 'string', default: process.env.TASK_ID },
    title: { type: 'string', default: process.env.NEW_TITLE },
    'timeout-ms': { type: 'string', default: '30000' },
    'ready-delay-ms': { type: 'string', default: '300' },
  },
});

for (const name of ['http-url', 'ws-url', 'token', 'project', 'task', 'title']) {
  if (!args[name]) {
    process.stderr.write(`urql.mjs: --${name} is required\n`);
    process.exit(2);
  }
}

const TASKS = gql`
  query Tasks($projectId: ID!, $first: Int, $after: String) {
    tasks(projectId: $projectId, first: $first, after: $after) {
      edges { cursor node { id title status position version } }
      pageInfo { hasNextPage endCursor }
    }
  }
`;

const UPDATE_TASK = gql`
  mutation UpdateTask($id: ID!, $title: String!) {
    updateTask(id: $id, input: { title: $title }) { id title version }
  }
`;

const TASK_EVENTS = gql`
  subscription TaskEvents($projectId: ID!) {
    taskEvents(projectId: $projectId) {
      cursor
      type
      task { id title status position version }
      changes { field from to }
    }
  }
`;

function line(kind, value) {
  process.stdout.write(value === undefined ? `${kind}\n` : `${kind} ${JSON.stringify(value)}\n`);
}

// process.exit() may drop buffered stdout when it is a pipe: exit once it has been flushed.
function exit(code) {
  process.stdout.write('', () => process.exit(code));
}

const timeoutMs = Number(args['timeout-ms']);
setTimeout(() => {
  process.stderr.write(`urql.mjs: timed out after ${timeoutMs} ms\n`);
  exit(3);
}, timeoutMs).unref();

let wsClosed = false;
const wsClient = createClient({
  url: args['ws-url'],
  webSocketImpl: WebSocket,
  connectionParams: { authorization: `Bearer ${args.token}` },
  retryAttempts: 0,
  on: {
    // After connection_ack; graphql-ws sends the subscribe message right after this. The protocol
    // does not acknowledge a subscription, so give the server a moment before saying READY.
    connected: () => setTimeout(() => line('READY'), Number(args['ready-delay-ms'])),
    closed: () => {
      wsClosed = true;
    },
  },
});

const client = new Client({
  url: args['http-url'],
  fetchOptions: { headers: { authorization: `Bearer ${args.token}` } },
  exchanges: [
    cacheExchange,
    fetchExchange,
    subscriptionExchange({
      forwardSubscription(request) {
        const input = { ...request, query: request.query || '' };
        return {
          subscribe(sink) {
            const unsubscribe = wsClient.subscribe(input, sink);
            return { unsubscribe };
          },
        };
      },
    }),
  ],
});

function page(data) {
  const { edges, pageInfo } = data.tasks;
  return {
    ids: edges.map((edge) => edge.node.id),
    titles: edges.map((edge) => edge.node.title),
    typenames: [...new Set(edges.map((edge) => edge.node.__typename))],
    pageInfo: { hasNextPage: pageInfo.hasNextPage, endCursor: pageInfo.endCursor },
  };
}

function stdinLine(expected) {
  return new Promise((resolve, reject) => {
    const input = createInterface({ input: process.stdin });
    input.on('line', (text) => {
      if (text.trim() === expected) {
        resolve(); // first: closing the interface emits 'close'
        input.close();
      }
    });
    input.on('close', () => reject(new Error(`stdin closed before ${expected}`)));
  });
}

// urql reports failures in the result (a CombinedError), never by rejecting.
function dataOf(result) {
  if (result.error) {
    const { graphQLErrors, networkError } = result.error;
    throw new Error(networkError ? `network error: ${networkError.stack ?? networkError}` : JSON.stringify(graphQLErrors));
  }
  return result.data;
}

async function main() {
  // 1. Two pages over HTTP.
  const page1 = page(dataOf(await client.query(TASKS, { projectId: args.project, first: 2 }).toPromise()));
  line('PAGE', page1);
  const after = page1.pageInfo.endCursor;
  line('PAGE', page(dataOf(await client.query(TASKS, { projectId: args.project, first: 2, after }).toPromise())));

  // 2. The subscription, over the socket (subscriptionExchange forwards it to graphql-ws).
  let subscription;
  const event = new Promise((resolve, reject) => {
    subscription = client.subscription(TASK_EVENTS, { projectId: args.project }).subscribe((result) => {
      try {
        const data = dataOf(result);
        if (data?.taskEvents?.task?.id === args.task) resolve(data.taskEvents);
      } catch (error) {
        reject(error);
      }
    });
  });
  event.catch(() => {}); // handled when awaited; the mutation may fail first

  // 3. GO: the mutation, over HTTP.
  await stdinLine('GO');
  const mutated = dataOf(await client.mutation(UPDATE_TASK, { id: args.task, title: args.title }).toPromise());
  const { id, title, version } = mutated.updateTask;
  line('MUTATED', { id, title, version });

  // 4. The event.
  line('EVENT', await event);

  // Say goodbye properly (complete, then a 1000 close), waiting at most a second for the close.
  subscription.unsubscribe();
  await wsClient.dispose();
  const deadline = Date.now() + 1000;
  while (!wsClosed && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
}

main().then(
  () => exit(0),
  (error) => {
    const closed = error && typeof error.code === 'number' && 'reason' in error;
    const detail = closed
      ? `socket closed: ${error.code} ${error.reason}`
      : Array.isArray(error)
        ? JSON.stringify(error)
        : (error?.stack ?? error?.message ?? String(error));
    process.stderr.write(`urql.mjs: ${detail}\n`);
    exit(1);
  },
);
