import { describe, expect, it } from 'vitest';
import { pruneAfterSeconds, routeClassOf, takeMemoryToken, type MemoryBucket } from '../../src/http/rate-limit';

describe('routeClassOf', () => {
  it('classifies by method and path', () => {
    expect(routeClassOf('GET', '/v1/subscriptions/sub_1')).toBe('read');
    expect(routeClassOf('POST', '/v1/customers')).toBe('write');
    expect(routeClassOf('PATCH', '/v1/subscriptions/sub_1')).toBe('write');
    expect(routeClassOf('DELETE', '/v1/subscriptions/sub_1')).toBe('write');
    expect(routeClassOf('DELETE', '/v1/customers/cust_1')).toBe('erase');
    expect(routeClassOf('GET', '/v1/customers/cust_1/export')).toBe('export');
    expect(routeClassOf('GET', '/v1/customers/cust_1')).toBe('read');
    expect(routeClassOf('POST', '/v1/customers/cust_1/export')).toBe('write');
  });
});

describe('takeMemoryToken', () => {
  const limit = { perSecond: 2, burst: 3 };

  it('starts full, spends the burst, then refuses with the wait for one token', () => {
    let bucket: MemoryBucket | undefined;
    const allowed: boolean[] = [];
    for (let i = 0; i < 4; i++) {
      const taken = takeMemoryToken(bucket, limit, 1_000);
      bucket = taken.bucket;
      allowed.push(taken.verdict.allowed);
      if (i === 3) expect(taken.verdict.retryAfterSeconds).toBeCloseTo(0.5);
    }
    expect(allowed).toEqual([true, true, true, false]);
  });

  it('refills with elapsed time, never beyond the burst', () => {
    const empty: MemoryBucket = { tokens: 0, at: 0 };
    expect(takeMemoryToken(empty, limit, 400).verdict.allowed).toBe(false);
    const refilled = takeMemoryToken(empty, limit, 500);
    expect(refilled.verdict.allowed).toBe(true);
    expect(refilled.bucket.tokens).toBeCloseTo(0);
    expect(takeMemoryToken(empty, limit, 60_000).bucket.tokens).toBe(2);
  });

  it('ignores a clock that went backwards', () => {
    expect(takeMemoryToken({ tokens: 0.5, at: 1_000 }, limit, 0).verdict).toEqual({ allowed: false, retryAfterSeconds: 0.25 });
  });
});

describe('pruneAfterSeconds', () => {
  it('is an hour, or longer when a bucket takes longer to refill', () => {
    const small = { perSecond: 1, burst: 1 };
    const limits = { read: small, write: small, erase: small, export: small, source: small };
    expect(pruneAfterSeconds(limits)).toBe(3600);
    expect(pruneAfterSeconds({ ...limits, export: { perSecond: 1 / 60, burst: 100 } })).toBe(6000);
  });
});
