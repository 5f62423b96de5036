import { randomUUID } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import http2 from 'node:http2';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import { Connection } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log';
import { createServices } from '../../src/services';
import { connectClient, connectWorker } from '../../src/temporal/connection';
import { createTestPki, type TestPki } from '../support/certs';
import { startTestApi } from '../support/runtime';
import { testConfig, testStack } from '../support/stack';

describe('transport security', () => {
  let pki: TestPki;
  beforeAll(() => {
    pki = createTestPki();
  });
  afterAll(() => rmSync(pki.dir, { recursive: true, force: true }));

  it('serves the API over HTTPS with TLS 1.3 as the minimum', async () => {
    const api = await startTestApi(testConfig({ API_TLS_CERT: pki.serverCert, API_TLS_KEY: pki.serverKey }));
    try {
      expect(api.url).toMatch(/^https:/);
      const { port } = new URL(api.url);
      const status = await new Promise<number>((resolve, reject) =>
        https.get(`${api.url}/healthz`, { ca: readFileSync(pki.ca) }, (res) => resolve(res.statusCode ?? 0)).on('error', reject),
      );
      expect(status).toBe(200);

      const negotiated = await new Promise<string>((resolve, reject) => {
        const socket = tls.connect({ host: '127.0.0.1', port: Number(port), ca: readFileSync(pki.ca) }, () => {
          resolve(socket.getProtocol() ?? '');
          socket.end();
        });
        socket.on('error', reject);
      });
      expect(negotiated).toBe('TLSv1.3');

      const tls12 = new Promise((resolve, reject) => {
        const socket = tls.connect({ host: '127.0.0.1', port: Number(port), ca: readFileSync(pki.ca), maxVersion: 'TLSv1.2' }, () => resolve(socket.getProtocol()));
        socket.on('error', reject);
      });
      await expect(tls12).rejects.toThrow(/protocol version|alert/i);
    } finally {
      await api.stop();
    }
  });

  it('connects client and worker to Temporal with mTLS when configured, and a client without a certificate is refused', async () => {
    // A TLS front for the dev server that demands a client certificate from our CA.
    const [host, port] = testStack().temporalAddress.split(':') as [string, string];
    const front = tls.createServer(
      { cert: readFileSync(pki.serverCert), key: readFileSync(pki.serverKey), ca: readFileSync(pki.ca), requestCert: true, rejectUnauthorized: true, ALPNProtocols: ['h2'] },
      (socket) => {
        const upstream = net.connect(Number(port), host);
        socket.pipe(upstream).pipe(socket);
        upstream.on('error', () => socket.destroy());
        socket.on('error', () => upstream.destroy());
      },
    );
    await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', resolve));
    const frontAddress = `127.0.0.1:${(front.address() as net.AddressInfo).port}`;
    const config = testConfig({
      TEMPORAL_ADDRESS: frontAddress,
      TEMPORAL_TLS_CERT: pki.clientCert,
      TEMPORAL_TLS_KEY: pki.clientKey,
      TEMPORAL_TLS_CA: pki.ca,
    });
    const services = createServices(config, createLogger('error'));
    try {
      const client = await connectClient(config, services.dataConverter);
      const { namespaceInfo } = await client.workflowService.describeNamespace({ namespace: config.temporal.namespace });
      expect(namespaceInfo?.name).toBe(config.temporal.namespace);
      await client.connection.close();

      const worker = await connectWorker(config);
      await worker.close();

      const anonymous = Connection.connect({ address: frontAddress, tls: { serverRootCACertificate: readFileSync(pki.ca) }, connectTimeout: 3_000 }).then(
        (c) => c.workflowService.describeNamespace({ namespace: config.temporal.namespace }),
      );
      await expect(anonymous).rejects.toThrow();
    } finally {
      await services.close();
      await new Promise((resolve) => front.close(resolve));
    }
  });

  it('sends TEMPORAL_API_KEY as a bearer token from client and worker, over TLS and without a client certificate', async () => {
    // A TLS-terminating gRPC front for the dev server that records each call's authorization.
    const [host, port] = testStack().temporalAddress.split(':') as [string, string];
    const upstream = http2.connect(`http://${host}:${port}`);
    const seen: string[] = [];
    const front = http2.createSecureServer({ cert: readFileSync(pki.serverCert), key: readFileSync(pki.serverKey) });
    front.on('stream', (stream, headers) => {
      seen.push(String(headers.authorization ?? '(none)'));
      const forwarded: http2.OutgoingHttpHeaders = {};
      for (const [name, value] of Object.entries(headers)) if (!name.startsWith(':') || name === ':method' || name === ':path') forwarded[name] = value;
      const call = upstream.request(forwarded);
      let trailers: http2.OutgoingHttpHeaders = {};
      call.on('response', (response) => {
        const { ':status': status, ...rest } = response;
        // A trailers-only answer (an error) carries grpc-status in its headers: send it as trailers.
        if (rest['grpc-status'] !== undefined) trailers = { 'grpc-status': rest['grpc-status'], ...(rest['grpc-message'] ? { 'grpc-message': rest['grpc-message'] } : {}) };
        delete rest['grpc-status'];
        delete rest['grpc-message'];
        stream.respond({ ':status': status, ...rest }, { waitForTrailers: true });
      });
      call.on('trailers', (t) => (trailers = { ...t }));
      stream.on('wantTrailers', () => stream.sendTrailers(trailers));
      stream.pipe(call);
      call.pipe(stream);
      call.on('error', () => stream.destroy());
      stream.on('error', () => call.destroy());
    });
    await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', resolve));
    const apiKey = `tcld-test-${randomUUID()}`;
    const config = testConfig({
      TEMPORAL_ADDRESS: `127.0.0.1:${(front.address() as net.AddressInfo).port}`,
      TEMPORAL_API_KEY: apiKey,
      TEMPORAL_TLS_CA: pki.ca,
    });
    expect(config.temporal.tls?.clientCert).toBeUndefined();
    const services = createServices(config, createLogger('error'));
    try {
      const client = await connectClient(config, services.dataConverter);
      const { namespaceInfo } = await client.workflowService.describeNamespace({ namespace: config.temporal.namespace });
      expect(namespaceInfo?.name).toBe(config.temporal.namespace);
      await client.connection.close();
      const byClient = seen.length;
      expect(byClient).toBeGreaterThan(0);

      const worker = await connectWorker(config);
      await worker.close();
      expect(seen.length).toBeGreaterThan(byClient);
      expect(new Set(seen)).toEqual(new Set([`Bearer ${apiKey}`]));
    } finally {
      await services.close();
      upstream.close();
      await new Promise((resolve) => front.close(resolve));
    }
  });
});
