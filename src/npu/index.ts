// The npu backend: the npu group, the bridge's loader, and whether it can run here. The Node
// entry's createGroup (./create.ts) reaches it for backend 'npu' and 'auto'.
import { loadBridge } from './bridge.js';
import { childScript } from './group.js';
import type { MissingOps, OpSources } from './bridge.js';

export { NpuGroup, NpuError, childScript, combineSizeExpectation, dispatchSizeExpectation, V2_UNMODELLED, type AclnnRan, type NpuCombineV2Outputs, type NpuDispatchV2Outputs, type ProbeHatch, type SizeExpectation } from './group.js';
export { loadBridge, addonCandidates, ascendHome, socPlatform, ACL_DTYPE, type BridgeStatus, type MissingOps, type OpSources } from './bridge.js';

/**
 * Whether the npu backend can run here, and if not why (for `--backend auto` and the docs); when
 * it can, the library each op comes from and the SoC.
 */
export function npuAvailability(ascendHome?: string, env: NodeJS.ProcessEnv = process.env): { available: boolean; reason: string; ops?: OpSources; missing?: MissingOps; soc?: string | null } {
  const b = loadBridge({ ascendHome, env });
  if (!b.available) return { available: false, reason: b.reason };
  if (!childScript()) return { available: false, reason: 'dist/npu-child.js is missing (run `node build/addon.mjs`)' };
  const libs = Object.values(b.libraries).flat().join(', ');
  const ops = (Object.entries(b.ops) as [string, NonNullable<OpSources[keyof OpSources]>][])
    .map(([op, o]) => `${op} from ${o.library}${o.name ? ` (${o.name})` : ''}${o.sizeHelper ? ' (with its size helper)' : ''}`)
    .join('; ');
  // a family this CANN cannot run, and why (the other one runs)
  const gaps = (Object.entries(b.missing) as [string, string][]).map(([f, why]) => `; family '${f}' cannot run: ${why}`).join('');
  return { available: true, reason: `CANN found (${libs}); SoC ${b.soc ?? 'unknown'}; ${ops}${gaps}`, ops: b.ops, missing: b.missing, soc: b.soc };
}
