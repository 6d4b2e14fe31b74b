// The operations of one client, by graphql-ws operation id, and the last cursor each received.
//
// graphql-ws retries a subscription with the id and the payload it was first sent with, so after a
// reconnect the server would replay from the original `after` (often none: only new events). The
// client sees every message go out through JSON.stringify with its `jsonMessageReplacer`, and
// every message come in through JSON.parse with its `jsonMessageReviver`: these read each `next`
// message's cursor, and set `variables.after` of a subscribe message sent again for the same id.
// Rewriting the message, rather than the variables object handed to `subscribe`, is what makes it
// work under Apollo's GraphQLWsLink and urql's subscriptionExchange, which pass copies.

import { Kind, parse } from 'graphql';

interface Operation {
  /** The document is a subscription that declares the cursor variable. */
  readonly resumable: boolean;
  /** The `cursor` of the last event received, once one was. */
  cursor?: string;
}

// Documents parsed to see whether they declare the variable, at most this many remembered.
const DOCUMENTS = 200;

type JsonObject = Record<string, unknown>;

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Whether JSON.stringify or JSON.parse called a replacer or reviver for the whole message. */
export function isRoot(holder: unknown, key: string, value: unknown): boolean {
  return key === '' && isObject(holder) && Object.keys(holder).length === 1 && holder[''] === value;
}

export class Operations {
  readonly #operations = new Map<string, Operation>();
  readonly #declares = new Map<string, boolean>();

  constructor(readonly variable: string) {}

  /** How many operations are running (sent and not yet ended). */
  get size(): number {
    return this.#operations.size;
  }

  /** The last cursor `id` received, if any. */
  cursor(id: string): string | undefined {
    return this.#operations.get(id)?.cursor;
  }

  /** A message received (before graphql-ws hands it to the operation's sink). */
  received(message: unknown): void {
    if (!isObject(message) || typeof message.id !== 'string') return;
    if (message.type === 'error' || message.type === 'complete') {
      this.forget(message.id);
    } else if (message.type === 'next') {
      const operation = this.#operations.get(message.id);
      const cursor = operation?.resumable ? cursorOf(message.payload) : undefined;
      if (operation !== undefined && cursor !== undefined) operation.cursor = cursor;
    }
  }

  /** A message about to be sent: the same, or a subscribe sent again, resuming from its cursor. */
  sending(message: unknown): unknown {
    if (!isObject(message) || typeof message.id !== 'string') return message;
    if (message.type === 'complete') {
      this.forget(message.id);
      return message;
    }
    if (message.type !== 'subscribe' || !isObject(message.payload)) return message;
    const operation = this.#operations.get(message.id);
    if (operation === undefined) {
      this.#operations.set(message.id, { resumable: this.#resumable(message.payload) });
      return message;
    }
    if (operation.cursor === undefined) return message;
    const variables = isObject(message.payload.variables) ? message.payload.variables : {};
    return {
      ...message,
      payload: { ...message.payload, variables: { ...variables, [this.variable]: operation.cursor } },
    };
  }

  /** The operation ended: its cursor is of no more use. */
  forget(id: string): void {
    this.#operations.delete(id);
  }

  clear(): void {
    this.#operations.clear();
  }

  #resumable(payload: JsonObject): boolean {
    const { query, operationName } = payload;
    if (typeof query !== 'string') return false; // a persisted query's hash alone: not ours to read
    const key = `${typeof operationName === 'string' ? operationName : ''}\u0000${query}`;
    let declares = this.#declares.get(key);
    if (declares === undefined) {
      declares = declaresVariable(query, typeof operationName === 'string' ? operationName : null, this.variable);
      if (this.#declares.size >= DOCUMENTS) {
        const oldest = this.#declares.keys().next();
        if (!oldest.done) this.#declares.delete(oldest.value);
      }
    } else {
      this.#declares.delete(key); // moved to the end: the most recently used
    }
    this.#declares.set(key, declares);
    return declares;
  }
}

/** Whether the operation a subscribe message runs is a subscription declaring `$<variable>`. */
export function declaresVariable(query: string, operationName: string | null, variable: string): boolean {
  let document;
  try {
    document = parse(query, { noLocation: true });
  } catch {
    return false; // the server answers it with an error for the operation
  }
  const operations = document.definitions.filter((definition) => definition.kind === Kind.OPERATION_DEFINITION);
  const operation =
    operationName === null
      ? operations.length === 1
        ? operations[0]
        : undefined
      : operations.find((definition) => definition.name?.value === operationName);
  return (
    operation?.operation === 'subscription' &&
    (operation.variableDefinitions ?? []).some((definition) => definition.variable.name.value === variable)
  );
}

/** The cursor of a `next` payload: `data.<root field>.cursor`, when it is a string. */
function cursorOf(payload: unknown): string | undefined {
  if (!isObject(payload) || !isObject(payload.data)) return undefined;
  for (const value of Object.values(payload.data)) {
    if (isObject(value) && typeof value.cursor === 'string') return value.cursor;
  }
  return undefined;
}
