import type { CustomerRow, Db } from '../db/database';
import type { SealedCustomer } from './customer-types';

/** Stores a sealed customer; storing the same customer again is a no-op (activity retries). */
export async function insertCustomer(db: Db, customer: SealedCustomer): Promise<void> {
  const blob = (value: string | undefined) => (value === undefined ? null : Buffer.from(value, 'base64'));
  await db
    .insertInto('customers')
    .values({
      id: customer.customerId,
      region: customer.region,
      country: customer.country,
      data_key_id: customer.dataKeyId,
      email: blob(customer.fields.email)!,
      name: blob(customer.fields.name)!,
      address: blob(customer.fields.address),
      phone: blob(customer.fields.phone),
      tax_id: blob(customer.fields.tax_id),
    })
    .onConflict((oc) => oc.column('id').doNothing())
    .execute();
}

export function findCustomer(db: Db, customerId: string): Promise<CustomerRow | undefined> {
  return db.selectFrom('customers').selectAll().where('id', '=', customerId).executeTakeFirst();
}

export async function setStripeCustomerId(db: Db, customerId: string, stripeCustomerId: string): Promise<void> {
  await db.updateTable('customers').set({ stripe_customer_id: stripeCustomerId }).where('id', '=', customerId).execute();
}

/** Marks a customer erased. Their ciphertext stays where it is, unreadable once their keys are destroyed. */
export async function markCustomerErased(db: Db, customerId: string): Promise<void> {
  await db.updateTable('customers').set({ status: 'erased', erased_at: new Date() }).where('id', '=', customerId).where('status', '=', 'active').execute();
}
