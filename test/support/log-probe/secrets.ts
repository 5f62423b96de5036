/** What the log probe process is given to leak, each a fresh random value per run. */
export interface ProbeSecrets {
  readonly token: string;
  readonly cookie: string;
  readonly stripeKey: string;
  readonly webhookSecret: string;
  readonly email: string;
  readonly name: string;
  readonly phone: string;
  readonly cardNumber: string;
  readonly dataKey: string;
}
