#!/usr/bin/env bash
# Builds the GraphiQL page's assets, so that pulseboard serves GraphiQL without any CDN:
#
#   scripts/graphiql/build.sh
#
# installs the exact packages of package-lock.json (`npm ci`: graphiql, react, react-dom,
# graphql, graphql-ws, @graphiql/toolkit, esbuild) and bundles entry.jsx with esbuild into
#
#   pulseboard/static/graphiql/graphiql.js    minified; React, GraphiQL, graphql-ws, ...
#   pulseboard/static/graphiql/graphiql.css   minified; GraphiQL's styles (fonts inlined)
#   pulseboard/static/graphiql/THIRD_PARTY_LICENSES.txt
#                                             the license of every bundled npm package
#
# The built files are committed: `make run` and the wheel need no Node. Run this again (Node 20+)
# after changing package.json / package-lock.json or entry.jsx, and commit the output.
# esbuild keeps the packages' legal comments (/*! ... */, @license) at the end of each file.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$here/../../pulseboard/static/graphiql"
cd "$here"

npm ci --no-audit --no-fund
mkdir -p "$out"
./node_modules/.bin/esbuild entry.jsx \
  --bundle \
  --minify \
  --format=iife \
  --target=es2020 \
  --platform=browser \
  --jsx=automatic \
  --legal-comments=eof \
  --define:process.env.NODE_ENV='"production"' \
  --entry-names=graphiql \
  --outdir="$out" \
  --metafile="$here/node_modules/.meta.json" \
  --log-level=warning \
  --banner:js="/*! pulseboard GraphiQL bundle: the bundled packages and their licenses are listed in THIRD_PARTY_LICENSES.txt */" \
  --banner:css="/*! pulseboard GraphiQL styles: the bundled packages and their licenses are listed in THIRD_PARTY_LICENSES.txt */"

# The licenses of the packages esbuild actually put into the bundle (from its metafile).
node --input-type=module - "$here/node_modules/.meta.json" "$out/THIRD_PARTY_LICENSES.txt" <<'JS'
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
const [meta, target] = process.argv.slice(2);
const dirs = new Set();
for (const input of Object.keys(JSON.parse(readFileSync(meta, 'utf8')).inputs)) {
  const match = input.match(/^(.*node_modules\/(?:@[^/]+\/)?[^/]+)\//);
  if (match) dirs.add(match[1]);
}
const parts = ['Third-party software bundled into graphiql.js and graphiql.css (built by scripts/graphiql/build.sh).\n'];
for (const dir of [...dirs].sort()) {
  const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  const file = readdirSync(dir).find((name) => /^(licen[cs]e|copying)(\.|$)/i.test(name));
  const text = file ? readFileSync(join(dir, file), 'utf8').trim() : `License: ${pkg.license} (no license file in the package)`;
  parts.push(`${'='.repeat(78)}\n${pkg.name}@${pkg.version} (${pkg.license})\n${'='.repeat(78)}\n${text}\n`);
}
writeFileSync(target, parts.join('\n'));
JS
ls -l "$out"
