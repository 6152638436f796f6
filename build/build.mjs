// npm install runs this (prepare): kernels first, then the bundles that embed them.
await import('./asc.mjs');
await import('./bundle.mjs');
