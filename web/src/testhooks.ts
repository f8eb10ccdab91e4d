import type { Core } from 'cytoscape';

/**
 * Read-only hooks for browser tests: `window.__steward.cy` is the Cytoscape instance while the
 * dependency graph is on screen (undefined otherwise), so a test can read node and edge data.
 */
declare global {
  interface Window {
    readonly __steward?: { readonly cy: Core | undefined };
  }
}

let cy: Core | undefined;

export function exposeCy(instance: Core | undefined): void {
  cy = instance;
}

export function installTestHooks(): void {
  if (Object.prototype.hasOwnProperty.call(window, '__steward')) return;
  Object.defineProperty(window, '__steward', {
    configurable: false,
    enumerable: false,
    value: Object.freeze({
      get cy() {
        return cy;
      },
    }),
  });
}
