import type { ComponentChildren } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { ErrorNote } from './ui';

/**
 * A modal confirmation: says what will happen, takes an optional reason (recorded in the audit
 * log), runs `onConfirm`, and shows the server's refusal (403 included) without closing.
 */
export function ConfirmDialog(props: {
  title: string;
  children?: ComponentChildren;
  confirmLabel?: string;
  danger?: boolean;
  reason?: boolean;
  onConfirm: (reason: string) => Promise<void> | void;
  onClose: () => void;
}) {
  const [reason, setReason] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(undefined);
  const ref = useRef<HTMLDivElement>(null);

  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (e.key === 'Escape' && !busy) props.onClose();
    };
    window.addEventListener('keydown', onKey);
    ref.current?.querySelector<HTMLElement>('textarea, input, button.btn-primary, button.btn-danger')?.focus();
    return () => window.removeEventListener('keydown', onKey);
  }, [busy]);

  const confirm = async () => {
    setBusy(true);
    setError(undefined);
    try {
      await props.onConfirm(reason.trim());
      props.onClose();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <div
      class="overlay"
      onClick={(e) => {
        if (e.target === e.currentTarget && !busy) props.onClose();
      }}
    >
      <div class="dialog" role="dialog" aria-modal="true" aria-label={props.title} ref={ref} data-testid="confirm-dialog">
        <h3>{props.title}</h3>
        <div class="dialog-body">{props.children}</div>
        {props.reason !== false && (
          <label class="field">
            <span>Reason (recorded in the audit log)</span>
            <textarea
              class="input"
              rows={2}
              maxLength={1000}
              value={reason}
              data-testid="confirm-reason"
              onInput={(e) => setReason(e.currentTarget.value)}
            />
          </label>
        )}
        <ErrorNote error={error} />
        <div class="dialog-actions">
          <button type="button" class="btn" disabled={busy} onClick={props.onClose} data-testid="confirm-cancel">
            Cancel
          </button>
          <button
            type="button"
            class={`btn ${props.danger ? 'btn-danger' : 'btn-primary'}`}
            disabled={busy}
            onClick={() => void confirm()}
            data-testid="confirm-ok"
          >
            {busy ? 'Working…' : (props.confirmLabel ?? 'Confirm')}
          </button>
        </div>
      </div>
    </div>
  );
}
