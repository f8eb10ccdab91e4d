/**
 * The demo estate: real Dubbo and Spring Cloud applications registered in the local stack, so the
 * catalog has something to show. Runs until SIGINT/SIGTERM, then stops them (their registrations
 * go with them). Started by scripts/demo.sh.
 */
import { buildJavaFixtures, startFixture, stopAllFixtures } from '../test/support/java-fixtures.js';

async function main(): Promise<void> {
  await buildJavaFixtures((line) => console.log(`[estate] ${line}`));
  const started = await Promise.all([
    startFixture('dubbo3-provider', { app: 'demo-orders', warmupMs: 0 }),
    startFixture('dubbo3-provider', { app: 'demo-orders', warmupMs: 0 }),
    startFixture('dubbo3-provider', { app: 'demo-catalog', registerMode: 'instance', group: 'catalog' }),
    startFixture('dubbo27-provider', { app: 'demo-legacy-billing', group: 'billing' }),
    startFixture('spring-eureka-app', { app: 'demo-stock' }),
  ]);
  started.push(await startFixture('dubbo3-consumer', { app: 'demo-web', intervalMs: 200 }));
  for (const app of started) console.log(`[estate] ${app.app} (${app.name}) pid ${app.pid}, port ${app.port}`);
  console.log('[estate] running; Ctrl-C stops it');
  const stop = () => {
    void stopAllFixtures().then(() => process.exit(0));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  setInterval(() => undefined, 60_000);
}

main().catch(async (error: unknown) => {
  console.error('[estate] failed:', error);
  await stopAllFixtures();
  process.exit(1);
});
