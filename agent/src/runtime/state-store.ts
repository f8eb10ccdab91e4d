import { readFileSync } from 'node:fs';
import { mkdir, rename, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { errorText, type Logger } from './log.js';

/**
 * Fail-static: the last rule set applied is kept on disk so that a restarted instance enforces it
 * from its first request, before (or without) any contact with the server. The file is written
 * atomically (temp file, then rename), so a crash mid-write leaves the previous file whole.
 */

export interface HeldRules {
  revision: number;
  /** Checked by the caller, rule by rule, before anything is applied. */
  rules: unknown[];
}

const StateFileSchema = z.object({
  application: z.string(),
  revision: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  rules: z.array(z.unknown()),
  savedAt: z.number(),
});

export class StateStore {
  readonly file: string;
  /** The newest state not yet on disk; older pending states are superseded, never queued. */
  private pending: { revision: number; rules: readonly unknown[] } | undefined;
  private writing: Promise<void> | undefined;
  private sequence = 0;

  constructor(
    private readonly dir: string,
    private readonly application: string,
    private readonly log: Logger,
  ) {
    this.file = join(dir, `${application}.rules.json`);
  }

  /** The held state, read synchronously at start; undefined when there is none or it is unreadable. */
  load(): HeldRules | undefined {
    let text: string;
    try {
      text = readFileSync(this.file, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
        this.log.warn('cannot read the saved rules; starting without them', { file: this.file, error: errorText(error) });
      }
      return undefined;
    }
    try {
      const parsed = StateFileSchema.safeParse(JSON.parse(text));
      if (!parsed.success) throw new Error(parsed.error.issues[0]?.message ?? 'not a state file');
      if (parsed.data.application !== this.application) {
        throw new Error(`it holds the rules of "${parsed.data.application}"`);
      }
      return { revision: parsed.data.revision, rules: parsed.data.rules };
    } catch (error) {
      this.log.warn('the saved rules are corrupt; ignored', { file: this.file, error: errorText(error) });
      return undefined;
    }
  }

  /** Saves in the background; a write in progress is followed by one more with the newest state. */
  save(revision: number, rules: readonly unknown[]): void {
    this.pending = { revision, rules };
    this.writing ??= this.drain();
  }

  /** Resolves when every state saved so far is on disk (or failed to be). */
  async flushed(): Promise<void> {
    while (this.writing) await this.writing;
  }

  private async drain(): Promise<void> {
    try {
      for (let state = this.pending; state !== undefined; state = this.pending) {
        this.pending = undefined;
        await this.write(state.revision, state.rules);
      }
    } finally {
      // In the same step as the last check of `pending`: a save() after it starts a new drain.
      this.writing = undefined;
    }
  }

  private async write(revision: number, rules: readonly unknown[]): Promise<void> {
    const temp = `${this.file}.${process.pid}.${++this.sequence}.tmp`;
    try {
      const text = JSON.stringify({ application: this.application, revision, rules, savedAt: Date.now() });
      await mkdir(this.dir, { recursive: true });
      await writeFile(temp, text, 'utf8');
      await rename(temp, this.file);
    } catch (error) {
      this.log.warn('cannot save the rules; a restart will wait for the server', { file: this.file, error: errorText(error) });
      await unlink(temp).catch(() => undefined);
    }
  }
}
