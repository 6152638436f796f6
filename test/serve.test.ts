// What `serve` shows (issue 11, item 5): nothing outside its root, even through a symlink; no
// dotfile or dot-folder; and only requests whose Host is this server on the loopback (DNS rebinding).
import { request } from 'node:http';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { type RunningServer, hostAllowed, startServer } from '../src/cli/serve.js';

let dir: string;
let srv: RunningServer;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'moe-serve-'));
  const root = join(dir, 'root');
  await mkdir(join(root, '.git'), { recursive: true });
  await writeFile(join(root, 'index.html'), '<p>page</p>');
  await writeFile(join(root, 'app.js'), 'console.log(1)');
  await writeFile(join(root, '.env'), 'SECRET=1');
  await writeFile(join(root, '.git', 'config'), '[core]');
  await writeFile(join(dir, 'outside.txt'), 'outside');
  await symlink('/etc', join(root, 'etcdir'));
  await symlink(join(dir, 'outside.txt'), join(root, 'out.txt'));
  await symlink(join(root, 'app.js'), join(root, 'alias.js'));
  srv = await startServer({ root, port: 0 });
});
afterAll(async () => {
  await srv.close();
  await rm(dir, { recursive: true, force: true });
});

function get(path: string, host = `127.0.0.1:${srv.port}`): Promise<{ status: number; body: string }> {
  return new Promise((ok, fail) => {
    const req = request({ host: '127.0.0.1', port: srv.port, path, headers: { host } }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => ok({ status: res.statusCode!, body }));
    });
    req.on('error', fail);
    req.end();
  });
}

describe('serve', () => {
  test('serves the page, and a symlink that stays inside the root', async () => {
    expect(await get('/')).toEqual({ status: 200, body: '<p>page</p>' });
    expect((await get('/alias.js')).body).toBe('console.log(1)');
  });

  test.each(['/etcdir/passwd', '/etcdir/hostname', '/out.txt'])('a symlink out of the root is not followed: %s', async (p) => {
    const r = await get(p);
    expect(r.status).toBe(404);
    expect(r.body).not.toMatch(/root:|outside/);
  });

  test.each(['/.env', '/.git/config', '/%2Eenv', '/x/../.env'])('no dotfile or dot-folder: %s', async (p) => {
    const r = await get(p);
    expect([403, 404]).toContain(r.status);
    expect(r.body).not.toMatch(/SECRET|core/);
  });

  test('only loopback Host headers with this port are answered', async () => {
    for (const h of [`localhost:${srv.port}`, `[::1]:${srv.port}`, `127.0.0.1:${srv.port}`]) expect((await get('/', h)).status).toBe(200);
    for (const h of ['evil.example:80', `evil.example:${srv.port}`, '127.0.0.1', `127.0.0.1:${srv.port + 1}`]) {
      const r = await get('/', h);
      expect(r.status, h).toBe(421);
      expect(r.body).not.toContain('page');
    }
    expect(hostAllowed(undefined, 80)).toBe(false);
  });
});
