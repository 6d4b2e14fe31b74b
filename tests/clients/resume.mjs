// A taskEvents subscription through @pulseboard/client, under Apollo Client 4 (GraphQLWsLink) or
// urql 6 (subscriptionExchange), for tests/test_client_package.py: the test restarts the server,
// lets the token expire or gives a bad one, and checks what arrived. One line each on stdout:
//
//   TOKEN <json>     the client asks for a token: {"refresh": bool}; answer `TOKEN <jwt>` (or
//                    `TOKEN` alone, for none) on stdin
//   STATE <json>     the connection state changed: {"status": ..., "attempt"?, "lastClose"?, "error"?}
//   EVENT <json>     a taskEvents event: {"cursor": ..., "type": ..., "task": id, "version": n}
//   ERROR <json>     the subscription ended with an error: {"message": ...}
//   COMPLETE         the subscription completed
//   DONE <json>      after STOP on stdin, just before exiting 0: {"state": ..., "tokenCalls": n}
//
// Exits 0 after STOP; 1 when the script itself fails (explained on stderr); 3 on timeout.
//
// usage: node resume.mjs --client apollo|urql --ws-url ws://host:port/graphql --project ID
//                        [--after CURSOR] [--retry-base-ms MS] [--retry-max-ms MS] [--timeout-ms MS]

import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { ApolloClient, InMemoryCache, gql } from '@apollo/client';
import { GraphQLWsLink } from '@apollo/client/link/subscriptions';
import { createPulseboardClient } from '@pulseboard/client';
import { Client, subscriptionExchange } from '@urql/core';
import WebSocket from 'ws';

const { values: args } = parseArgs({
  options: {
    client: { type: 'string' },
    'ws-url': { type: 'string' },
    project: { type: 'string' },
    after: { type: 'string' },
    'retry-base-ms': { type: 'string', default: '100' },
    'retry-max-ms': { type: 'string', default: '1000' },
    'timeout-ms': { type: 'string', default: '30000' },
  },
});

for (const name of ['client', 'ws-url', 'project']) {
  if (!args[name]) {
    process.stderr.write(`resume.mjs: --${name} is required\n`);
    process.exit(2);
  }
}

const TASK_EVENTS = `
  subscription TaskEvents($projectId: ID!, $after: String) {
    taskEvents(projectId: $projectId, after: $after) {
      cursor
      type
      task { id version }
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
  process.stderr.write(`resume.mjs: timed out after ${timeoutMs} ms\n`);
  exit(3);
}, timeoutMs).unref();

// stdin: `TOKEN [jwt]` answers the oldest token request; `STOP` ends the script.
const tokenAnswers = [];
let stop;
const stopped = new Promise((resolve) => (stop = resolve));
createInterface({ input: process.stdin }).on('line', (text) => {
  const [kind, ...rest] = text.trim().split(' ');
  if (kind === 'TOKEN') tokenAnswers.shift()?.(rest.join(' ') || null);
  else if (kind === 'STOP') stop();
});

let tokenCalls = 0;
function token({ refresh }) {
  tokenCalls += 1;
  line('TOKEN', { refresh });
  return new Promise((resolve) => tokenAnswers.push(resolve));
}

function shown(state) {
  return state.status === 'failed'
    ? { status: 'failed', error: state.error.message, code: state.error.code, reason: state.error.reason }
    : state;
}

const pulseboard = createPulseboardClient({
  url: args['ws-url'],
  webSocketImpl: WebSocket,
  token,
  retry: { baseMs: Number(args['retry-base-ms']), maxMs: Number(args['retry-max-ms']) },
  onStateChange: (state) => line('STATE', shown(state)),
});

const variables = { projectId: args.project, ...(args.after ? { after: args.after } : {}) };

function event(data) {
  const { cursor, type, task } = data.taskEvents;
  line('EVENT', { cursor, type, task: task.id, version: task.version });
}

function failed(error) {
  const message = error?.message ?? (typeof error?.code === 'number' ? `${error.code} ${error.reason}` : String(error));
  line('ERROR', { message });
}

// Each returns the function that unsubscribes.
const clients = {
  apollo() {
    const client = new ApolloClient({ link: new GraphQLWsLink(pulseboard.client), cache: new InMemoryCache() });
    const subscription = client.subscribe({ query: gql(TASK_EVENTS), variables }).subscribe({
      next(result) {
        if (result.error) failed(result.error);
        else event(result.data);
      },
      error: failed,
      complete: () => line('COMPLETE'),
    });
    return () => subscription.unsubscribe();
  },
  urql() {
    const client = new Client({
      url: args['ws-url'].replace(/^ws/, 'http'), // unused: every operation here goes to the socket
      exchanges: [
        subscriptionExchange({
          forwardSubscription(request) {
            const input = { ...request, query: request.query || '' };
            return { subscribe: (sink) => ({ unsubscribe: pulseboard.client.subscribe(input, sink) }) };
          },
        }),
      ],
    });
    const subscription = client.subscription(TASK_EVENTS, variables).subscribe((result) => {
      if (result.error) failed(result.error.networkError ?? result.error);
      else event(result.data);
    });
    return () => subscription.unsubscribe();
  },
};

async function main() {
  const subscribe = clients[args.client];
  if (!subscribe) throw new Error(`unknown --client ${args.client}`);
  const unsubscribe = subscribe();
  await stopped;
  line('DONE', { state: shown(pulseboard.state()), tokenCalls });
  unsubscribe();
  await pulseboard.dispose();
}

main().then(
  () => exit(0),
  (error) => {
    process.stderr.write(`resume.mjs: ${error?.stack ?? error}\n`);
    exit(1);
  },
);
