// A small typed client for pulseboard: the result and variables types come from
// generated/graphql.ts (`npm run codegen`), the operation texts from operations/*.graphql.
// Type-checked in CI with `tsc --noEmit -p examples`; it is an example, not a library.

import {
  BoardDocument,
  FindPeopleDocument,
  MoveTaskDocument,
  NotificationsDocument,
  PreferencesDocument,
  QueueMetricsDocument,
  TicketsDocument,
  UpdatePreferencesDocument,
  UpdateTaskDocument,
  type BoardQuery,
  type BoardQueryVariables,
  type FindPeopleQuery,
  type FindPeopleQueryVariables,
  type MoveTaskMutation,
  type MoveTaskMutationVariables,
  type NotificationsQuery,
  type NotificationsQueryVariables,
  type PreferencesQuery,
  type PreferencesQueryVariables,
  type QueueMetricsQuery,
  type QueueMetricsQueryVariables,
  type TaskFieldsFragment,
  type TicketsQuery,
  type TicketsQueryVariables,
  type UpdatePreferencesMutation,
  type UpdatePreferencesMutationVariables,
  type UpdateTaskMutation,
  type UpdateTaskMutationVariables,
} from "./generated/graphql";
import type { TaskStatus } from "./generated/schema";

const ENDPOINT = "http://127.0.0.1:8000/graphql";
// `python -m pulseboard dev` prints a demo token; any HS256 JWT the server accepts works.
const TOKEN = "<JWT>";

/** One entry of the response's `errors`; every pulseboard error carries `extensions.code`. */
export interface GraphQLErrorEntry {
  message: string;
  path?: ReadonlyArray<string | number>;
  extensions?: { code?: string; [key: string]: unknown };
}

export class GraphQLRequestError extends Error {
  constructor(readonly errors: ReadonlyArray<GraphQLErrorEntry>) {
    super(errors.map((error) => error.message).join("; "));
  }

  /** e.g. "CONFLICT" for a stale expectedVersion, "UNAUTHENTICATED", "BAD_USER_INPUT". */
  get code(): string | undefined {
    return this.errors[0]?.extensions?.code;
  }
}

/** POSTs one operation and returns its `data`, or throws on `errors` or a non-2xx status. */
export async function request<TData, TVariables extends Record<string, unknown>>(
  document: string,
  variables: TVariables,
): Promise<TData> {
  const response = await fetch(ENDPOINT, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${TOKEN}` },
    body: JSON.stringify({ query: document, variables }),
  });
  const body = (await response.json()) as { data?: TData | null; errors?: GraphQLErrorEntry[] };
  if (body.errors?.length) throw new GraphQLRequestError(body.errors);
  if (!response.ok || body.data == null) throw new Error(`HTTP ${response.status} without data`);
  return body.data;
}

/** Every task of one board column, page by page (pageInfo.endCursor is the next `after`). */
export async function columnTasks(projectId: string, status: TaskStatus): Promise<TaskFieldsFragment[]> {
  const tasks: TaskFieldsFragment[] = [];
  let after: string | null = null;
  for (;;) {
    const data: BoardQuery = await request<BoardQuery, BoardQueryVariables>(BoardDocument, {
      projectId,
      status,
      first: 50,
      after,
    });
    tasks.push(...data.tasks.edges.map((edge) => edge.node));
    if (!data.tasks.pageInfo.hasNextPage) return tasks;
    after = data.tasks.pageInfo.endCursor;
  }
}

/** The first task's due date: DateTime is an ISO 8601 string, and null when there is none. */
export async function firstDueAt(projectId: string): Promise<Date | null> {
  const data = await request<BoardQuery, BoardQueryVariables>(BoardDocument, { projectId, first: 1 });
  const dueAt: string | null | undefined = data.tasks.edges[0]?.node.dueAt;
  return dueAt ? new Date(dueAt) : null;
}

/** Moves a task to the top of a column unless someone changed it since `task` was read. */
export async function moveToTop(
  task: Pick<TaskFieldsFragment, "id" | "version">,
  status: TaskStatus,
): Promise<TaskFieldsFragment | "stale"> {
  try {
    const data = await request<MoveTaskMutation, MoveTaskMutationVariables>(MoveTaskDocument, {
      id: task.id,
      status,
      position: 0,
      expectedVersion: task.version,
    });
    return data.moveTask;
  } catch (error) {
    if (error instanceof GraphQLRequestError && error.code === "CONFLICT") return "stale";
    throw error;
  }
}

/** Clears the due date (dueAt: null) and raises the priority; other fields stay as they are. */
export async function clearDueDate(task: Pick<TaskFieldsFragment, "id" | "version">): Promise<number> {
  const data = await request<UpdateTaskMutation, UpdateTaskMutationVariables>(UpdateTaskDocument, {
    id: task.id,
    input: { dueAt: null, priority: "HIGH" },
    expectedVersion: task.version,
  });
  return data.updateTask.version;
}

export async function openUrgentTickets(queueId: string): Promise<string[]> {
  const data = await request<TicketsQuery, TicketsQueryVariables>(TicketsDocument, {
    queueId,
    status: "OPEN",
    priority: "URGENT",
    first: 20,
  });
  return data.tickets.edges.map(({ node }) => `${node.title} (${node.assignee?.name ?? "unassigned"})`);
}

/** A queue's tickets in the order to work them (most urgent first), optionally searched. */
export async function triage(queueId: string, search?: string): Promise<string[]> {
  const data = await request<TicketsQuery, TicketsQueryVariables>(TicketsDocument, {
    queueId,
    orderBy: "PRIORITY",
    search: search ?? null,
    first: 20,
  });
  return data.tickets.edges.map(({ node }) => `[${node.priority}] ${node.title}`);
}

/** Whom to assign: the first people whose name (or a word of it) starts with `search`. */
export async function findPeople(search: string): Promise<Array<{ id: string; name: string }>> {
  const data = await request<FindPeopleQuery, FindPeopleQueryVariables>(FindPeopleDocument, {
    search,
    first: 10,
  });
  return data.users.edges.map(({ node }) => ({ id: node.id, name: node.name }));
}

export async function queueHealth(queueId: string): Promise<string> {
  const { queueMetrics: m } = await request<QueueMetricsQuery, QueueMetricsQueryVariables>(
    QueueMetricsDocument,
    { queueId },
  );
  const oldest = m.oldestOpenAgeSeconds === null ? "none open" : `${m.oldestOpenAgeSeconds} s`;
  return `${m.open} open, ${m.slaBreached} breached, ${m.slaAtRisk} at risk, oldest ${oldest}`;
}

export async function unreadBadge(): Promise<number> {
  const data = await request<NotificationsQuery, NotificationsQueryVariables>(NotificationsDocument, {
    first: 10,
    unreadOnly: true,
  });
  return data.notifications.unreadCount;
}

/** Turns quiet hours on (22:00-07:00 in `timezone`) and email off for task comments. */
export async function quietNights(timezone: string): Promise<boolean> {
  const before = await request<PreferencesQuery, PreferencesQueryVariables>(PreferencesDocument, {});
  if (!before.preferences.enabled) return false;
  const data = await request<UpdatePreferencesMutation, UpdatePreferencesMutationVariables>(
    UpdatePreferencesDocument,
    {
      input: {
        quietHours: { start: "22:00", end: "07:00", timezone },
        types: [{ type: "TASK_COMMENTED", email: false }],
      },
    },
  );
  return data.updatePreferences.quietHours?.timezone === timezone;
}

/** Hear about due tasks two hours ahead; true once the server says so. */
export async function remindEarlier(): Promise<boolean> {
  const data = await request<UpdatePreferencesMutation, UpdatePreferencesMutationVariables>(
    UpdatePreferencesDocument,
    { input: { dueReminderMinutes: 120 } },
  );
  return data.updatePreferences.dueReminderMinutes === 120;
}

/** The unread notifications a browser should pop up now (not in quiet hours), with sound or not. */
export async function popUps(): Promise<Array<{ title: string; sound: boolean }>> {
  const data = await request<NotificationsQuery, NotificationsQueryVariables>(NotificationsDocument, {
    first: 20,
    unreadOnly: true,
  });
  return data.notifications.edges
    .filter(({ node }) => node.delivery.browser)
    .map(({ node }) => ({ title: node.title, sound: node.delivery.sound }));
}

// Wrong usages the generated types must reject. If they were `any`, or named differently from
// the wire (snake_case), these directives would be unused and tsc would fail.
export function rejected(data: NotificationsQuery, metrics: QueueMetricsQuery): void {
  // @ts-expect-error: the wire name is unreadCount.
  void data.notifications.unread_count;
  // @ts-expect-error: the wire name is oldestOpenAgeSeconds.
  void metrics.queueMetrics.oldest_open_age_seconds;
  // @ts-expect-error: expectedVersion is an Int, not a string.
  const vars: MoveTaskMutationVariables = { id: "1", status: "DONE", position: 0, expectedVersion: "3" };
  void vars;
  // @ts-expect-error: not a TaskStatus.
  const status: TaskStatus = "BLOCKED";
  void status;
}
