// npm install runs this (prepare): kernels first, then the bundles that embed them, then the
// optional NPU bridge (a failure there is a warning: the npu backend then reports itself unavailable).
// The kernels and the addon skip themselves while their inputs are unchanged (stamps; --force
// rebuilds); the bundles are always rebuilt: esbuild takes about 0.1 s of CPU for each, less than
// hashing their inputs would save.
await import('./asc.mjs');
await import('./bundle.mjs');
await import('./addon.mjs');
await import('./bundle-web.mjs');
await import('./types.mjs');
