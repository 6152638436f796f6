// The npu backend's Node entry: registers the device group factory with the facade, so that
// createGroup({ backend: 'npu' | 'auto' }) reaches NpuGroup. Imported by src/index.ts and the runner.
import { registerDeviceGroupFactory } from '../group/create.js';
import { loadBridge } from './bridge.js';
import { NpuGroup, childScript } from './group.js';

export { NpuGroup, NpuError, childScript } from './group.js';
export { loadBridge, addonCandidates, ascendHome, ACL_DTYPE, type BridgeStatus } from './bridge.js';

/** Whether the npu backend can run here, and if not why (for `--backend auto` and the docs). */
export function npuAvailability(ascendHome?: string): { available: boolean; reason: string } {
  const b = loadBridge({ ascendHome });
  if (!b.available) return { available: false, reason: b.reason };
  if (!childScript()) return { available: false, reason: 'dist/npu-child.js is missing (run `node build/addon.mjs`)' };
  const libs = Object.values(b.libraries).flat().join(', ');
  return { available: true, reason: `CANN found (${libs})` };
}

registerDeviceGroupFactory(async (opts, simulated) => {
  if (opts.backend === 'npu') return NpuGroup.create(opts);
  const av = npuAvailability(opts.npu?.ascendHome);
  if (av.available) {
    opts.log?.(`backend auto: npu, ${av.reason}`);
    return NpuGroup.create({ ...opts, backend: 'npu' });
  }
  opts.log?.(`backend auto: wasm, because the npu backend is not available: ${av.reason}`);
  const { npu: _npu, backend: _b, ...rest } = opts;
  return simulated({ ...rest, backend: 'wasm' });
});
