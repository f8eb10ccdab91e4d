// Preload entry: node --require <agent>/register app.js, or node --import <agent>/register.js app.mjs
try {
  require('./dist/register.cjs');
} catch (error) {
  // Not built (npm run build:agent) or unreadable: the application must start anyway.
  process.stderr.write(
    `[steward-agent] ${JSON.stringify({ time: new Date().toISOString(), level: 'error', msg: `not started: ${String(error)}` })}\n`,
  );
}
