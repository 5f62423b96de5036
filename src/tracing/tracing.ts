import type { ClientRequest, IncomingMessage } from 'node:http';
import os from 'node:os';
import { SpanKind, type Attributes, type Context, type Span } from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { registerInstrumentations } from '@opentelemetry/instrumentation';
import { HttpInstrumentation } from '@opentelemetry/instrumentation-http';
import { Resource } from '@opentelemetry/resources';
import { BatchSpanProcessor, NoopSpanProcessor, type ReadableSpan, type SpanProcessor } from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import type { Config } from '../config/config';

/**
 * Traces, OpenTelemetry over OTLP/HTTP (protobuf), when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
 * What they show: the HTTP server span of each API request (named by its Express route), the
 * Temporal client's start/signal/update spans, the workflow's run and each activity it
 * schedules (the SDK's v1 interceptors, src/worker/worker.ts), and every outgoing HTTP call
 * made inside them: Stripe's and KMS's, named as such.
 *
 * Unset, no tracer provider is registered: the OpenTelemetry API stays a no-op, nothing is
 * exported, and the workflows' spans are dropped by a no-op processor at the sink.
 */
export interface Tracing {
  readonly enabled: boolean;
  /** Where the workflow span sink hands the workflows' spans. */
  readonly workflowSpanProcessor: SpanProcessor;
  readonly resource: Resource;
  /** Exports what is pending, then stops. */
  shutdown(): Promise<void>;
}

const DISABLED: Tracing = {
  enabled: false,
  workflowSpanProcessor: new NoopSpanProcessor(),
  resource: Resource.empty(),
  shutdown: async () => undefined,
};

let current: Tracing = DISABLED;

/** This process's tracing: what {@link installTracing} set up, or the disabled default. */
export function tracing(): Tracing {
  return current;
}

/**
 * Installs tracing for this process, once, before its clients are created. Returns the
 * disabled default when no endpoint is configured.
 */
export function installTracing(config: Pick<Config, 'tracing'>, serviceName = 'ledgerlock'): Tracing {
  if (current.enabled || !config.tracing) return current;
  const { otlpEndpoint } = config.tracing;
  const resource = Resource.default().merge(
    new Resource({ 'service.name': serviceName, 'service.instance.id': `${process.pid}@${os.hostname()}` }),
  );
  const exporter = new OTLPTraceExporter({ url: `${otlpEndpoint.replace(/\/$/, '')}/v1/traces` });
  const processor = new OpaqueAttributesProcessor(new BatchSpanProcessor(exporter));
  const provider = new NodeTracerProvider({ resource, spanProcessors: [processor] });
  // AsyncLocalStorage context and W3C trace-context propagation: what the Temporal interceptors inject into headers.
  provider.register();
  const collector = new URL(otlpEndpoint);
  registerInstrumentations({
    tracerProvider: provider,
    instrumentations: [
      new HttpInstrumentation({
        // Liveness and readiness are polled; the exporter's own requests would trace themselves.
        ignoreIncomingRequestHook: (req) => req.url === '/healthz' || req.url === '/readyz',
        ignoreOutgoingRequestHook: (options) => sameOrigin(options, collector),
        // A call outside any trace (the relay's polling, a pool's keep-alive) is not a trace of its own.
        requireParentforOutgoingSpans: true,
        requestHook: nameOutgoingSpan,
      }),
    ],
  });
  // The instrumentation patches http and https when they are next required: now, before any call.
  require('node:http');
  require('node:https');
  current = {
    enabled: true,
    workflowSpanProcessor: processor,
    resource,
    async shutdown() {
      await provider.shutdown();
      current = DISABLED;
    },
  };
  return current;
}

function sameOrigin(options: { hostname?: string | null; host?: string | null; port?: string | number | null }, url: URL): boolean {
  const host = options.hostname ?? options.host?.split(':')[0];
  return host === url.hostname && String(options.port ?? '') === (url.port || (url.protocol === 'https:' ? '443' : '80'));
}

/**
 * Names a client span after what it calls: `KMS GenerateDataKey` (the AWS SDK's
 * `X-Amz-Target`), `Stripe POST /v1/customers/{id}` (Stripe's user agent; ids in the path
 * made a placeholder, so names stay few). The path attributes keep the ids: Stripe's, opaque.
 */
function nameOutgoingSpan(span: Span, request: ClientRequest | IncomingMessage): void {
  if (!('getHeader' in request)) return;
  const target = request.getHeader('x-amz-target');
  if (typeof target === 'string' && target.startsWith('TrentService.')) {
    const operation = target.slice('TrentService.'.length);
    span.updateName(`KMS ${operation}`);
    span.setAttributes({ 'rpc.system': 'aws-api', 'rpc.service': 'KMS', 'rpc.method': operation });
    return;
  }
  const agent = request.getHeader('user-agent');
  if (typeof agent === 'string' && agent.startsWith('Stripe/')) {
    const path = stripePathTemplate(request.path);
    span.updateName(`Stripe ${request.method} ${path}`);
    span.setAttributes({ 'rpc.system': 'stripe', 'rpc.method': `${request.method} ${path}` });
  }
}

/**
 * `/v1/payment_methods/pm_123/attach` → `/v1/payment_methods/{id}/attach`: Stripe's paths
 * alternate resource and id after `/v1`, and its ids are `prefix_…`.
 */
export function stripePathTemplate(path: string): string {
  return path
    .split('?')[0]!
    .split('/')
    .map((segment, index) => (index >= 3 && index % 2 === 1 && segment.includes('_') ? '{id}' : segment))
    .join('/');
}

/**
 * Attributes a span may carry: opaque ids, names of operations, statuses. Everything else
 * (client addresses, user agents, host headers, the workflow info the SDK's sink copies onto
 * workflow spans, with its memo and last result) is dropped before export.
 */
const ALLOWED_ATTRIBUTES = new Set([
  // HTTP (semantic conventions 1.x, what instrumentation-http 0.57 writes), URLs without query
  'http.method',
  'http.route',
  'http.status_code',
  'http.scheme',
  'http.flavor',
  'http.url',
  'http.target',
  'net.peer.name',
  'net.peer.port',
  'net.host.port',
  'net.transport',
  'rpc.system',
  'rpc.service',
  'rpc.method',
  // the Temporal interceptors' and workflow info's ids
  'temporalWorkflowId',
  'temporalActivityId',
  'temporalUpdateId',
  'run_id',
  'workflowId',
  'runId',
  'workflowType',
  'taskQueue',
  'namespace',
  'attempt',
]);

/** URL attributes whose query string is dropped, and which a server span drops altogether (the caller's text). */
const URL_ATTRIBUTES = new Set(['http.url', 'http.target']);

/**
 * In front of the exporter: keeps {@link ALLOWED_ATTRIBUTES} of primitive values only, cuts
 * query strings, and drops error messages and stack traces (span status messages, exception
 * events' text), which can quote what a failure was about. Exception types stay.
 */
export class OpaqueAttributesProcessor implements SpanProcessor {
  constructor(private readonly next: SpanProcessor) {}

  onStart(span: Parameters<SpanProcessor['onStart']>[0], parentContext: Context): void {
    this.next.onStart(span, parentContext);
  }

  onEnd(span: ReadableSpan): void {
    opaque(span.attributes as Attributes, span.kind === SpanKind.SERVER);
    for (const event of span.events) {
      if (event.attributes) {
        const type = event.attributes['exception.type'];
        for (const key of Object.keys(event.attributes)) delete (event.attributes as Attributes)[key];
        if (typeof type === 'string') (event.attributes as Attributes)['exception.type'] = type;
      }
    }
    if (span.status.message !== undefined) (span.status as { message?: string }).message = undefined;
    this.next.onEnd(span);
  }

  forceFlush(): Promise<void> {
    return this.next.forceFlush();
  }

  shutdown(): Promise<void> {
    return this.next.shutdown();
  }
}

function opaque(attributes: Attributes, server: boolean): void {
  for (const key of Object.keys(attributes)) {
    const value = attributes[key];
    const primitive = typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean';
    if (!ALLOWED_ATTRIBUTES.has(key) || !primitive || (server && URL_ATTRIBUTES.has(key))) {
      delete attributes[key];
    } else if (URL_ATTRIBUTES.has(key) && typeof value === 'string') {
      attributes[key] = value.split('?')[0]!;
    }
  }
}
