/** An agent's `hello` as the directory takes it, for unit tests of what records agents. */
export const helloFrame = (instanceId: string, application = 'orders', heldRevision = 0) => ({
  type: 'hello' as const,
  protocol: 1,
  application,
  instanceId,
  run: 'run-0123456789',
  host: '10.0.0.1',
  ports: [8080],
  agent: { language: 'node' as const, version: '1.0.0' },
  capabilities: ['limit'],
  heldRevision,
});
