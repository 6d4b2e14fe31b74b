// The browser bundle behind pulseboard's offline GraphiQL page (pulseboard/static/graphiql/).
// build.sh bundles this file, the packages it imports (pinned in package-lock.json) and
// GraphiQL's stylesheet into graphiql.js and graphiql.css; index.html then uses the one global
// below. Nothing here loads anything from the network except the GraphQL endpoint itself.
import * as React from 'react';
import { createRoot } from 'react-dom/client';
import { GraphiQL } from 'graphiql';
import { createGraphiQLFetcher } from '@graphiql/toolkit';
import { createClient } from 'graphql-ws';
import { parse } from 'graphql';
import 'graphiql/style.css';

window.PulseboardGraphiQL = { React, createRoot, GraphiQL, createGraphiQLFetcher, createClient, parse };
