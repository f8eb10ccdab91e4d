import { defaultOptions, LocalStack, serverEnv } from '../../stack/local-stack.js';

/** The stack the integration tests run against: the developer's own, or the one CI started. */
export const stack = new LocalStack(defaultOptions((line) => console.log(`[stack] ${line}`)));
export const stackEnv = serverEnv(stack.options.ports);
