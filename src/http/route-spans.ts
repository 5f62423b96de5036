import { context, SpanKind, trace, type Span } from '@opentelemetry/api';
import type { RequestHandler } from 'express';
import { routeOf } from './request-log';

const tracer = trace.getTracer('ledgerlock-express');

/**
 * Express's part of a trace. The HTTP server span (instrumentation-http) knows only the
 * method; once Express has matched the request, that span is named after the route
 * (`POST /v1/subscriptions`) and gets `http.route`, and a child span of the same name covers
 * the middleware and handler, so what the route does (KMS, Temporal) sits beneath it.
 * instrumentation-express is not used: its releases on the OpenTelemetry 1.x line, which
 * the Temporal interceptors 1.24 depend on, support Express 4 only. Without a tracer
 * provider (tracing off) every call here is a no-op.
 */
export function routeSpans(): RequestHandler {
  return (req, res, next) => {
    const server = trace.getActiveSpan();
    if (!server) return next();
    const handler: Span = tracer.startSpan(`${req.method} handler`, { kind: SpanKind.INTERNAL });
    const end = res.end.bind(res) as (...args: unknown[]) => typeof res;
    // Wrapped over instrumentation-http's own res.end, so the names are set before it ends the server span.
    res.end = ((...args: unknown[]) => {
      const route = routeOf(req);
      if (route) {
        server.updateName(`${req.method} ${route}`);
        server.setAttribute('http.route', route);
        handler.updateName(`${req.method} ${route}`);
        handler.setAttribute('http.route', route);
      }
      handler.end();
      return end(...args);
    }) as typeof res.end;
    context.with(trace.setSpan(context.active(), handler), next);
  };
}
