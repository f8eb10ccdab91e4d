import zookeeper from 'node-zookeeper-client';

/** The client's errors are `Exception` objects (with a code) or plain errors, typed as either. */
export function zkCode(error: unknown): number {
  const getCode = (error as { getCode?: unknown } | null)?.getCode;
  return typeof getCode === 'function' ? (error as zookeeper.Exception).getCode() : -1;
}

export function isNoNode(error: unknown): boolean {
  return zkCode(error) === zookeeper.Exception.NO_NODE;
}

export function zkError(error: unknown): Error {
  return new Error(`ZooKeeper: ${String((error as { message?: unknown } | null)?.message ?? error)}`);
}
