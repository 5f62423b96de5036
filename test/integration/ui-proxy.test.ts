import { readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log';
import { freePort } from '../../src/stack/process';
import { startUiProxy, type RunningUiProxy } from '../../src/stack/ui-proxy';
import { createTestPki } from '../support/certs';

interface Seen {
  readonly upstream: 'ui' | 'codec';
  readonly method: string;
  readonly url: string;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: string;
}

/** An upstream that records what reached it and answers as the request's path asks. */
function upstream(name: Seen['upstream'], seen: Seen[], release: { next?: () => void }): http.Server {
  return http.createServer((req, res) => {
    if (req.url === '/upload') {
      // Answers on the first chunk of the body, long before the client has sent the rest.
      req.once('data', (chunk: Buffer) => {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write(`got:${chunk.toString()};`);
        req.on('end', () => res.end('end'));
      });
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      seen.push({ upstream: name, method: req.method!, url: req.url!, headers: req.headers, body: Buffer.concat(chunks).toString() });
      if (req.url === '/refuse') {
        res.writeHead(401, [['WWW-Authenticate', 'Bearer'], ['Set-Cookie', 'a=1; HttpOnly'], ['Set-Cookie', 'b=2; Path=/'], ['Content-Type', 'application/problem+json']].flat());
        return void res.end('{"title":"Unauthorized"}');
      }
      if (req.url === '/stream') {
        // Half a body, then the rest only once the client has seen the first half.
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write('first;');
        release.next = () => res.end('second');
        return;
      }
      res.writeHead(418, { 'content-type': 'text/plain', connection: 'close' });
      res.end(`${name}:${req.url}`);
    });
  });
}

async function listen(server: http.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

/** A request written byte for byte, for targets fetch() would never send. */
function raw(port: number, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => socket.write(request));
    let answer = '';
    socket.on('data', (chunk) => (answer += chunk.toString()));
    socket.on('end', () => resolve(answer));
    socket.on('error', reject);
    socket.setTimeout(5_000, () => {
      socket.destroy();
      resolve(answer);
    });
  });
}

describe('the operator UI proxy (the Web UI and the codec server on one origin)', () => {
  const seen: Seen[] = [];
  const release: { next?: () => void } = {};
  const ui = upstream('ui', seen, release);
  const codec = upstream('codec', seen, release);
  let proxy: RunningUiProxy;
  let port: number;

  beforeAll(async () => {
    const [uiPort, codecPort] = [await listen(ui), await listen(codec)];
    proxy = await startUiProxy({
      host: '127.0.0.1',
      port: 0,
      ui: { host: '127.0.0.1', port: uiPort },
      codec: { host: '127.0.0.1', port: codecPort },
      sessionCookie: 'ledgerlock_codec_session',
      log: createLogger('error'),
    });
    port = Number(new URL(proxy.url).port);
  });
  beforeEach(() => void seen.splice(0));
  afterAll(async () => {
    await proxy.stop();
    await Promise.all([ui, codec].map((s) => new Promise((resolve) => s.close(resolve))));
  });

  it('sends /codec/… to the codec server without the prefix, everything else to the Web UI, with status and body unchanged', async () => {
    const decode = await fetch(`${proxy.url}/codec/decode?x=1`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-namespace': 'default' }, body: '{"payloads":[]}' });
    expect(decode.status).toBe(418);
    expect(await decode.text()).toBe('codec:/decode?x=1');
    const page = await fetch(`${proxy.url}/namespaces/default/workflows`);
    expect(await page.text()).toBe('ui:/namespaces/default/workflows');
    // Only the exact prefix is the codec server's.
    expect(await (await fetch(`${proxy.url}/codecs`)).text()).toBe('ui:/codecs');
    expect(seen.map((s) => [s.upstream, s.method, s.url])).toEqual([
      ['codec', 'POST', '/decode?x=1'],
      ['ui', 'GET', '/namespaces/default/workflows'],
      ['ui', 'GET', '/codecs'],
    ]);
    expect(seen[0]).toMatchObject({ body: '{"payloads":[]}', headers: { 'x-namespace': 'default', host: `127.0.0.1:${port}` } });
  });

  it('keeps the codec session cookie from the Web UI, and gives it to the codec server', async () => {
    const cookie = '_csrf=abc; ledgerlock_codec_session=secret-token; theme=dark';
    await fetch(`${proxy.url}/api/v1/settings`, { headers: { cookie } });
    await fetch(`${proxy.url}/codec/decode`, { method: 'POST', headers: { cookie, origin: proxy.url }, body: '{}' });
    expect(seen[0]!.headers.cookie).toBe('_csrf=abc; theme=dark');
    expect(seen[1]!.headers.cookie).toBe(cookie);
    expect(seen[1]!.headers.origin).toBe(proxy.url);

    await fetch(`${proxy.url}/`, { headers: { cookie: 'ledgerlock_codec_session=secret-token' } });
    expect(seen[2]!.headers.cookie).toBeUndefined();
  });

  it('passes a refusal through as it was: status, WWW-Authenticate and every Set-Cookie', async () => {
    const res = await fetch(`${proxy.url}/codec/refuse`, { method: 'POST', body: '{}' });
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toBe('Bearer');
    expect(res.headers.get('content-type')).toBe('application/problem+json');
    expect(res.headers.getSetCookie()).toEqual(['a=1; HttpOnly', 'b=2; Path=/']);
  });

  it('streams a response: the first part arrives before the upstream has finished', async () => {
    const res = await fetch(`${proxy.url}/stream`);
    const reader = res.body!.getReader();
    const first = await reader.read();
    expect(Buffer.from(first.value!).toString()).toBe('first;');
    release.next!();
    let rest = '';
    for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) rest += Buffer.from(chunk.value).toString();
    expect(rest).toBe('second');
  });

  it('streams a request body: the upstream reads its first part before the client has sent the rest', async () => {
    const answer = await new Promise<string>((resolve, reject) => {
      const req = http.request(`${proxy.url}/codec/upload`, { method: 'POST', headers: { 'content-type': 'application/octet-stream' } }, (res) => {
        let body = '';
        res.on('data', (chunk: Buffer) => {
          body += chunk.toString();
          // The rest of the request only once the upstream has answered its first part.
          if (body === 'got:part-one;') req.end('part-two');
        });
        res.on('end', () => resolve(body));
      });
      req.on('error', reject);
      req.flushHeaders();
      req.write('part-one');
    });
    expect(answer).toBe('got:part-one;end');
  });

  it('drops hop-by-hop headers, and those the Connection header names', async () => {
    await raw(port, 'GET /x HTTP/1.1\r\nHost: ui.test\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\nX-Kept: 2\r\nKeep-Alive: timeout=5\r\nProxy-Authorization: Basic Zm9v\r\n\r\n');
    expect(seen[0]!.headers).toMatchObject({ host: 'ui.test', 'x-kept': '2' });
    expect(seen[0]!.headers['x-hop']).toBeUndefined();
    expect(seen[0]!.headers['proxy-authorization']).toBeUndefined();
    expect(seen[0]!.headers['keep-alive']).toBeUndefined();
  });

  it('is never an open proxy: absolute-form targets, CONNECT, `*` and upgrades are refused, reaching no upstream', async () => {
    const absolute = await raw(port, 'GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n');
    expect(absolute).toMatch(/^HTTP\/1\.1 400 /);
    expect(absolute).toContain('application/problem+json');
    expect(absolute).toContain('must be a path');
    expect(await raw(port, 'GET //example.com/ HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n')).toMatch(/^HTTP\/1\.1 400 /);
    expect(await raw(port, 'OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')).toMatch(/^HTTP\/1\.1 400 /);
    expect(await raw(port, 'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n')).toMatch(/^HTTP\/1\.1 405 /);
    expect(await raw(port, 'GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n')).toMatch(/^HTTP\/1\.1 501 /);
    expect(seen).toEqual([]);
  });

  it('answers 502 with a problem naming the upstream when one is down', async () => {
    const closed = await freePort();
    const lonely = await startUiProxy({
      host: '127.0.0.1',
      port: 0,
      ui: { host: '127.0.0.1', port: closed },
      codec: { host: '127.0.0.1', port: closed },
      sessionCookie: 'ledgerlock_codec_session',
      log: createLogger('error'),
    });
    try {
      const res = await fetch(`${lonely.url}/codec/decode`, { method: 'POST', body: '{}' });
      expect(res.status).toBe(502);
      expect(res.headers.get('content-type')).toBe('application/problem+json');
      expect(((await res.json()) as { detail: string }).detail).toContain('codec server');
      const page = await fetch(`${lonely.url}/`);
      expect(page.status).toBe(502);
      expect(((await page.json()) as { detail: string }).detail).toContain('Web UI');
    } finally {
      await lonely.stop();
    }
  });

  it('with the API certificate: serves HTTPS, and reaches an HTTPS codec server only if it presents that very certificate', async () => {
    const pki = createTestPki();
    const other = createTestPki();
    const cert = readFileSync(pki.serverCert, 'utf8');
    const key = readFileSync(pki.serverKey, 'utf8');
    const tlsUpstream = (pem: { cert: string; key: string }) =>
      https.createServer({ ...pem, minVersion: 'TLSv1.3' }, (req, res) => {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end(`tls-codec:${req.url}`);
      });
    const genuine = tlsUpstream({ cert, key });
    const impostor = tlsUpstream({ cert: readFileSync(other.serverCert, 'utf8'), key: readFileSync(other.serverKey, 'utf8') });
    const proxyTo = async (server: https.Server) =>
      startUiProxy({
        host: '127.0.0.1',
        port: 0,
        ui: { host: '127.0.0.1', port: await freePort() },
        codec: { host: '127.0.0.1', port: await listen(server), tlsCert: cert },
        sessionCookie: 'ledgerlock_codec_session',
        tls: { cert, key },
        log: createLogger('error'),
      });
    const get = (url: string) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        https
          .get(url, { ca: readFileSync(pki.ca, 'utf8') }, (res) => {
            let body = '';
            res.on('data', (chunk: Buffer) => (body += chunk.toString()));
            res.on('end', () => resolve({ status: res.statusCode!, body }));
          })
          .on('error', reject);
      });
    const good = await proxyTo(genuine);
    const bad = await proxyTo(impostor);
    try {
      expect(good.url).toMatch(/^https:/);
      expect(await get(`${good.url}/codec/decode`)).toEqual({ status: 200, body: 'tls-codec:/decode' });
      expect((await get(`${bad.url}/codec/decode`)).status).toBe(502);
    } finally {
      await Promise.all([good.stop(), bad.stop()]);
      await Promise.all([genuine, impostor].map((s) => new Promise((resolve) => s.close(resolve))));
      for (const dir of [pki.dir, other.dir]) rmSync(dir, { recursive: true, force: true });
    }
  });
});
