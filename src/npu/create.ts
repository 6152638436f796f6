// createGroup of the Node entry: the simulated group, or with backend 'npu' (Ascend NPUs through the
// native bridge) or 'auto' (npu when CANN is available, else wasm, and says which) the npu group.
// Chosen here by an explicit import of the npu group; the browser's entry has only the simulated one.
import { type OpGroup, type DeviceGroupOptions, isDeviceGroupOptions } from '../group/create.js';
import { type EpGroup, type GroupOptions, createGroup as createSimulatedGroup } from '../group/group.js';
import { NpuGroup } from './group.js';
import { npuAvailability } from './index.js';

export async function createGroup(opts: DeviceGroupOptions): Promise<OpGroup>;
export async function createGroup(opts: GroupOptions): Promise<EpGroup>;
export async function createGroup(opts: GroupOptions | DeviceGroupOptions): Promise<EpGroup | OpGroup> {
  if (!isDeviceGroupOptions(opts)) return createSimulatedGroup(opts);
  if (opts.backend === 'npu') return NpuGroup.create(opts);
  const av = npuAvailability(opts.npu?.ascendHome);
  if (av.available) {
    opts.log?.(`backend auto: npu, ${av.reason}`);
    return NpuGroup.create({ ...opts, backend: 'npu' });
  }
  opts.log?.(`backend auto: wasm, because the npu backend is not available: ${av.reason}`);
  const { npu: _npu, backend: _b, ...rest } = opts;
  return createSimulatedGroup({ ...rest, backend: 'wasm' });
}
