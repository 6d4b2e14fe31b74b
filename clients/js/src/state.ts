// The connection's state, as an app shows it ("reconnecting…", "offline: sign in again"), made
// from graphql-ws' events: connecting, connected, closed and error.

import { type Close, isClose, verdict } from './retry.js';

export type ConnectionState =
  /** No socket: nothing has been subscribed yet (graphql-ws connects lazily), all ended, or disposed. */
  | { status: 'idle' }
  | { status: 'connecting' }
  | { status: 'connected' }
  /** `attempt` counts the reconnects since the last successful connection (1 for the first). */
  | { status: 'reconnecting'; attempt: number; lastClose?: Close }
  /** graphql-ws gave up: the operations ended with an error. Subscribing again starts over. */
  | { status: 'failed'; error: Error };

/** The server closed the socket, and it would be refused again (a bad token, too many sockets...). */
export class ConnectionFailedError extends Error {
  readonly code: number;
  readonly reason: string;

  constructor(close: Close) {
    super(`pulseboard refused the connection: ${close.code} ${JSON.stringify(close.reason)}`);
    this.name = 'ConnectionFailedError';
    this.code = close.code;
    this.reason = close.reason;
  }
}

export type StateListener = (state: ConnectionState) => void;

export class Connection {
  #state: ConnectionState = { status: 'idle' };
  readonly #listeners = new Set<StateListener>();
  #attempt = 0;
  #lastClose: Close | undefined;
  #counted = false; // this socket's failure is counted in #attempt already
  #failed = false; // this socket ended in `failed`: its close event changes nothing
  #disposed = false;

  /**
   * @param running how many operations run: a normal close (1000) with none is the lazy client
   *   closing an unused socket, with some it is one graphql-ws reconnects
   */
  constructor(private readonly running: () => number) {}

  get state(): ConnectionState {
    return this.#state;
  }

  listen(listener: StateListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  connecting(isRetry: boolean): void {
    this.#counted = this.#failed = false;
    const retrying = isRetry && (this.#state.status === 'reconnecting' || this.#state.status === 'connected');
    this.#set(retrying ? this.#reconnecting() : { status: 'connecting' });
  }

  connected(): void {
    this.#attempt = 0;
    this.#lastClose = undefined;
    this.#set({ status: 'connected' });
  }

  closed(event: unknown): void {
    if (this.#disposed) {
      this.#set({ status: 'idle' });
      return;
    }
    if (this.#failed) return;
    const close = isClose(event) ? { code: event.code, reason: event.reason } : { code: 1006, reason: '' };
    const kind = verdict(close);
    if (kind === 'final') {
      this.fail(new ConnectionFailedError(close));
    } else if (kind === 'normal' && this.running() === 0) {
      this.#set({ status: 'idle' });
    } else {
      this.#lastClose = close;
      this.#failure();
    }
  }

  /** An error event: the connection could not be made or was lost (a close event follows). */
  errored(error: unknown): void {
    if (this.#disposed || this.#failed) return;
    if (error instanceof Error) {
      this.fail(error); // the client's own: graphql-ws does not retry it
    } else {
      this.#failure();
    }
  }

  dispose(): void {
    this.#disposed = true;
    this.#set({ status: 'idle' });
  }

  fail(error: Error): void {
    this.#failed = true;
    this.#set({ status: 'failed', error });
  }

  #failure(): void {
    if (!this.#counted) {
      this.#counted = true;
      this.#attempt += 1;
    }
    this.#set(this.#reconnecting());
  }

  #reconnecting(): ConnectionState {
    const attempt = Math.max(this.#attempt, 1);
    return this.#lastClose ? { status: 'reconnecting', attempt, lastClose: this.#lastClose } : { status: 'reconnecting', attempt };
  }

  #set(state: ConnectionState): void {
    if (sameState(state, this.#state)) return;
    this.#state = state;
    for (const listener of [...this.#listeners]) {
      try {
        listener(state);
      } catch (error) {
        queueMicrotask(() => {
          throw error; // reported as uncaught, without breaking the client
        });
      }
    }
  }
}

function sameState(a: ConnectionState, b: ConnectionState): boolean {
  if (a.status !== b.status) return false;
  if (a.status === 'reconnecting' && b.status === 'reconnecting') {
    return a.attempt === b.attempt && a.lastClose?.code === b.lastClose?.code && a.lastClose?.reason === b.lastClose?.reason;
  }
  if (a.status === 'failed' && b.status === 'failed') return a.error === b.error;
  return true;
}
