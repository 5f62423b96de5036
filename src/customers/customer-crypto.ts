import { keyIdOf, type CipherContext } from '../crypto/ciphertext';
import type { Envelope } from '../crypto/envelope';
import type { CustomerRow } from '../db/database';
import { regionForCountry } from '../domain/residency';
import { PERSONAL_FIELDS, type CustomerProfile, type PersonalField, type SealedCustomer } from './customer-types';

export function cell(customerId: string, column: PersonalField): CipherContext {
  return { table: 'customers', column, rowId: customerId };
}

function serialise(profile: CustomerProfile, field: PersonalField): string | undefined {
  switch (field) {
    case 'email':
      return profile.email;
    case 'name':
      return profile.name;
    case 'address':
      return profile.address && JSON.stringify(profile.address);
    case 'phone':
      return profile.phone;
    case 'tax_id':
      return profile.taxId;
  }
}

/** Encrypts every personal field under the customer's data key (created on first use) in their region. */
export async function sealProfile(envelope: Envelope, customerId: string, profile: CustomerProfile): Promise<SealedCustomer> {
  const region = regionForCountry(profile.country);
  const fields: Partial<Record<PersonalField, string>> = {};
  for (const field of PERSONAL_FIELDS) {
    const value = serialise(profile, field);
    if (value !== undefined) fields[field] = (await envelope.encrypt({ id: customerId, region }, value, cell(customerId, field))).toString('base64');
  }
  return {
    customerId,
    region,
    country: profile.country,
    dataKeyId: keyIdOf(Buffer.from(fields.email!, 'base64')),
    fields: fields as SealedCustomer['fields'],
  };
}

/** Decrypts a stored customer. The caller audits the read. */
export async function openProfile(envelope: Envelope, row: CustomerRow): Promise<CustomerProfile> {
  const open = async (field: PersonalField) => {
    const blob = row[field === 'tax_id' ? 'tax_id' : field];
    return blob ? envelope.decrypt(blob, cell(row.id, field)) : undefined;
  };
  const [email, name, address, phone, taxId] = await Promise.all(PERSONAL_FIELDS.map(open));
  return {
    email: email!,
    name: name!,
    country: row.country,
    ...(address ? { address: JSON.parse(address) as CustomerProfile['address'] } : {}),
    ...(phone ? { phone } : {}),
    ...(taxId ? { taxId } : {}),
  };
}
