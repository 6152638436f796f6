// The packing preview page: wires the sidebar (Configure, Route) to the views (Plan, See, Run).
// Runs the same facade and kernels as Node; the kernels come from the .wasm assets next to this
// script (setKernelSource), the shared variant when the page is cross-origin isolated.
import { setKernelSource } from '../backends/wasm/index.js';
import { MoeError } from '../core/errors.js';
import { $, h, ms } from './dom.js';
import { type PageRun, outputHashes, runRoundInPage } from './engine.js';
import { type Config, EXAMPLE_950, EXAMPLE_V2, type PickedFile, type RoundInputs, type Routing, SEED_EXAMPLE, analyse, generateInputs, openCase, usageOf, validate } from './model.js';
import { buildForm, readForm, showValidation, showVariant, writeForm } from './views/configure.js';
import { renderPlan } from './views/plan.js';
import { renderRun } from './views/run.js';
import { renderSee } from './views/see.js';

setKernelSource(new URL('./kernels.wasm', import.meta.url), new URL('./kernels.unshared.wasm', import.meta.url));

interface PreviewState {
  config: Config;
  inputs?: RoundInputs;
  routing?: Routing;
  run?: PageRun;
  hashes?: Record<string, string>[];
  metrics: { generateMs?: number; analyseMs?: number; drawMs?: number; runMs?: number };
  busy: boolean;
  errors: string[];
}

const state: PreviewState = { config: SEED_EXAMPLE, metrics: {}, busy: false, errors: [] };
/** For the tests and the curious: the state and the ops behind the page. */
(globalThis as unknown as { moePreview: unknown }).moePreview = {
  state,
  isolated: globalThis.crossOriginIsolated === true,
  sharedArrayBuffer: typeof SharedArrayBuffer,
  ready: false,
};

const form = $<HTMLFormElement>('config');

function status(text: string, kind: 'ok' | 'bad' | 'busy' = 'ok'): void {
  const el = $('status');
  el.textContent = text;
  el.className = `status ${kind}`;
}

function fail(e: unknown, where: string): void {
  const msg = e instanceof MoeError ? e.message : e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  state.errors.push(`${where}: ${msg}`);
  status(`${where}: ${msg}`, 'bad');
}

function showIsolation(): void {
  const iso = globalThis.crossOriginIsolated === true;
  const sab = typeof SharedArrayBuffer;
  const el = $('isolation');
  el.className = `badge ${iso ? 'ok' : 'warn'}`;
  el.textContent = iso ? 'cross-origin isolated · shared memory' : 'not cross-origin isolated · single-threaded';
  el.title = `crossOriginIsolated = ${String(globalThis.crossOriginIsolated)}; typeof SharedArrayBuffer = ${sab}\n${
    iso
      ? 'The group memory is a shared WebAssembly.Memory (as in Node).'
      : 'Without COOP/COEP headers (moe-distribute serve sends them; --no-isolation or a plain static host does not) there is no shared memory: the group falls back to a plain memory and every rank runs in this thread. Results are identical.'
  }`;
  $('iso-detail').textContent = `crossOriginIsolated = ${String(globalThis.crossOriginIsolated)}, typeof SharedArrayBuffer = ${sab}`;
}

/**
 * Live validation and the plan, on every change of the form. While the inputs at hand still fit the
 * form, what they pass (shared_expert_x, each rank's BS) goes into the warnings too; warnings never
 * disable Generate or Run.
 */
function onFormChange(): void {
  state.config = readForm(form);
  showVariant(form, state.config.attrs.platform, state.config.attrs.family);
  const current = state.inputs && sameShape(state.inputs, state.config) ? state.inputs : undefined;
  const v = validate(state.config, current ? usageOf(current) : {});
  showValidation(form, v, $('general-errors'), $('general-warnings'));
  renderPlan($('plan-out'), v.plan);
  $<HTMLButtonElement>('btn-generate').disabled = v.problems.length > 0;
  $('inputs-stale').hidden = !state.inputs || current !== undefined;
}

function sameShape(ri: RoundInputs, c: Config): boolean {
  const a = ri.attrs;
  const b = c.attrs;
  return (Object.keys(a) as (keyof typeof a)[]).every((k) => a[k] === b[k]) && ri.dims.bs === c.dims.bs && ri.dims.h === c.dims.h && ri.dims.k === c.dims.k;
}

function setInputs(ri: RoundInputs, generateMs: number): void {
  state.inputs = ri;
  state.run = undefined;
  state.hashes = undefined;
  $('run-out').replaceChildren(h('p', { text: 'Not run yet for these inputs.' }));
  const t0 = performance.now();
  state.routing = analyse(ri);
  const t1 = performance.now();
  selectTab('see');
  renderSee({ ri, rt: state.routing });
  const t2 = performance.now();
  state.metrics = { generateMs, analyseMs: t1 - t0, drawMs: t2 - t1 };
  $('inputs-label').textContent = ri.label;
  // the warnings now know what these inputs pass (an opened case's shared_expert_x)
  onFormChange();
  $('see-timing').textContent = `inputs ${ms(generateMs)}, routing analysis ${ms(t1 - t0)}, drawing ${ms(t2 - t1)}`;
  $('see-timing').setAttribute('data-render-ms', String(t2 - t0));
  $('see-empty').hidden = true;
  $('see-views').hidden = false;
  showRunButton(ri);
  $<HTMLButtonElement>('btn-run').disabled = false;
}

/** The ops of the inputs' family (runRound runs phasesOf(layout)): the setup family's four, or V2's two. */
const opsOf = (ri: RoundInputs): { label: string; title: string } =>
  ri.attrs.family === 'v2'
    ? { label: 'the two V2 ops', title: 'dispatch_v2, the identity expert, combine_v2 on every rank, in this browser (v2-contract §4-§6)' }
    : { label: 'the four ops', title: 'dispatchSetup, dispatchTeardown, the identity expert, combineSetup, combineTeardown on every rank, in this browser' };

function showRunButton(ri: RoundInputs): void {
  const b = $<HTMLButtonElement>('btn-run');
  const ops = opsOf(ri);
  b.textContent = `Run ${ops.label}`;
  b.title = ops.title;
}

async function generate(): Promise<void> {
  if (state.busy) return;
  state.busy = true;
  status('generating…', 'busy');
  await nextFrame();
  try {
    const t0 = performance.now();
    const ri = generateInputs(readForm(form));
    setInputs(ri, performance.now() - t0);
    status(`${ri.label}: ready`);
  } catch (e) {
    fail(e, 'generate');
  } finally {
    state.busy = false;
  }
}

async function openFiles(list: FileList | null): Promise<void> {
  if (!list || list.length === 0 || state.busy) return;
  state.busy = true;
  status('reading the files (locally)…', 'busy');
  try {
    const t0 = performance.now();
    const files: PickedFile[] = [];
    for (const f of Array.from(list)) files.push({ path: f.webkitRelativePath || f.name, bytes: new Uint8Array(await f.arrayBuffer()) });
    const ri = await openCase(files);
    writeForm(form, { ...state.config, attrs: ri.attrs, dims: ri.dims, dtype: ri.dtype, smoothScales: ri.inputs.some((i) => !!i.scales) });
    onFormChange();
    setInputs(ri, performance.now() - t0);
    status(`${ri.label}: ready`);
  } catch (e) {
    fail(e, 'open case');
  } finally {
    state.busy = false;
  }
}

async function run(): Promise<void> {
  if (!state.inputs || state.busy) return;
  state.busy = true;
  const btn = $<HTMLButtonElement>('btn-run');
  btn.disabled = true;
  status(`running ${opsOf(state.inputs).label} on ${state.inputs.attrs.epWorldSize} ranks…`, 'busy');
  selectTab('run');
  await nextFrame();
  try {
    const cfg = readForm(form);
    const r = await runRoundInPage(state.inputs, Number.isFinite(cfg.hcclMb) ? cfg.hcclMb : 200);
    state.run = r;
    state.metrics.runMs = r.totalMs;
    const hashes = crypto?.subtle ? await outputHashes(r) : [];
    state.hashes = hashes;
    const all = new TextEncoder().encode(hashes.map((x) => Object.values(x).join(',')).join(';'));
    const digest = crypto?.subtle ? [...new Uint8Array(await crypto.subtle.digest('SHA-256', all))].map((b) => b.toString(16).padStart(2, '0')).join('') : 'crypto.subtle unavailable (not a secure context)';
    // the traps of the round as run: its attributes and shapes, the configured buffer, what its ranks pass
    const warnings = validate({ ...cfg, attrs: state.inputs.attrs, dims: state.inputs.dims }, usageOf(state.inputs)).plan.warnings;
    renderRun(r, hashes, digest, state.inputs.attrs.epWorldSize, warnings);
    // (the See panel draws itself with the run when it is shown: selectTab)
    if (state.routing && !$('panel-see').hidden) renderSee({ ri: state.inputs, rt: state.routing, run: r });
    status(`ran ${state.inputs.label} in ${ms(r.totalMs)}${r.check ? ` — check ${r.check.pass ? 'PASS' : 'FAIL'}` : ''}`, r.check && !r.check.pass ? 'bad' : 'ok');
  } catch (e) {
    fail(e, 'run');
  } finally {
    state.busy = false;
    btn.disabled = false;
  }
}

const nextFrame = (): Promise<void> => new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));

// ---- tabs (Plan, See, Run): buttons with arrow-key navigation ----------------------------------
const TABS = ['plan', 'see', 'run'] as const;
function selectTab(name: (typeof TABS)[number]): void {
  for (const t of TABS) {
    const b = $(`tab-${t}`);
    const on = t === name;
    b.setAttribute('aria-selected', String(on));
    b.tabIndex = on ? 0 : -1;
    $(`panel-${t}`).hidden = !on;
  }
  if (name === 'see' && state.inputs && state.routing) requestAnimationFrame(() => renderSee({ ri: state.inputs!, rt: state.routing!, run: state.run }));
}

function boot(): void {
  showIsolation();
  const routeExtra = h(
    'div',
    { class: 'route-actions' },
    h('button', { type: 'button', id: 'btn-generate', class: 'primary', title: 'draw the inputs of every rank from the seed (x, expert_ids, expert_scales, scales, mask) and show where the tokens land' }, 'Generate routing'),
    h('button', { type: 'button', id: 'btn-seed', title: 'the torch_npu example of npm start: W 16, E 16, BS 64, H 1024, K 8, quant mode 2, smooth scales, seed 0' }, 'Seed example'),
    h('button', { type: 'button', id: 'btn-large', title: 'the largest group: W 384 ranks (128 shared-expert ranks, 2 shared experts), E 512 MoE experts, BS 8, H 1024, K 8, quant mode 2, zipf routing s = 1.2' }, 'W 384 × E 512'),
    h('button', { type: 'button', id: 'btn-950', title: 'Ascend 950 inside the envelope its combine tilings accept: W 8, E 32, BS 8, H 4096, K 8, globalBs 64, quant mode 4 (MX) with fp8_e4m3fn y, uniform routing, seed 0' }, '950 MX example'),
    h('button', { type: 'button', id: 'btn-v2', title: "the V2 ops (dispatch_v2 / combine_v2) on vllm-ascend's common path: W 8, E 32, BS 16, H 4096, K 8, quant mode 2 with smooth scales (E + SN' = 32 rows), comm_quant_mode 2 (int8 combine messages), uniform routing, seed 0" }, 'V2 example'),
    h(
      'label',
      { class: 'file', title: 'pick a case directory (case.json, rank{r}.safetensors or rank{r}/NAME.npy): the files are read by this page and never leave the machine' },
      'Open case directory…',
      h('input', { type: 'file', id: 'file-dir', webkitdirectory: true, multiple: true }),
    ),
    h('label', { class: 'file', title: 'pick case.json and the rank files (rank{r}.safetensors); read locally, never uploaded' }, 'Open case files…', h('input', { type: 'file', id: 'file-files', multiple: true })),
  );
  buildForm(form, routeExtra);
  writeForm(form, SEED_EXAMPLE);
  form.addEventListener('input', onFormChange);
  form.addEventListener('change', onFormChange);
  form.addEventListener('submit', (e) => e.preventDefault());
  $('btn-generate').onclick = () => void generate();
  $('btn-seed').onclick = () => {
    writeForm(form, SEED_EXAMPLE);
    onFormChange();
    void generate();
  };
  $('btn-large').onclick = () => {
    writeForm(form, {
      ...SEED_EXAMPLE,
      // E must be a multiple of the W − S MoE ranks: 128 shared ranks (2 shared experts), 256 MoE ranks × L = 2
      attrs: { ...SEED_EXAMPLE.attrs, epWorldSize: 384, moeExpertNum: 512, sharedExpertRankNum: 128, sharedExpertNum: 2, quantMode: 2, globalBs: 0 },
      dims: { bs: 8, h: 1024, k: 8 },
      routing: 'zipf',
      zipfS: 1.2,
      seed: 1,
      smoothScales: false,
    });
    onFormChange();
    void generate();
  };
  $('btn-950').onclick = () => {
    writeForm(form, EXAMPLE_950);
    onFormChange();
    void generate();
  };
  $('btn-v2').onclick = () => {
    writeForm(form, EXAMPLE_V2);
    onFormChange();
    void generate();
  };
  $<HTMLInputElement>('file-dir').onchange = (e) => void openFiles((e.target as HTMLInputElement).files);
  $<HTMLInputElement>('file-files').onchange = (e) => void openFiles((e.target as HTMLInputElement).files);
  $('btn-run').onclick = () => void run();
  for (const t of TABS) {
    const b = $(`tab-${t}`);
    b.onclick = () => selectTab(t);
    b.onkeydown = (ev) => {
      const i = TABS.indexOf(t);
      const j = ev.key === 'ArrowRight' ? (i + 1) % TABS.length : ev.key === 'ArrowLeft' ? (i + TABS.length - 1) % TABS.length : -1;
      if (j >= 0) {
        ev.preventDefault();
        selectTab(TABS[j]!);
        $(`tab-${TABS[j]}`).focus();
      }
    };
  }
  selectTab('plan');
  onFormChange();
  let resizeTimer: ReturnType<typeof setTimeout> | undefined;
  window.addEventListener('resize', () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => {
      if (state.inputs && state.routing && !$('panel-see').hidden) renderSee({ ri: state.inputs, rt: state.routing, run: state.run });
    }, 150);
  });
  status('ready: configure, then Generate routing (or open a case)');
  (globalThis as unknown as { moePreview: { ready: boolean } }).moePreview.ready = true;
}

boot();
