#!/usr/bin/env node
// The CLI entry: the bundled CLI lives in dist/ (built by `npm install`).
import('../dist/cli.js').catch((err) => {
  if (err && err.code === 'ERR_MODULE_NOT_FOUND') {
    process.stderr.write('moe-distribute: dist/cli.js is missing; run `npm install` (or `npm run build`) first\n');
    process.exit(2);
  }
  throw err;
});
