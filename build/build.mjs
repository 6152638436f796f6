// npm install runs this (prepare): kernels first, then the bundles that embed them, then the
// optional NPU bridge (a failure there is a warning: the npu backend then reports itself unavailable).
await import('./asc.mjs');
await import('./bundle.mjs');
await import('./addon.mjs');
await import('./bundle-web.mjs');
await import('./types.mjs');
