import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface RecordedRequest {
  readonly method: string;
  readonly path: string;
  readonly idempotencyKey: string | undefined;
  readonly body: URLSearchParams;
  /** The query string: where stripe-node puts the parameters of GET and DELETE requests. */
  readonly query: URLSearchParams;
  readonly status: number;
}

/**
 * A recording proxy in front of stripe-mock: forwards every request unchanged and keeps
 * what was sent, so tests can assert exactly what Stripe received and how often.
 * `failNext` answers the next matching requests itself, to inject Stripe failures;
 * `rewriteAnswers` changes stripe-mock's (stateless, fixture) answers, to make it hold what
 * real Stripe would (an invoice paid, a subscription canceled).
 */
export async function startRecordingProxy(target: string) {
  const requests: RecordedRequest[] = [];
  const holds: { match: (method: string, path: string) => boolean; ms: number; times: number }[] = [];
  const held: { method: string; path: string; idempotencyKey: string | undefined }[] = [];
  const abandoned: { method: string; path: string; idempotencyKey: string | undefined }[] = [];
  const failures: { match: (method: string, path: string) => boolean; status: number; body: unknown; times: number }[] = [];
  const rewrites: { match: (method: string, path: string) => boolean; rewrite: (answer: any) => unknown }[] = [];
  const upstream = new URL(target);
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const hold = holds.find((h) => h.times > 0 && h.match(req.method!, req.url!));
      if (hold) {
        hold.times -= 1;
        const request = { method: req.method!, path: req.url!.split('?')[0]!, idempotencyKey: req.headers['idempotency-key'] as string | undefined };
        held.push(request);
        let callerGone = false;
        res.on('close', () => (callerGone = !res.writableEnded));
        setTimeout(() => {
          // The caller died while we held its request: it never reached Stripe.
          if (callerGone) return void abandoned.push(request);
          forward();
        }, hold.ms);
        return;
      }
      forward();
    });
    const forward = () => {
      const raw = Buffer.concat(chunks);
      const record = (status: number) =>
        requests.push({
          method: req.method!,
          path: req.url!.split('?')[0]!,
          idempotencyKey: req.headers['idempotency-key'] as string | undefined,
          body: new URLSearchParams(raw.toString()),
          query: new URLSearchParams(req.url!.split('?')[1] ?? ''),
          status,
        });
      const failure = failures.find((f) => f.times > 0 && f.match(req.method!, req.url!));
      if (failure) {
        failure.times -= 1;
        record(failure.status);
        res.writeHead(failure.status, { 'content-type': 'application/json' });
        return void res.end(JSON.stringify(failure.body));
      }
      const upstreamRequest = http.request(
        { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: { ...req.headers, host: upstream.host } },
        (answer) => {
          record(answer.statusCode ?? 0);
          const rewrite = rewrites.find((r) => r.match(req.method!, req.url!.split('?')[0]!));
          if (!rewrite || answer.statusCode !== 200) {
            res.writeHead(answer.statusCode ?? 502, answer.headers);
            return void answer.pipe(res);
          }
          const parts: Buffer[] = [];
          answer.on('data', (c: Buffer) => parts.push(c));
          answer.on('end', () => {
            const body = Buffer.from(JSON.stringify(rewrite.rewrite(JSON.parse(Buffer.concat(parts).toString()))));
            const { 'content-length': _length, 'transfer-encoding': _chunked, 'content-encoding': _encoding, ...headers } = answer.headers;
            res.writeHead(200, { ...headers, 'content-length': body.length });
            res.end(body);
          });
        },
      );
      upstreamRequest.on('error', () => {
        record(502);
        res.writeHead(502).end();
      });
      upstreamRequest.end(raw);
    };
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    /** Requests held so far, and those whose caller went away while held (never forwarded). */
    held,
    abandoned,
    /** Holds the next matching request for `ms` before forwarding it, as a slow Stripe would. */
    holdNext(match: (method: string, path: string) => boolean, ms: number, times = 1) {
      holds.push({ match, ms, times });
    },
    failNext(match: (method: string, path: string) => boolean, status: number, body: unknown, times = 1) {
      failures.push({ match, status, body, times });
    },
    /** From now on, stripe-mock's 200 answers to matching requests (method, path without query) pass through `rewrite`. */
    rewriteAnswers(match: (method: string, path: string) => boolean, rewrite: (answer: any) => unknown) {
      rewrites.push({ match, rewrite });
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
