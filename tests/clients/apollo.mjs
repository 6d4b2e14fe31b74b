// Apollo Client 4 against a live pulseboard, for tests/test_clients.py: an HttpLink + GraphQLWsLink
// (graphql-ws) split link runs a paginated query, a taskEvents subscription and a mutation over
// HTTP; the subscription's task lands in the normalized cache (Task:<id>). One line each on stdout:
//
//   PAGE <json>      a page of tasks(projectId, first: 2): {"titles": [...], "ids": [...], "pageInfo": {...}}
//   READY            the socket is acknowledged and the subscription has been sent (then: GO on stdin)
//   MUTATED <json>   the updateTask result: {"id": ..., "version": ...}
//   EVENT <json>     the taskEvents event (`data.taskEvents`)
//   CACHE <json>     read back from the normalized cache after the event:
//                    {"id": "Task:<id>", "fragment": {...}, "firstPageTitles": [...]}
//
// Exits 0 once the cached title is the new one; 1 when the cache disagrees or an operation fails
// (explained on stderr); 3 on timeout.
//
// usage: node apollo.mjs --http-url http://host:port/graphql --ws-url ws://host:port/graphql
//                        --token JWT --project ID --task ID --title NEW_TITLE
//                        [--timeout-ms MS] [--ready-delay-ms MS]
// (each also from the environment: HTTP_URL, WS_URL, TOKEN, PROJECT_ID, TASK_ID, NEW_TITLE)

import { createHash } from 'node:crypto';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { ApolloClient, ApolloLink, HttpLink, InMemoryCache, gql } from '@apollo/client';
import { PersistedQueryLink } from '@apollo/client/link/persisted-queries';
import { GraphQLWsLink } from '@apollo/client/link/subscriptions';
import { getMainDefinition } from '@apollo/client/utilities';
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
    process.stderr.write(`apollo.mjs: --${name} is required\n`);
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

// The mutation does not ask for the title: only the subscription's event can bring the new title
// into the cache, so the CACHE line shows that the event was normalized onto Task:<id>.
const UPDATE_TASK = gql`
  mutation UpdateTask($id: ID!, $title: String!) {
    updateTask(id: $id, input: { title: $title }) { id version }
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

const TASK_FRAGMENT = gql`
  fragment CachedTask on Task { id title version }
`;

function line(kind, value) {
  process.stdout.write(value === undefined ? `${kind}\n` : `${kind} ${JSON.stringify(value)}\n`);
}

// process.exit() may drop buffered stdout when it is a pipe: exit once it has been flushed.
function exit(code) {
  process.stdout.write('', () => process.exit(code));
}

function fail(message) {
  process.stderr.write(`apollo.mjs: ${message}\n`);
  exit(1);
}

const timeoutMs = Number(args['timeout-ms']);
setTimeout(() => {
  process.stderr.write(`apollo.mjs: timed out after ${timeoutMs} ms\n`);
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

const link = ApolloLink.split(
  ({ query }) => {
    const definition = getMainDefinition(query);
    return definition.kind === 'OperationDefinition' && definition.operation === 'subscription';
  },
  new GraphQLWsLink(wsClient),
  // Automatic persisted queries: hashes first, the document only after PersistedQueryNotFound.
  new PersistedQueryLink({ sha256: (query) => createHash('sha256').update(query).digest('hex') }).concat(
    new HttpLink({ uri: args['http-url'], headers: { authorization: `Bearer ${args.token}` } }),
  ),
);

const client = new ApolloClient({ link, cache: new InMemoryCache() });

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

async function main() {
  // 1. Two pages over HTTP.
  const first = await client.query({ query: TASKS, variables: { projectId: args.project, first: 2 } });
  if (first.error) throw first.error;
  const page1 = page(first.data);
  line('PAGE', page1);
  const second = await client.query({
    query: TASKS,
    variables: { projectId: args.project, first: 2, after: page1.pageInfo.endCursor },
  });
  if (second.error) throw second.error;
  line('PAGE', page(second.data));

  // 2. The subscription, over the socket (the split link sends it to GraphQLWsLink).
  const event = new Promise((resolve, reject) => {
    const subscription = client.subscribe({ query: TASK_EVENTS, variables: { projectId: args.project } }).subscribe({
      next(result) {
        if (result.error) {
          reject(result.error);
        } else if (result.data?.taskEvents?.task?.id === args.task) {
          subscription.unsubscribe();
          resolve(result.data.taskEvents);
        }
      },
      error: reject,
      complete: () => reject(new Error('the server completed the subscription before the event')),
    });
  });
  event.catch(() => {}); // handled when awaited; the mutation may fail first

  // 3. GO: the mutation, over HTTP.
  await stdinLine('GO');
  const mutated = await client.mutate({ mutation: UPDATE_TASK, variables: { id: args.task, title: args.title } });
  if (mutated.error) throw mutated.error;
  line('MUTATED', { id: mutated.data.updateTask.id, version: mutated.data.updateTask.version });

  // 4. The event, and the task as the normalized cache now has it.
  line('EVENT', await event);
  const id = client.cache.identify({ __typename: 'Task', id: args.task });
  const fragment = client.readFragment({ id, fragment: TASK_FRAGMENT });
  const cachedPage = client.readQuery({ query: TASKS, variables: { projectId: args.project, first: 2 } });
  line('CACHE', { id, fragment, firstPageTitles: cachedPage ? page(cachedPage).titles : null });
  if (fragment?.title !== args.title) {
    throw new Error(`the cached title of ${id} is ${JSON.stringify(fragment?.title)}, not ${JSON.stringify(args.title)}`);
  }

  // Say goodbye properly (complete, then a 1000 close), waiting at most a second for the close.
  client.stop();
  await wsClient.dispose();
  const deadline = Date.now() + 1000;
  while (!wsClosed && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
}

main().then(
  () => exit(0),
  (error) => {
    const detail = Array.isArray(error) ? JSON.stringify(error) : (error?.stack ?? error?.message ?? String(error));
    const closed = error && typeof error.code === 'number' && 'reason' in error;
    fail(closed ? `socket closed: ${error.code} ${error.reason}` : detail);
  },
);
