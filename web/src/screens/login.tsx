import { useState } from 'preact/hooks';
import { ApiError, describeError } from '../api';
import { navigate } from '../router';
import { login } from '../session';

export function LoginScreen({ notice }: { notice?: string | undefined }) {
  const [token, setToken] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | undefined>(undefined);

  const submit = async (e: Event) => {
    e.preventDefault();
    const value = token.trim();
    if (!value) {
      setError('Paste an API token first.');
      return;
    }
    setBusy(true);
    setError(undefined);
    try {
      await login(value);
      const next = new URLSearchParams(location.search).get('next');
      navigate(next && next.startsWith('/') && !next.startsWith('//') ? next : '/', { replace: true });
    } catch (err) {
      setError(
        err instanceof ApiError && err.status === 401
          ? 'The server does not know this token (or it was revoked).'
          : err instanceof ApiError && err.network
            ? 'The server is unreachable. Try again in a moment.'
            : describeError(err),
      );
    } finally {
      setBusy(false);
    }
  };

  return (
    <div class="login-page">
      <form class="login-card" onSubmit={(e) => void submit(e)}>
        <div class="brand brand-large">
          <span class="brand-mark">S</span>
          <span>Steward</span>
        </div>
        <p class="muted">Service governance for Dubbo and Spring Cloud. Sign in with an API token.</p>
        {notice && (
          <div class="note note-warn" data-testid="login-notice">
            {notice}
          </div>
        )}
        <label class="field">
          <span>API token</span>
          <input
            class="input mono"
            type="password"
            autoComplete="off"
            spellcheck={false}
            placeholder="stw_…"
            value={token}
            autoFocus
            data-testid="login-token"
            onInput={(e) => setToken(e.currentTarget.value)}
          />
        </label>
        {error && (
          <div class="note note-bad" role="alert" data-testid="login-error">
            {error}
          </div>
        )}
        <button class="btn btn-primary btn-block" type="submit" disabled={busy} data-testid="login-submit">
          {busy ? 'Checking…' : 'Sign in'}
        </button>
        <p class="muted small">
          The token is kept in this browser (localStorage) until you log out. Tokens are issued by an admin with{' '}
          <code>POST /api/tokens</code>; the first admin token is the server's <code>ADMIN_TOKEN</code>.
        </p>
      </form>
    </div>
  );
}
