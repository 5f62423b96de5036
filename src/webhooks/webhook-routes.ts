import express, { Router, type ErrorRequestHandler, type Request, type RequestHandler, type Response } from 'express';
import type { Db } from '../db/database';
import { sendProblem } from '../http/problem';
import { errorMessage, type Logger } from '../log';
import { SIGNATURE_HEADER, verifyStripeSignature, type SignatureRejection } from './signature';
import { MalformedStripeEvent, routeStripeEvent, stripeEventSchema } from './stripe-event-routing';
import { recordStripeEvent } from './webhook-dal';
import { webhooks, type WebhookRefusal } from '../metrics/metrics';

export const STRIPE_WEBHOOK_PATH = '/v1/webhooks/stripe';

/** Stripe's events are far smaller; anything bigger is refused before it is read. */
export const MAX_WEBHOOK_BODY_BYTES = 1024 * 1024;

export interface StripeWebhookDeps {
  readonly db: Db;
  /** Accepted endpoint secrets (`whsec_…`): the current one and, while rotating, the next. */
  readonly secrets: readonly string[];
  readonly log: Logger;
  /** Called once an event was recorded for delivery, so the relay can deliver it at once. */
  readonly onRecorded?: () => void;
  /** Runs before the body is read: the per-source rate limit. */
  readonly limit?: RequestHandler;
  /** The clock, in unix seconds (tests move it). */
  readonly now?: () => number;
}

/**
 * `POST /v1/webhooks/stripe`: authenticated by Stripe's signature rather than a token,
 * so it is mounted before the JSON parser and reads the raw body, which the signature
 * covers byte for byte. An event is acknowledged (200) only once it is recorded in
 * PostgreSQL; the relay delivers it to its workflow from there. A redelivery answers 200
 * and changes nothing. Every refusal is a 4xx with nothing recorded and a log line naming
 * the reason, never the payload.
 */
export function createStripeWebhookRouter(deps: StripeWebhookDeps): Router {
  if (deps.secrets.length === 0) throw new Error('the Stripe webhook route needs at least one endpoint secret');
  const log = deps.log.child({ route: STRIPE_WEBHOOK_PATH });
  const router = Router();
  const reject = (res: Response, status: number, kind: WebhookRefusal, reason: string, problem: { title: string; detail: string; errors?: { field: string; message: string }[] }) => {
    webhooks.inc({ outcome: 'refused', reason: kind });
    log.warn({ reason, status }, 'stripe webhook rejected');
    sendProblem(res, { status, ...problem });
  };

  router.post(
    STRIPE_WEBHOOK_PATH,
    ...(deps.limit ? [deps.limit] : []),
    express.raw({ type: () => true, limit: MAX_WEBHOOK_BODY_BYTES }),
    async (req: Request, res: Response) => {
      const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
      const verdict = verifyStripeSignature(body, req.get(SIGNATURE_HEADER), deps.secrets, deps.now?.());
      if (!verdict.ok) return reject(res, 400, 'signature', verdict.reason, signatureProblem(verdict.reason));

      let json: unknown;
      try {
        json = JSON.parse(body.toString('utf8'));
      } catch {
        return reject(res, 400, 'malformed_json', 'malformed JSON', { title: 'Bad Request', detail: 'The request body is not valid JSON.' });
      }
      const parsed = stripeEventSchema.safeParse(json);
      if (!parsed.success) {
        const issue = parsed.error.issues[0]!;
        const field = ['body', ...issue.path.map(String)].join('.');
        return reject(res, 400, 'not_an_event', `not a Stripe event (${field})`, {
          title: 'Bad Request',
          detail: 'The request body is not a Stripe event.',
          errors: parsed.error.issues.map((i) => ({ field: ['body', ...i.path.map(String)].join('.'), message: i.message })),
        });
      }
      const event = parsed.data;
      let route;
      try {
        route = routeStripeEvent(event);
      } catch (err) {
        if (!(err instanceof MalformedStripeEvent)) throw err;
        return reject(res, 400, 'malformed_event', `malformed ${event.type} (body.${err.field})`, {
          title: 'Bad Request',
          detail: `The ${event.type} event's object is not shaped as Stripe sends it.`,
          errors: [{ field: `body.${err.field}`, message: err.message.slice(err.field.length + 2) }],
        });
      }

      const outcome = await recordStripeEvent(deps.db, event, route);
      webhooks.inc({ outcome: outcome === 'duplicate' ? 'duplicate' : 'accepted', reason: 'none' });
      log.info({
        eventId: event.id,
        type: event.type,
        ...(route.subscriptionId ? { subscriptionId: route.subscriptionId } : {}),
        ...(route.kind === 'signal' ? { workflowId: route.workflowId } : {}),
        outcome: outcome === 'duplicate' ? 'duplicate' : route.kind === 'signal' ? 'pending' : 'ignored',
        ...(route.kind === 'ignored' && outcome === 'recorded' ? { ignoreReason: route.reason } : {}),
      }, 'stripe event received');
      if (outcome === 'recorded' && route.kind === 'signal') deps.onRecorded?.();
      res.status(200).json({ received: true, ...(outcome === 'duplicate' ? { duplicate: true } : {}) });
    },
  );

  // The raw parser's refusals (oversized body, unreadable stream) on this route: logged like the others.
  const bodyErrors: ErrorRequestHandler = (err, req, res, next) => {
    const status = (err as { status?: unknown }).status;
    if (req.path !== STRIPE_WEBHOOK_PATH || typeof status !== 'number' || status >= 500) return next(err);
    const tooLarge = status === 413;
    reject(res, status, tooLarge ? 'body_too_large' : 'unreadable_body', tooLarge ? 'body too large' : `unreadable body (${errorMessage(err).slice(0, 100)})`, {
      title: tooLarge ? 'Payload Too Large' : 'Bad Request',
      detail: tooLarge ? `Webhook bodies are limited to ${MAX_WEBHOOK_BODY_BYTES} bytes.` : 'The request body could not be read.',
    });
  };
  router.use(bodyErrors);
  return router;
}

function signatureProblem(reason: SignatureRejection): { title: string; detail: string } {
  return { title: 'Invalid Stripe signature', detail: `The Stripe-Signature header was refused: ${reason}.` };
}
