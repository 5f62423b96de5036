/**
 * Data residency: a customer's country picks the region whose master key wraps their data
 * key. The EEA, Switzerland and the United Kingdom stay in the EU region; every other
 * country is served by the US region.
 */
const EU_REGION_COUNTRIES = new Set([
  'AT', 'BE', 'BG', 'HR', 'CY', 'CZ', 'DK', 'EE', 'FI', 'FR', 'DE', 'GR', 'HU', 'IE', 'IT', 'LV', 'LT', 'LU', 'MT', 'NL',
  'PL', 'PT', 'RO', 'SK', 'SI', 'ES', 'SE',
  // EEA outside the EU, and countries with EU adequacy that we keep in the EU region.
  'IS', 'LI', 'NO', 'CH', 'GB',
]);

export type Region = 'eu' | 'us';

export function regionForCountry(country: string): Region {
  return EU_REGION_COUNTRIES.has(country.toUpperCase()) ? 'eu' : 'us';
}
