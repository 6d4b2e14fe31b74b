// @pulseboard/client: a graphql-ws client for pulseboard that loses no event across reconnects.
//
// pulseboard promises that a subscriber resuming with `after: <its last cursor>` gets every event it
// missed exactly once. This client keeps that promise's other half: it remembers the last cursor of
// each running subscription and sends it as `after` whenever graphql-ws subscribes again after a
// reconnect; it reconnects for as long as the server may let it in again (a restart, a lost
// connection, an expired token: after a refresh), and stops when it would not (a bad token). The
// graphql-ws client it returns goes to Apollo's GraphQLWsLink or urql's subscriptionExchange as is.

import {
  type Client,
  type ClientOptions,
  type FormattedExecutionResult,
  type JSONMessageReplacer,
  type JSONMessageReviver,
  type Sink,
  type SubscribePayload,
  createClient,
} from 'graphql-ws';

import { Operations, isRoot } from './operations.js';
import { type Backoff, CloseReason, FORBIDDEN, backoffMs, isClose, shouldRetry } from './retry.js';
import { Connection, type ConnectionState, type StateListener } from './state.js';

export { CloseReason, type Backoff, type Close, shouldRetry, verdict } from './retry.js';
export { ConnectionFailedError, type ConnectionState, type StateListener } from './state.js';
export { declaresVariable } from './operations.js';

/**
 * The bearer token for the next connection, or null to connect without one. `refresh` is true when
 * the server closed the socket because the token expired: return a new one (the client reconnects
 * as soon as it has it). Throwing makes the connection fail for good (state "failed").
 */
export type TokenSource = (options: { refresh: boolean }) => string | null | Promise<string | null>;

export interface PulseboardClientOptions
  extends Omit<ClientOptions, 'connectionParams' | 'retryAttempts' | 'retryWait' | 'shouldRetry'> {
  token: TokenSource;
  /** The wait before each reconnect: full jitter over an exponential backoff. */
  retry?: Backoff;
  onStateChange?: StateListener;
  /** The variable a resumable subscription takes its cursor in. Default "after". */
  cursorVariable?: string;
}

export interface PulseboardClient {
  /** The graphql-ws client: pass it to Apollo's GraphQLWsLink or urql's subscriptionExchange. */
  client: Client;
  state(): ConnectionState;
  /** Calls `listener` on each change of state; returns the function that stops it. */
  onStateChange(listener: StateListener): () => void;
  /** Closes the socket and ends every operation. */
  dispose(): Promise<void>;
}

export function createPulseboardClient(options: PulseboardClientOptions): PulseboardClient {
  const { token, retry, onStateChange, cursorVariable = 'after', on, generateID, ...rest } = options;
  const userReplacer = options.jsonMessageReplacer;
  const userReviver = options.jsonMessageReviver;
  const operations = new Operations(cursorVariable);
  const connection = new Connection(() => operations.size);
  if (onStateChange) connection.listen(onStateChange);

  let refresh = false; // the server said "Token expired": the next connection asks for a new token
  let expiredInARow = 0; // a refreshed token expired again: back off rather than spin
  let lastID: string | undefined;

  const jsonMessageReplacer: JSONMessageReplacer = function (this: unknown, key, value) {
    const sent = isRoot(this, key, value) ? operations.sending(value) : value;
    return userReplacer ? userReplacer.call(this, key, sent) : sent;
  };
  const jsonMessageReviver: JSONMessageReviver = function (this: unknown, key, value) {
    const revived: unknown = userReviver ? userReviver.call(this, key, value) : value;
    if (isRoot(this, key, value)) operations.received(revived);
    return revived;
  };

  const inner = createClient({
    ...rest,
    jsonMessageReplacer,
    jsonMessageReviver,
    generateID(payload) {
      lastID = generateID ? generateID(payload) : uuid();
      return lastID;
    },
    connectionParams: async () => {
      const asked = refresh;
      const bearer = await token({ refresh: asked });
      if (asked) refresh = false;
      return bearer == null ? {} : { authorization: `Bearer ${bearer}` };
    },
    retryAttempts: Infinity,
    shouldRetry,
    retryWait: async (retries) => {
      if (refresh && expiredInARow === 1) return; // a fresh token is fetched at once
      await new Promise((resolve) => setTimeout(resolve, backoffMs(retries, retry)));
    },
    on: {
      ...on,
      connecting(isRetry) {
        connection.connecting(isRetry);
        on?.connecting?.(isRetry);
      },
      connected(socket, payload, wasRetry) {
        expiredInARow = 0;
        connection.connected();
        on?.connected?.(socket, payload, wasRetry);
      },
      closed(event) {
        if (isClose(event) && event.code === FORBIDDEN && event.reason === CloseReason.TokenExpired) {
          refresh = true;
          expiredInARow += 1;
        }
        connection.closed(event);
        if (connection.state.status === 'failed') operations.clear(); // graphql-ws ends them all
        on?.closed?.(event);
      },
      error(error) {
        connection.errored(error);
        if (connection.state.status === 'failed') operations.clear();
        on?.error?.(error);
      },
    },
  });

  function subscribe<Data = Record<string, unknown>, Extensions = unknown>(
    payload: SubscribePayload,
    sink: Sink<FormattedExecutionResult<Data, Extensions>>,
  ): () => void {
    lastID = undefined;
    const unsubscribe = inner.subscribe<Data, Extensions>(payload, {
      next: (value) => sink.next(value),
      error: (error) => {
        end();
        sink.error(error);
      },
      complete: () => {
        end();
        sink.complete();
      },
    });
    const id = lastID; // graphql-ws names the operation before subscribe() returns
    function end(): void {
      if (id !== undefined) operations.forget(id);
    }
    return () => {
      end(); // also when graphql-ws, between sockets, has no complete message to send
      unsubscribe();
    };
  }

  const client: Client = {
    on: inner.on,
    subscribe,
    iterate: (payload) => iterate(subscribe, payload),
    terminate: () => inner.terminate(),
    dispose: () => dispose(),
  };

  async function dispose(): Promise<void> {
    connection.dispose();
    operations.clear();
    await inner.dispose();
  }

  return {
    client,
    state: () => connection.state,
    onStateChange: (listener) => connection.listen(listener),
    dispose,
  };
}

/** graphql-ws' `iterate`, over this client's subscribe (so that its operations end here too). */
function iterate<Data, Extensions>(
  subscribe: (payload: SubscribePayload, sink: Sink<FormattedExecutionResult<Data, Extensions>>) => () => void,
  payload: SubscribePayload,
): AsyncIterableIterator<FormattedExecutionResult<Data, Extensions>> {
  const pending: FormattedExecutionResult<Data, Extensions>[] = [];
  let done = false;
  let failure: { error: unknown } | undefined;
  let wake: () => void = () => {};
  const unsubscribe = subscribe(payload, {
    next(value) {
      pending.push(value);
      wake();
    },
    error(error) {
      done = true;
      failure = { error };
      wake();
    },
    complete() {
      done = true;
      wake();
    },
  });
  const iterator: AsyncIterableIterator<FormattedExecutionResult<Data, Extensions>> = {
    [Symbol.asyncIterator]() {
      return iterator;
    },
    async next() {
      while (pending.length === 0 && !done) await new Promise<void>((resolve) => (wake = resolve));
      const value = pending.shift();
      if (value !== undefined) return { done: false, value };
      if (failure) {
        const { error } = failure;
        failure = undefined;
        throw error;
      }
      return { done: true, value: undefined };
    },
    async return() {
      done = true;
      pending.length = 0;
      unsubscribe();
      wake();
      return { done: true, value: undefined };
    },
  };
  return iterator;
}

/** A v4 UUID: crypto.randomUUID where there is one (not in pages served over plain http). */
function uuid(): string {
  const crypto = (globalThis as { crypto?: { randomUUID?: () => string } }).crypto;
  if (typeof crypto?.randomUUID === 'function') return crypto.randomUUID();
  return 'xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx'.replace(/[xy]/g, (c) => {
    const r = (Math.random() * 16) | 0;
    return (c === 'x' ? r : (r & 3) | 8).toString(16);
  });
}
