import { createHash, createHmac, randomBytes } from 'node:crypto';
import type { Request, RequestHandler, Response } from 'express';
import type { BucketLimit, RateLimits } from '../config/config';
import type { Db } from '../db/database';
import { errorMessage, type Logger } from '../log';
import { rateLimitRefusals } from '../metrics/metrics';
import type { Authorize } from './auth';
import { sendProblem } from './problem';
import { pruneIdleBuckets, takeBucketToken, type BucketVerdict } from './rate-limit-dal';

/** What an authenticated request is limited as; `source` is the per-address limit of unauthenticated routes. */
export const LIMIT_CLASSES = ['read', 'write', 'erase', 'export', 'source'] as const;
export type LimitClass = (typeof LIMIT_CLASSES)[number];
export type RouteClass = Exclude<LimitClass, 'source'>;

const ERASURE = /^\/v1\/customers\/[^/]+\/?$/;
const EXPORT = /^\/v1\/customers\/[^/]+\/export\/?$/;

/** Classified by method and path, so a route added later (exports) is limited as its class the day it exists. */
export function routeClassOf(method: string, path: string): RouteClass {
  const verb = method.toUpperCase();
  if (verb === 'DELETE' && ERASURE.test(path)) return 'erase';
  if ((verb === 'GET' || verb === 'HEAD') && EXPORT.test(path)) return 'export';
  if (verb === 'GET' || verb === 'HEAD' || verb === 'OPTIONS') return 'read';
  return 'write';
}

/** One bucket held in memory: its tokens when last refilled, at `at` (ms). */
export interface MemoryBucket {
  readonly tokens: number;
  readonly at: number;
}

/**
 * The arithmetic the PostgreSQL statement (rate-limit-dal.ts) does, for buckets that live
 * in one process: refill for the time elapsed, up to `burst`, then take one token if there
 * is a whole one. A bucket never seen starts full.
 */
export function takeMemoryToken(bucket: MemoryBucket | undefined, limit: BucketLimit, nowMs: number): { bucket: MemoryBucket; verdict: BucketVerdict } {
  const elapsedSeconds = bucket ? Math.max(0, nowMs - bucket.at) / 1000 : 0;
  const tokens = bucket ? Math.min(limit.burst, bucket.tokens + elapsedSeconds * limit.perSecond) : limit.burst;
  if (tokens >= 1) return { bucket: { tokens: tokens - 1, at: nowMs }, verdict: { allowed: true, retryAfterSeconds: 0 } };
  return { bucket: { tokens, at: nowMs }, verdict: { allowed: false, retryAfterSeconds: (1 - tokens) / limit.perSecond } };
}

const CLASS_WORDS: Record<LimitClass, string> = {
  read: 'read requests',
  write: 'write requests',
  erase: 'erasure requests',
  export: 'export requests',
  source: 'requests from this address',
};

/** 429 naming the class, never who was limited; Retry-After in whole seconds, at least 1. */
export function sendRateLimited(res: Response, limitClass: LimitClass, retryAfterSeconds: number): void {
  rateLimitRefusals.inc({ class: limitClass });
  const seconds = Math.max(1, Math.ceil(retryAfterSeconds));
  res.set('Retry-After', String(seconds));
  sendProblem(res, {
    type: 'urn:ledgerlock:rate-limited',
    title: 'Too Many Requests',
    status: 429,
    detail: `Too many ${CLASS_WORDS[limitClass]}; retry after ${seconds} second${seconds === 1 ? '' : 's'}.`,
    limitClass,
  });
}

/** Buckets idle this long are deleted (at least an hour, and never before one could be refilling still). */
export function pruneAfterSeconds(limits: RateLimits): number {
  return Math.max(3600, ...LIMIT_CLASSES.map((c) => Math.ceil(limits[c].burst / limits[c].perSecond)));
}

const PRUNE_EVERY_MS = 60_000;
/** Addresses an in-memory limiter tracks before it forgets the full buckets. */
const MAX_MEMORY_BUCKETS = 10_000;

export interface RateLimiterDeps {
  readonly db: Db;
  readonly limits: RateLimits;
  /**
   * Keys the HMAC of source addresses in the shared buckets; every API process must hold the
   * same one (the runtime derives it from the webhook secrets). A plain hash of an IPv4
   * address is reversed by trying all four billion.
   */
  readonly sourceKey: string;
  readonly log: Logger;
}

export interface RateLimiter {
  /** Per token identity and route class, in PostgreSQL; after `authenticate`. */
  readonly caller: RequestHandler;
  /** Per source address, in PostgreSQL (the webhook route, which needs it anyway). */
  readonly sharedSource: RequestHandler;
  /** Per source address, in this process's memory (/healthz and /readyz, which must answer with PostgreSQL down). */
  readonly processSource: RequestHandler;
}

/**
 * Token buckets for the API. Shared ones live in PostgreSQL, so however many API processes
 * run, an identity gets one allowance. A bucket's key holds no personal data: a hash of the
 * pseudonymous audit actor, or an HMAC of the source address.
 */
export function createRateLimiter(deps: RateLimiterDeps): RateLimiter {
  const idleSeconds = pruneAfterSeconds(deps.limits);
  let lastPrune = 0;
  const pruneNow = () => {
    const now = Date.now();
    if (now - lastPrune < PRUNE_EVERY_MS) return;
    lastPrune = now;
    pruneIdleBuckets(deps.db, idleSeconds).catch((err: unknown) => deps.log.warn({ reason: errorMessage(err) }, 'rate limit buckets not pruned'));
  };
  const shared = (classOf: (req: Request) => LimitClass, key: (req: Request, res: Response) => string): RequestHandler => {
    return (req, res, next) => {
      const limitClass = classOf(req);
      takeBucketToken(deps.db, `${limitClass}:${key(req, res)}`, deps.limits[limitClass]).then((verdict) => {
        pruneNow();
        if (verdict.allowed) return next();
        return sendRateLimited(res, limitClass, verdict.retryAfterSeconds);
      }, next);
    };
  };
  const identityKey = (_req: Request, res: Response) => {
    // The audit actor is the subject or its pseudonym; hashed again, so the key names nobody.
    const identity = (res.locals.actor as string | undefined) ?? res.locals.principal.subject;
    return createHash('sha256').update(identity).digest('hex').slice(0, 32);
  };
  const addressKey = (req: Request) => createHmac('sha256', deps.sourceKey).update(sourceAddress(req)).digest('hex').slice(0, 32);
  return {
    caller: shared((req) => routeClassOf(req.method, req.path), identityKey),
    sharedSource: shared(() => 'source', addressKey),
    processSource: memorySourceLimiter(deps.limits.source),
  };
}

/** `authorize` whose routes, once the caller is authenticated and holds the scope, also pass `limit`. */
export function rateLimited(authorize: Authorize, limit: RequestHandler): Authorize {
  return (scope) => [...authorize(scope), limit];
}

function memorySourceLimiter(limit: BucketLimit): RequestHandler {
  // Per process and never stored: a random key is enough to keep raw addresses out of memory dumps' plain sight.
  const key = randomBytes(32);
  const buckets = new Map<string, MemoryBucket>();
  return (req, res, next) => {
    const now = Date.now();
    const id = createHmac('sha256', key).update(sourceAddress(req)).digest('base64url');
    const { bucket, verdict } = takeMemoryToken(buckets.get(id), limit, now);
    buckets.set(id, bucket);
    if (buckets.size > MAX_MEMORY_BUCKETS) forgetFull(buckets, limit, now);
    if (verdict.allowed) return next();
    return sendRateLimited(res, 'source', verdict.retryAfterSeconds);
  };
}

/** Drops buckets that are full again (forgetting one changes nothing); if a flood of addresses left none full, all. */
function forgetFull(buckets: Map<string, MemoryBucket>, limit: BucketLimit, now: number): void {
  for (const [id, bucket] of buckets) {
    if (bucket.tokens + ((now - bucket.at) / 1000) * limit.perSecond >= limit.burst) buckets.delete(id);
  }
  if (buckets.size > MAX_MEMORY_BUCKETS) buckets.clear();
}

/** The peer's address: the API does not trust X-Forwarded-For (`trust proxy` is off). */
function sourceAddress(req: Request): string {
  return req.socket.remoteAddress ?? 'unknown';
}
