import { api, ApiError, getToken, setToken, unauthorized } from './api';
import { Store } from './store';

export type Role = 'viewer' | 'operator' | 'admin';

export interface Me {
  name: string;
  role: Role;
}

export interface Session {
  /** checking: a stored token is being validated; out: the login screen. */
  state: 'checking' | 'in' | 'out';
  me?: Me;
  /** Why the user is on the login screen (refused token, expired session). */
  notice?: string;
}

export const session = new Store<Session>({ state: getToken() ? 'checking' : 'out' });

export const canEdit = (me: Me | undefined) => me?.role === 'operator' || me?.role === 'admin';

/** Validates a token with `GET /api/me`; keeps it (localStorage) only when the server accepts it. */
export async function login(token: string): Promise<void> {
  const me = await api<Me>('/api/me', { token });
  setToken(token);
  session.set({ state: 'in', me });
}

export function logout(notice?: string): void {
  setToken(null);
  session.set({ state: 'out', ...(notice ? { notice } : {}) });
}

/** At start-up: check the stored token. A server that does not answer keeps the session (retried). */
export async function restore(): Promise<void> {
  const token = getToken();
  if (!token) return;
  for (let attempt = 0; ; attempt++) {
    try {
      const me = await api<Me>('/api/me', { token });
      session.set({ state: 'in', me });
      return;
    } catch (err) {
      if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
        logout('The stored token was refused by the server. Paste a valid API token.');
        return;
      }
      if (err instanceof ApiError && err.network) {
        // keep trying; the banner says the server is unreachable
        await new Promise((r) => setTimeout(r, Math.min(10_000, 1000 * 2 ** Math.min(attempt, 4))));
        continue;
      }
      // anything else (e.g. /api/me missing): keep the token, role unknown → read-only
      session.set({ state: 'in', me: { name: 'unknown', role: 'viewer' } });
      return;
    }
  }
}

unauthorized.subscribe(() => {
  if (session.get().state === 'in') logout('The server refused the token (revoked or expired). Log in again.');
});
