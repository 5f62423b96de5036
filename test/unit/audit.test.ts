import { describe, expect, it } from 'vitest';
import { normaliseAuditInput } from '../../src/audit/audit-guard';
import { auditHash, canonicalJson, GENESIS_HASH, type AuditContent } from '../../src/audit/audit-hash';
import { AuditInputError, type AuditEntryInput } from '../../src/audit/audit-types';
import { ConfigError, loadConfig, ownerDatabaseUrl } from '../../src/config/config';

const NOW = new Date('2026-11-21T10:00:00.123Z');
const valid: AuditEntryInput = {
  idempotencyKey: 'wf-1:charge',
  actor: 'workflow:wf-1',
  action: 'customer.read',
  subjectType: 'customer',
  subjectId: 'cust_0123456789abcdefghij',
  details: { keyId: 'arn:aws:kms:eu-west-1:111122223333:key/1234', attempt: 2, dryRun: false, note: null },
};

function refusal(input: AuditEntryInput): AuditInputError {
  try {
    normaliseAuditInput(input, NOW);
  } catch (err) {
    expect(err).toBeInstanceOf(AuditInputError);
    return err as AuditInputError;
  }
  throw new Error('expected the entry to be refused');
}

describe('canonical JSON', () => {
  it('sorts keys at every depth, so member order never changes the hash', () => {
    expect(canonicalJson({ b: 1, a: { d: [2, { z: true, y: null }], c: 'x' } })).toBe('{"a":{"c":"x","d":[2,{"y":null,"z":true}]},"b":1}');
    expect(canonicalJson({ b: 1, a: 2 })).toBe(canonicalJson({ a: 2, b: 1 }));
  });

  it('hashes prev_hash and content, so a change to either changes the hash', () => {
    const content = normaliseAuditInput(valid, NOW);
    const hash = auditHash(GENESIS_HASH, content);
    expect(hash).toMatch(/^[0-9a-f]{64}$/);
    expect(auditHash(GENESIS_HASH, { ...content, details: { ...content.details } })).toBe(hash);
    expect(auditHash('1'.repeat(64), content)).not.toBe(hash);
    expect(auditHash(GENESIS_HASH, { ...content, details: { ...content.details, attempt: 3 } })).not.toBe(hash);
    // Extra properties (a database row's seq) are not covered.
    expect(auditHash(GENESIS_HASH, { ...content, seq: '9' } as AuditContent)).toBe(hash);
  });
});

describe('audit entry guard', () => {
  it('keeps opaque ids and normalises the time to UTC milliseconds', () => {
    expect(normaliseAuditInput(valid, NOW)).toEqual({
      idempotency_key: 'wf-1:charge',
      occurred_at: '2026-11-21T10:00:00.123Z',
      actor: 'workflow:wf-1',
      action: 'customer.read',
      subject_type: 'customer',
      subject_id: 'cust_0123456789abcdefghij',
      purpose: null,
      details: valid.details,
    });
    expect(normaliseAuditInput({ ...valid, occurredAt: '2026-11-21T12:00:00.123456+02:00' }, NOW).occurred_at).toBe('2026-11-21T10:00:00.123Z');
  });

  it('refuses anything that looks like an email address, without echoing it', () => {
    const email = 'jane.doe@example.com';
    for (const input of [
      { ...valid, details: { contact: `mailto:${email}` } },
      { ...valid, subjectId: email },
      { ...valid, actor: email },
      { ...valid, purpose: `support ticket from ${email}` },
    ]) {
      const err = refusal(input);
      expect(err.rule).toMatch(/email/);
      expect(err.message).not.toContain(email);
    }
    expect(refusal({ ...valid, details: { contact: email } }).field).toBe('details.contact');
  });

  it('refuses long values, non-scalar details and malformed names', () => {
    expect(refusal({ ...valid, details: { ref: 'x'.repeat(201) } }).rule).toMatch(/longer than 200/);
    expect(refusal({ ...valid, subjectId: 'x'.repeat(201) }).field).toBe('subjectId');
    normaliseAuditInput({ ...valid, details: { ref: 'x'.repeat(200) } }, NOW);
    expect(refusal({ ...valid, details: { nested: { a: 1 } } as never }).field).toBe('details.nested');
    expect(refusal({ ...valid, details: { n: Number.NaN } }).rule).toMatch(/finite/);
    expect(refusal({ ...valid, action: 'Customer Read' }).field).toBe('action');
    expect(refusal({ ...valid, subjectId: 'a\u0000b' }).rule).toMatch(/control/);
    expect(refusal({ ...valid, occurredAt: 'yesterday' }).field).toBe('occurredAt');
  });
});

describe('DATABASE_APP_URL', () => {
  it('defaults locally to DATABASE_URL as the ledgerlock_app login role, without the owner\'s password', () => {
    expect(loadConfig({}).databaseAppUrl).toBe('postgres://ledgerlock_app@127.0.0.1:5432/ledgerlock');
    expect(loadConfig({ DATABASE_URL: 'postgres://owner:secret@db.internal:6432/billing?sslmode=require' }).databaseAppUrl).toBe(
      'postgres://ledgerlock_app@db.internal:6432/billing?sslmode=require',
    );
    expect(loadConfig({ DATABASE_APP_URL: 'postgres://app:pw@db/ledgerlock' }).databaseAppUrl).toBe('postgres://app:pw@db/ledgerlock');
    expect(() => loadConfig({ DATABASE_APP_URL: 'mysql://app@db/ledgerlock' })).toThrow(ConfigError);
  });

  it('is required in production, where DATABASE_URL (the owner) is only for migrations', () => {
    const production = { LEDGERLOCK_MODE: 'production' } as const;
    const problems = (() => {
      try {
        loadConfig(production);
      } catch (err) {
        return (err as ConfigError).problems.map((p) => p.variable);
      }
      return [];
    })();
    expect(problems).toContain('DATABASE_APP_URL');
    expect(problems).toContain('AUDIT_CHECKPOINT_DIR');
    expect(problems).not.toContain('DATABASE_URL');
    expect(() => ownerDatabaseUrl({})).toThrow(/DATABASE_URL: required to migrate/);
  });
});

describe('audit checkpoint settings', () => {
  it('default to a folder in the data folder, five minutes and 1000 entries, and refuse nonsense', () => {
    const config = loadConfig({ LEDGERLOCK_DATA_DIR: '/var/ll' });
    expect(config.auditCheckpoints).toEqual({ dir: '/var/ll/audit-checkpoints', intervalMs: 300_000, everyEntries: 1000 });
    expect(loadConfig({ AUDIT_CHECKPOINT_DIR: 'cp', AUDIT_CHECKPOINT_INTERVAL_SECONDS: '10', AUDIT_CHECKPOINT_EVERY_ENTRIES: '5' }, '/srv').auditCheckpoints).toEqual({
      dir: '/srv/cp',
      intervalMs: 10_000,
      everyEntries: 5,
    });
    for (const [variable, value] of [
      ['AUDIT_CHECKPOINT_INTERVAL_SECONDS', '0'],
      ['AUDIT_CHECKPOINT_INTERVAL_SECONDS', 'hourly'],
      ['AUDIT_CHECKPOINT_EVERY_ENTRIES', '0'],
      ['AUDIT_CHECKPOINT_EVERY_ENTRIES', '2.5'],
    ] as const) {
      expect(() => loadConfig({ [variable]: value }), `${variable}=${value}`).toThrow(variable);
    }
  });
});
