// The device backends' options and what every group offers (OpGroup). The npu group (src/npu/)
// forks processes and loads a native addon, so only the Node entry's createGroup (src/npu/create.ts,
// exported by src/index.ts) reaches it, by an explicit import: no registration by side effect, and
// the simulated group (src/group/group.ts, the browser's) never links it.
import type { GroupAttrs, Layout } from '../contract/attrs.js';
import type { GroupOptions } from './group.js';
import type {
  CombineSetupInputs,
  CombineSetupOutputs,
  CombineTeardownInputs,
  CombineTeardownOutputs,
  CombineV2Inputs,
  CombineV2Outputs,
  DispatchSetupInputs,
  DispatchSetupOutputs,
  DispatchTeardownInputs,
  DispatchTeardownOutputs,
  DispatchV2Inputs,
  DispatchV2Outputs,
} from '../contract/ops.js';

export type DeviceBackendName = 'npu' | 'auto';

/** Options of the npu backend (all optional on one Atlas host). */
export interface NpuOptions {
  /** CANN's install directory; default $ASCEND_HOME_PATH, else /usr/local/Ascend/ascend-toolkit/latest */
  ascendHome?: string;
  /** the ranks this process drives, one child process each; default every rank (one host) */
  localRanks?: number[];
  /** the device id of each local rank (same order); default 0, 1, 2, ... */
  devices?: number[];
  /**
   * an HCCL rank table (JSON) describing the cluster: ranks join with HcclCommInitClusterInfo
   * (several hosts, each driving its localRanks); without it, rank 0's HcclGetRootInfo is passed
   * by this process to every rank for HcclCommInitRootInfo (one host)
   */
  rankTable?: string;
  /** extra environment for the rank processes */
  env?: Record<string, string>;
}

export type DeviceGroupOptions = Omit<GroupOptions, 'backend'> & { backend: DeviceBackendName; npu?: NpuOptions };

/** What a caller of the four ops needs of a group: EpGroup and the npu group both provide it. */
export interface OpGroup {
  readonly layout: Layout;
  readonly attrs: GroupAttrs;
  readonly backendName: string;
  dispatchSetup(rank: number, inp: DispatchSetupInputs, attrs?: Partial<GroupAttrs>): Promise<DispatchSetupOutputs>;
  dispatchTeardown(rank: number, inp: DispatchTeardownInputs, attrs?: Partial<GroupAttrs>): Promise<DispatchTeardownOutputs>;
  combineSetup(rank: number, inp: CombineSetupInputs, attrs?: Partial<GroupAttrs>): Promise<CombineSetupOutputs>;
  combineTeardown(rank: number, inp: CombineTeardownInputs, attrs?: Partial<GroupAttrs>): Promise<CombineTeardownOutputs>;
  /** the V2 ops (a group created with family 'v2') */
  dispatchV2(rank: number, inp: DispatchV2Inputs, attrs?: Partial<GroupAttrs>): Promise<DispatchV2Outputs>;
  combineV2(rank: number, inp: CombineV2Inputs, attrs?: Partial<GroupAttrs>): Promise<CombineV2Outputs>;
  close(): void;
}

export function isDeviceGroupOptions(o: GroupOptions | DeviceGroupOptions): o is DeviceGroupOptions {
  return typeof o === 'object' && o !== null && (o.backend === 'npu' || o.backend === 'auto');
}
