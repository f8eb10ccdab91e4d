import type { ConnectOptions, Connection } from 'mongoose';

/**
 * Mongoose gives up after a failed first connection (and an unobserved failure would crash the
 * process). The server must start and stay up while the database is away, answering /readyz 503,
 * so the first connection is retried until it succeeds; after that the driver reconnects itself.
 */
export function keepConnecting(connection: Connection, uri: string, options: ConnectOptions, retryMs = 2_000): Connection {
  let closed = false;
  connection.once('close', () => (closed = true));
  // Errors are visible in /readyz and the driver's own events; an unobserved one would crash us.
  connection.on('error', () => undefined);
  const attempt = (opening: Promise<unknown>) => {
    opening.catch(() => {
      if (closed) return;
      setTimeout(() => {
        if (!closed) attempt(connection.openUri(uri, options));
      }, retryMs).unref();
    });
  };
  attempt(connection.asPromise());
  return connection;
}
