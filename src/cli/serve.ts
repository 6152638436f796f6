// `moe-distribute serve`: the packing preview page (dist/web/, built by build/bundle-web.mjs) on
// 127.0.0.1, with the cross-origin isolation headers (COOP same-origin, COEP require-corp) that a
// shared WebAssembly.Memory needs in a browser; `--no-isolation` serves without them (the page then
// runs single-threaded over a plain memory and says so).
import { createReadStream, existsSync } from 'node:fs';
import { realpath, stat } from 'node:fs/promises';
import { type Server, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, extname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { type CliIo, type Command, EXIT_OK, UsageError } from './io.js';

const HELP = `Usage: moe-distribute serve [--port N] [--no-isolation] [--root DIR]

Serves the packing preview page on http://127.0.0.1:PORT/: configure the ops' attributes with
live validation, see the plan (L, A, tokenMsgSize, HCCL_BUFFSIZE), generate or open routing, see
where every token lands (heatmaps, loads, window blocks, the y message layout) and run the four
ops in the browser. Files opened in the page never leave the machine.

Options:
  --port N         the port (default 8080; 0 picks a free one)
  --no-isolation   serve without the COOP/COEP headers (no shared memory: single-threaded)
  --root DIR       the page's directory (default: dist/web of this package)
  -h, --help       show this help

Stops on Ctrl-C. \`npm run preview\` builds the page and runs this.
`;

export const MIME: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.wasm': 'application/wasm',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
  '.ico': 'image/x-icon',
  '.txt': 'text/plain; charset=utf-8',
};

/** dist/web next to this module: dist/cli.js, dist/chunks/*.js, or src/cli/serve.ts in the repo. */
export function defaultWebRoot(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  // (src/web holds the page's sources, not the built page: app.js marks a build)
  const candidates = [join(here, 'web'), join(here, '..', 'web'), join(here, '..', '..', 'dist', 'web'), join(here, '..', 'dist', 'web')];
  return candidates.find((d) => existsSync(join(d, 'index.html')) && existsSync(join(d, 'app.js'))) ?? candidates[0]!;
}

export interface ServeOptions {
  /** 0: a free port */
  port?: number;
  /** COOP/COEP headers (default true) */
  isolation?: boolean;
  root?: string;
}

export interface RunningServer {
  url: string;
  port: number;
  server: Server;
  close(): Promise<void>;
}

/**
 * The file under `root` for a request path, or undefined when the path escapes root (`..`,
 * encoded or not), holds a NUL or a backslash, or is not valid percent-encoding.
 */
export function resolveUnder(root: string, urlPath: string): string | undefined {
  let p: string;
  try {
    p = decodeURIComponent(urlPath.split('?')[0]!.split('#')[0]!);
  } catch {
    return undefined;
  }
  if (p.includes('\0') || p.includes('\\')) return undefined;
  if (p.endsWith('/')) p += 'index.html';
  const base = resolve(root);
  const full = resolve(base, `.${p.startsWith('/') ? p : `/${p}`}`);
  if (full !== base && !full.startsWith(base + sep)) return undefined;
  // no dotfile or dot-folder (.env, .git/config) is ever served
  if (relative(base, full).split(sep).some((seg) => seg.startsWith('.'))) return undefined;
  return full;
}

/**
 * Whether a request's Host header names this server: 127.0.0.1, localhost or [::1] with the port it
 * listens on. Anything else is refused, so that a page of another site that rebinds its own name
 * to 127.0.0.1 (DNS rebinding) cannot read what is served.
 */
export function hostAllowed(host: string | undefined, port: number): boolean {
  if (!host) return false;
  const h = host.toLowerCase();
  return h === `127.0.0.1:${port}` || h === `localhost:${port}` || h === `[::1]:${port}`;
}

/** Starts the server on 127.0.0.1; resolves once it listens. */
export async function startServer(opts: ServeOptions = {}): Promise<RunningServer> {
  const root = opts.root ?? defaultWebRoot();
  const isolation = opts.isolation ?? true;
  if (!existsSync(join(root, 'index.html')) || !existsSync(join(root, 'app.js'))) {
    throw new UsageError(`no built page at ${root} (index.html or app.js missing); run \`npm run build\` first, or pass --root`, 'serve');
  }
  let port = 0;
  const server = createServer((req, res) => {
    const headers: Record<string, string> = { 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' };
    if (isolation) {
      headers['cross-origin-opener-policy'] = 'same-origin';
      headers['cross-origin-embedder-policy'] = 'require-corp';
      headers['cross-origin-resource-policy'] = 'same-origin';
    }
    const send = (code: number, text: string): void => {
      res.writeHead(code, { ...headers, 'content-type': 'text/plain; charset=utf-8' });
      res.end(req.method === 'HEAD' ? undefined : text);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      send(405, 'method not allowed\n');
      return;
    }
    if (!hostAllowed(req.headers.host, port)) {
      send(421, 'misdirected request: the Host header must be 127.0.0.1, localhost or [::1] with this port\n');
      return;
    }
    const file = resolveUnder(root, req.url ?? '/');
    if (!file) {
      send(403, 'forbidden\n');
      return;
    }
    // the real path, symlinks resolved, must still be under the root's real path
    Promise.all([realpath(file), realpath(root)])
      .then(([real, realRoot]) => (real === realRoot || real.startsWith(realRoot + sep) ? stat(real).then((st) => ({ st, real })) : Promise.reject(new Error('outside'))))
      .then(
      ({ st, real }) => {
        if (!st.isFile()) {
          send(404, 'not found\n');
          return;
        }
        res.writeHead(200, {
          ...headers,
          'content-type': MIME[extname(file).toLowerCase()] ?? 'application/octet-stream',
          'content-length': String(st.size),
        });
        if (req.method === 'HEAD') res.end();
        else createReadStream(real).on('error', () => res.destroy()).pipe(res);
      },
      () => send(404, 'not found\n'),
    );
  });
  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(opts.port ?? 8080, '127.0.0.1', () => {
      server.off('error', fail);
      ok();
    });
  });
  port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/`,
    port,
    server,
    close: () =>
      new Promise<void>((ok) => {
        server.closeAllConnections();
        server.close(() => ok());
      }),
  };
}

export const serveCommand: Command = {
  name: 'serve',
  summary: 'serve the packing preview page on 127.0.0.1 (cross-origin isolated)',
  help: HELP,
  async run(argv: string[], io: CliIo): Promise<number> {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        port: { type: 'string' },
        'no-isolation': { type: 'boolean' },
        root: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
    if (values.help) {
      io.stdout(HELP);
      return EXIT_OK;
    }
    if (positionals.length > 0) throw new UsageError(`serve takes no positional arguments, got ${positionals.join(' ')}`, 'serve');
    let port = 8080;
    if (values.port !== undefined) {
      if (!/^\d+$/.test(values.port) || Number(values.port) > 65535) {
        throw new UsageError(`--port should be an integer in [0, 65535], got ${JSON.stringify(values.port)}`, 'serve');
      }
      port = Number(values.port);
    }
    const isolation = !values['no-isolation'];
    let s: RunningServer;
    try {
      s = await startServer({ port, isolation, root: values.root });
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (code === 'EADDRINUSE') throw new UsageError(`port ${port} is in use; pass --port N (0 picks a free one)`, 'serve');
      throw e;
    }
    io.stdout(
      `moe-distribute preview: ${s.url}\n` +
        `  ${isolation ? 'cross-origin isolated (COOP same-origin, COEP require-corp): shared memory available' : 'served without COOP/COEP: the page runs single-threaded over a plain memory'}\n` +
        '  Ctrl-C stops\n',
    );
    await new Promise<void>((done) => {
      const stop = (): void => {
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
        done();
      };
      process.on('SIGINT', stop);
      process.on('SIGTERM', stop);
    });
    await s.close();
    return EXIT_OK;
  },
};
