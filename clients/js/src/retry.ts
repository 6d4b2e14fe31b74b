// Which closes and errors are worth a reconnect, and how long to wait before one.
//
// pulseboard closes with 4403 for several reasons that call for different answers, told apart by
// the close reason (pulseboard/subscriptions/closes.py on the server); graphql-ws' own default
// retries every close it does not consider fatal, and no network error (a refused connection
// surfaces as an error event before its close event).

/** The reasons pulseboard gives for a 4403 close. */
export const CloseReason = {
  /** The token's `exp` passed: fetch a fresh one and reconnect at once. */
  TokenExpired: 'Token expired',
  /** The user's role changed: reconnect, and be authorized anew. */
  AccessChanged: 'Access changed',
  /** Final: the token is not one the server accepts (bad signature, malformed, unknown key...). */
  InvalidToken: 'Invalid token',
  /** Final: the user (or, without a token, the address) has as many sockets as allowed. */
  TooManySockets: 'Too many sockets',
  /** Final: a socket without a token ran nothing for a while. */
  AuthenticationRequired: 'Authentication required',
} as const;

export const FORBIDDEN = 4403;

export interface Close {
  code: number;
  reason: string;
}

/** Going away (a restart), abnormal closure (the connection was lost), service restart, try again later. */
const RETRIED_CODES = new Set([1001, 1006, 1012, 1013]);
const RETRIED_REASONS = new Set<string>([CloseReason.TokenExpired, CloseReason.AccessChanged]);
// What graphql-ws gives up on whatever shouldRetry says: internal server and client errors, bad
// request and response, subscribe before ack, subprotocol, duplicate id, a second init.
const GRAPHQL_WS_FATAL = new Set([4500, 4005, 4400, 4004, 4401, 4406, 4409, 4429]);
const GRAPHQL_WS_RETRIED_1XXX = new Set([1000, 1001, 1005, 1006, 1012, 1013, 1014]);

export function isClose(value: unknown): value is Close {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as Close).code === 'number' &&
    typeof (value as Close).reason === 'string'
  );
}

export type Verdict = 'normal' | 'retry' | 'final';

/** What a close means: `normal` (1000: graphql-ws reconnects while operations run), `retry`, or `final`. */
export function verdict(close: Close): Verdict {
  if (close.code === 1000) return 'normal';
  if (close.code === FORBIDDEN) return RETRIED_REASONS.has(close.reason) ? 'retry' : 'final';
  if (RETRIED_CODES.has(close.code)) return 'retry';
  if (GRAPHQL_WS_FATAL.has(close.code)) return 'final';
  if (close.code >= 1000 && close.code <= 1999 && !GRAPHQL_WS_RETRIED_1XXX.has(close.code)) return 'final';
  return 'retry'; // timeouts (4408, 4418), a terminated socket (4499), codes of proxies
}

/**
 * graphql-ws' `shouldRetry`: closes by their verdict; error events (the connection was refused or
 * lost: ECONNREFUSED, a DNS failure) are retried; errors the client raised itself (the token
 * function threw, the server sent a bad message) are final.
 */
export function shouldRetry(errorOrClose: unknown): boolean {
  if (isClose(errorOrClose)) return verdict(errorOrClose) !== 'final';
  return !(errorOrClose instanceof Error);
}

export interface Backoff {
  /** The first retry waits up to this long; each next one up to twice as long. Default 500. */
  baseMs?: number;
  /** The longest wait. Default 30 000. */
  maxMs?: number;
}

/** Exponential backoff with full jitter: a random wait in [0, min(max, base * 2^retries)). */
export function backoffMs(retries: number, { baseMs = 500, maxMs = 30_000 }: Backoff = {}): number {
  return Math.random() * Math.min(maxMs, baseMs * 2 ** Math.min(retries, 30));
}
