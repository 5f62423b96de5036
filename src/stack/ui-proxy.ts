import http from 'node:http';
import https from 'node:https';
import { isIP, type AddressInfo } from 'node:net';
import { pipeline } from 'node:stream';
import { errorMessage, type Logger } from '../log';

/** Where the codec server appears on the proxy's origin; the Web UI's codec endpoint. */
export const CODEC_PATH_PREFIX = '/codec';

export interface UiProxyUpstream {
  readonly host: string;
  readonly port: number;
  /**
   * Set when the upstream serves HTTPS: the certificate (PEM) it presents, trusted as it is
   * (a partial chain), so only that certificate, for that host, is accepted.
   */
  readonly tlsCert?: string;
}

export interface UiProxyOptions {
  readonly host: string;
  readonly port: number;
  /** The Temporal Web UI (the dev server's, on its own loopback port). */
  readonly ui: UiProxyUpstream;
  /** The codec server, reached under `CODEC_PATH_PREFIX`. */
  readonly codec: UiProxyUpstream;
  /** The codec server's session cookie: stripped from what the Web UI receives, which has no use for it. */
  readonly sessionCookie: string;
  /** Serve HTTPS with this certificate and key (PEM), as the API and codec server do. */
  readonly tls?: { readonly cert: string; readonly key: string };
  readonly log: Logger;
}

export interface RunningUiProxy {
  readonly url: string;
  stop(): Promise<void>;
}

/** RFC 9110 §7.6.1: meaningful for one connection only, never forwarded. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

/**
 * The Temporal Web UI and the codec server on one origin, so the codec server's session
 * cookie (HttpOnly, SameSite=Strict) travels with the UI's /decode calls as a same-origin
 * request: no cross-origin credentials setting in the UI, nothing for the operator to tick.
 *
 * It forwards only to its two upstreams, fixed at start: `/codec/…` to the codec server (the
 * prefix removed), everything else to the Web UI. A request target that is not a path
 * (absolute-form, `*`), CONNECT and protocol upgrades are refused, so it is never an open
 * proxy. Bodies stream both ways; status codes and headers (each Set-Cookie) pass unchanged
 * but for hop-by-hop headers, and the codec session cookie never reaches the Web UI. An
 * upstream that does not answer is a 502 problem. Authentication, CORS and auditing stay the
 * codec server's: this adds no check and removes none.
 */
export function createUiProxy(options: UiProxyOptions): http.Server {
  const agents = { ui: agentFor(options.ui), codec: agentFor(options.codec) };
  const handler: http.RequestListener = (req, res) => {
    const target = req.url ?? '';
    if (!target.startsWith('/') || target.startsWith('//')) {
      return problem(res, 400, 'Bad Request', 'The request target must be a path on this server.');
    }
    const toCodec = target === CODEC_PATH_PREFIX || target.startsWith(`${CODEC_PATH_PREFIX}/`) || target.startsWith(`${CODEC_PATH_PREFIX}?`);
    const name = toCodec ? 'codec' : 'ui';
    const upstream = toCodec ? options.codec : options.ui;
    const path = toCodec ? stripPrefix(target) : target;
    const headers = forwardedHeaders(req.rawHeaders, toCodec ? undefined : options.sessionCookie);

    const request = (upstream.tlsCert ? https : http).request({
      host: upstream.host,
      port: upstream.port,
      method: req.method,
      path,
      headers: Object.fromEntries([...grouped(headers)].map(([header, values]) => [header, header === 'cookie' ? values.join('; ') : values.join(', ')])),
      agent: agents[name],
      ...(upstream.tlsCert ? { servername: isIP(upstream.host) ? undefined : upstream.host } : {}),
    });
    request.on('response', (response) => {
      for (const [header, values] of grouped(withoutHopByHop(response.rawHeaders))) res.setHeader(header, values);
      res.writeHead(response.statusCode ?? 502, response.statusMessage);
      pipeline(response, res, () => undefined);
    });
    let failed = false;
    request.on('error', (err) => {
      // Once: what the client still sends into a failed request fails again.
      if (failed) return;
      failed = true;
      req.unpipe(request);
      // Mid-response, only a cut connection tells the client its body is incomplete.
      if (res.headersSent) return void res.destroy();
      options.log.warn({ upstream: name, reason: errorMessage(err) }, 'ui proxy upstream unreachable');
      problem(res, 502, 'Bad Gateway', name === 'codec' ? 'The codec server is not answering; it may be restarting.' : 'The Temporal Web UI is not answering.');
    });
    // The client gone before its answer is complete: stop the upstream's work too.
    res.on('close', () => {
      if (res.writableFinished || failed) return;
      failed = true;
      request.destroy();
    });
    req.pipe(request);
  };
  const server = options.tls ? https.createServer({ cert: options.tls.cert, key: options.tls.key, minVersion: 'TLSv1.3' }, handler) : http.createServer(handler);
  // No listener for these would leave the socket hanging: refuse them outright.
  server.on('connect', (_req, socket) => socket.end('HTTP/1.1 405 Method Not Allowed\r\nConnection: close\r\nContent-Length: 0\r\n\r\n'));
  server.on('upgrade', (_req, socket) => socket.end('HTTP/1.1 501 Not Implemented\r\nConnection: close\r\nContent-Length: 0\r\n\r\n'));
  server.on('close', () => {
    agents.ui.destroy();
    agents.codec.destroy();
  });
  return server;
}

/** Starts the proxy on `options.host:port` (0 picks a free port) and resolves once it listens. */
export async function startUiProxy(options: UiProxyOptions): Promise<RunningUiProxy> {
  const server = createUiProxy(options);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  // A wildcard bind is still opened from this machine at its loopback address.
  const reachable = options.host === '0.0.0.0' || options.host === '::' ? '127.0.0.1' : options.host;
  const host = reachable.includes(':') ? `[${reachable}]` : reachable;
  return {
    url: `${options.tls ? 'https' : 'http'}://${host}:${port}`,
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function agentFor(upstream: UiProxyUpstream): http.Agent {
  return upstream.tlsCert ? new https.Agent({ keepAlive: true, ca: upstream.tlsCert, allowPartialTrustChain: true, minVersion: 'TLSv1.3' }) : new http.Agent({ keepAlive: true });
}

function stripPrefix(target: string): string {
  const rest = target.slice(CODEC_PATH_PREFIX.length);
  return rest.startsWith('/') ? rest : `/${rest}`;
}

/** The request's headers minus hop-by-hop ones; `dropCookie` removed from Cookie. */
function forwardedHeaders(raw: readonly string[], dropCookie: string | undefined): [string, string][] {
  const headers = withoutHopByHop(raw);
  if (!dropCookie) return headers;
  return headers.flatMap(([name, value]): [string, string][] => {
    if (name.toLowerCase() !== 'cookie') return [[name, value]];
    const kept = value
      .split(';')
      .map((part) => part.trim())
      .filter((part) => part !== '' && part.split('=')[0] !== dropCookie);
    return kept.length > 0 ? [[name, kept.join('; ')]] : [];
  });
}

function withoutHopByHop(raw: readonly string[]): [string, string][] {
  const pairs: [string, string][] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) pairs.push([raw[i]!, raw[i + 1]!]);
  const named = new Set(
    pairs
      .filter(([name]) => name.toLowerCase() === 'connection')
      .flatMap(([, value]) => value.split(','))
      .map((token) => token.trim().toLowerCase()),
  );
  return pairs.filter(([name]) => !HOP_BY_HOP.has(name.toLowerCase()) && !named.has(name.toLowerCase()));
}

/** Headers by lower-case name, each with every value it had, in order. */
function grouped(pairs: readonly [string, string][]): Map<string, string[]> {
  const byName = new Map<string, string[]>();
  for (const [name, value] of pairs) {
    const key = name.toLowerCase();
    byName.set(key, [...(byName.get(key) ?? []), value]);
  }
  return byName;
}

function problem(res: http.ServerResponse, status: number, title: string, detail: string): void {
  res.writeHead(status, { 'content-type': 'application/problem+json' });
  res.end(JSON.stringify({ type: 'about:blank', title, status, detail }));
}
