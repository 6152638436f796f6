// The process of one rank of the npu backend (forked by NpuGroup, one per NPU): loads the bridge,
// sets its device, joins the communicator and runs its rank's ops as the parent asks. Bundled to
// dist/npu-child.js by build/addon.mjs. When the parent goes away, the rank releases its device.
import { loadBridge, type NativeBridge } from './bridge.js';
import type { ChildReply, Envelope, WireError } from './protocol.js';

let native: NativeBridge | undefined;
let finalized = false;

function send(reply: ChildReply): Promise<void> {
  return new Promise((resolve) => {
    if (!process.connected) return resolve();
    process.send!(reply, undefined, undefined, () => resolve());
  });
}

function wire(e: unknown): WireError {
  const o = e as WireError;
  return {
    name: o?.name ?? 'Error',
    message: o?.message ?? String(e),
    api: o?.api,
    status: o?.status,
    cannMessage: o?.cannMessage,
    timeoutMs: o?.timeoutMs,
    unsupported: o?.unsupported,
  };
}

function finalize(): void {
  if (finalized || !native) return;
  finalized = true;
  native.finalize();
}

async function handle(m: Envelope): Promise<unknown> {
  switch (m.type) {
    case 'init': {
      const b = loadBridge({ ascendHome: m.ascendHome });
      if (!b.available) throw new Error(`rank ${m.rank}: ${b.reason}`);
      native = b.native;
      native.init(m.deviceId);
      return { pid: process.pid, libraries: b.libraries, ops: b.ops, soc: native.soc() };
    }
    case 'rootInfo':
      return new Uint8Array(need().getRootInfo());
    case 'joinRoot':
      return need().commInitRootInfo(m.nRanks, Buffer.from(m.rootInfo.buffer, m.rootInfo.byteOffset, m.rootInfo.byteLength), m.rank);
    case 'joinCluster':
      return need().commInitClusterInfo(m.rankTable, m.rank);
    case 'op':
      return need().runOp(m.op, m.inputs, m.outputs, m.ints, m.groupEp, m.opts);
    case 'sizes':
      return need().outputSizes(m.op, m.inputs, m.ints, m.groupEp, m.commAlg);
    case 'close':
      finalize();
      return undefined;
  }
}

function need(): NativeBridge {
  if (!native) throw new Error('the rank process was not initialised');
  return native;
}

process.on('message', (m: Envelope) => {
  handle(m).then(
    async (value) => {
      await send({ id: m.id, ok: true, value });
      if (m.type === 'close') process.exit(0);
    },
    async (e) => {
      await send({ id: m.id, ok: false, error: wire(e) });
      if (m.type === 'close') process.exit(1);
    },
  );
});

process.on('disconnect', () => {
  try {
    finalize();
  } finally {
    process.exit(0);
  }
});
