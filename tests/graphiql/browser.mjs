// Drives the GraphiQL page of a running pulseboard in headless Chromium (Debian's, through
// playwright-core: no browser download), for tests/test_graphiql.py. Reports on stdout, a line each:
//
//   HEADERS <json>        the text of GraphiQL's headers editor once the page is up
//   QUERY <json>          the result pane after running the query (it shows the viewer's email)
//   SUBSCRIBED            the subscription's `subscribe` message went over the page's WebSocket;
//                         the test now makes the mutation whose event the page must show
//   EVENT <json>          the result pane once the event arrived
//   SCREENSHOT <path>     a PNG of the page at the end
//   REQUESTS <json>       every URL the page asked for (HTTP and WebSocket), in order
//   EXTERNAL <json>       those whose host is not 127.0.0.1 / localhost (must be [])
//
// Exits 0 when all went well; 1 (with the reason on stderr) otherwise.
//
// usage: node browser.mjs --url http://127.0.0.1:PORT --email E --project ID --title T
//                         --screenshot PATH [--chromium /usr/bin/chromium] [--timeout-ms MS]

import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

const { values: args } = parseArgs({
  options: {
    url: { type: 'string' },
    email: { type: 'string' },
    project: { type: 'string' },
    title: { type: 'string' },
    screenshot: { type: 'string' },
    chromium: { type: 'string', default: '/usr/bin/chromium' },
    'timeout-ms': { type: 'string', default: '20000' },
  },
});
for (const name of ['url', 'email', 'project', 'title', 'screenshot']) {
  if (!args[name]) {
    console.error(`--${name} is required`);
    process.exit(1);
  }
}
const timeout = Number(args['timeout-ms']);
const LOCAL = new Set(['127.0.0.1', 'localhost', '[::1]']);
const QUERY = '{ viewer { email } }';
const SUBSCRIPTION = `subscription { taskEvents(projectId: "${args.project}") { type task { title } } }`;

const say = (kind, value) => console.log(value === undefined ? kind : `${kind} ${JSON.stringify(value)}`);
const requests = [];
const external = [];
function record(url) {
  requests.push(url);
  const { protocol, hostname } = new URL(url);
  if (protocol === 'data:' || protocol === 'blob:' || protocol === 'about:') return;
  if (!LOCAL.has(hostname)) external.push(url);
}

const browser = await chromium.launch({
  executablePath: args.chromium,
  headless: true,
  timeout,
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    // Belt and braces: a host other than the loopback would not resolve (it is still recorded).
    '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost',
  ],
});
let failed = null;
try {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  context.setDefaultTimeout(timeout);
  context.on('request', (request) => record(request.url()));
  const page = await context.newPage();
  page.on('websocket', (ws) => record(ws.url()));
  page.on('pageerror', (error) => console.error(`page error: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') console.error(`console: ${message.text()}`);
  });
  let subscribeSent;
  const subscribed = new Promise((resolve) => (subscribeSent = resolve));
  page.on('websocket', (ws) =>
    ws.on('framesent', ({ payload }) => {
      if (typeof payload === 'string' && payload.includes('"subscribe"') && payload.includes('taskEvents')) {
        subscribeSent();
      }
    }),
  );

  // A browser's navigation sends Accept: text/html..., which is what makes /graphql serve the page.
  const response = await page.goto(`${args.url}/graphql?q=${encodeURIComponent(QUERY)}`);
  if (response?.status() !== 200) throw new Error(`GET /graphql answered ${response?.status()}`);

  const editor = (selector) =>
    page.evaluate((sel) => document.querySelector(`${sel} .CodeMirror`)?.CodeMirror.getValue() ?? null, selector);
  const result = () => editor('.graphiql-response');
  async function until(what, check) {
    const deadline = Date.now() + timeout;
    for (;;) {
      const value = await check();
      if (value) return value;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await page.waitForTimeout(50);
    }
  }

  await page.locator('.graphiql-execute-button').waitFor();
  // The editor tools hold the variables and the headers editors.
  const headers = await until('the prefilled headers editor', () =>
    page.evaluate(() =>
      Array.from(document.querySelectorAll('.graphiql-editor-tool .CodeMirror'))
        .map((element) => element.CodeMirror.getValue())
        .find((text) => text.includes('Authorization')) ?? null,
    ),
  );
  say('HEADERS', headers);
  await until('the query from ?q=', async () => (await editor('.graphiql-query-editor')) === QUERY);

  await page.locator('.graphiql-execute-button').click();
  say('QUERY', await until(`${args.email} in the result pane`, async () => {
    const text = await result();
    return text && text.includes(args.email) ? text : null;
  }));

  await page.evaluate(
    (text) => document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror.setValue(text),
    SUBSCRIPTION,
  );
  await page.locator('.graphiql-execute-button').click();
  let timer;
  await Promise.race([
    subscribed,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error('the subscription was not sent over a WebSocket')), timeout);
    }),
  ]);
  clearTimeout(timer);
  say('SUBSCRIBED');
  say('EVENT', await until(`the "${args.title}" event in the result pane`, async () => {
    const text = await result();
    return text && text.includes(args.title) && text.includes('CREATED') ? text : null;
  }));

  await page.screenshot({ path: args.screenshot });
  say('SCREENSHOT', args.screenshot);
  await page.locator('.graphiql-execute-button').click(); // stops the subscription
  await context.close();
} catch (error) {
  failed = error;
} finally {
  await browser.close();
}
say('REQUESTS', requests);
say('EXTERNAL', external);
if (failed) {
  console.error(failed.stack || String(failed));
  process.exit(1);
}
if (external.length) {
  console.error(`requests left the host: ${external.join(', ')}`);
  process.exit(1);
}
