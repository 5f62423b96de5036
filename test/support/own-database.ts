import { loadConfig, type Config } from '../../src/config/config';
import { createDb, dropDatabase, ensureDatabase, type Db } from '../../src/db/database';
import { migrate } from '../../src/db/migrate';
import { testEnv, testStack } from './stack';

/**
 * A migrated database of a suite's own (`<run's database>_<name>`), for a suite whose
 * assertions cover every row (a plan over all customers, a rotation of every key) or whose
 * writes must stay out of the other suites' way. `owner` is connected as the owner; `drop`
 * closes it and drops the database.
 */
export async function ownDatabase(name: string, overrides: Record<string, string> = {}, ownerConnections = 2): Promise<{ env: Record<string, string>; config: Config; owner: Db; drop(): Promise<void> }> {
  const url = new URL(testStack().databaseUrl);
  url.pathname = `${url.pathname}_${name}`;
  const env = testEnv({ DATABASE_URL: url.toString(), ...overrides });
  const config = loadConfig(env);
  await ensureDatabase(config.databaseUrl!);
  const owner = createDb(config.databaseUrl!, { max: ownerConnections });
  await migrate(owner);
  return {
    env,
    config,
    owner,
    async drop() {
      await owner.destroy();
      await dropDatabase(config.databaseUrl!);
    },
  };
}
