// Bundles the agent into one CommonJS file with everything it needs (socket.io-client, zod, the
// shared protocol schemas), so an application preloads it without installing anything.
import { build } from 'esbuild';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('.', import.meta.url));

const result = await build({
  absWorkingDir: root,
  entryPoints: { register: 'src/runtime/register.ts' },
  outdir: 'dist',
  outExtension: { '.js': '.cjs' },
  bundle: true,
  platform: 'node',
  target: 'node18',
  format: 'cjs',
  // ws loads these native speed-ups when present; the bundle does without them.
  external: ['bufferutil', 'utf-8-validate'],
  plugins: [
    {
      // socket.io-client logs through `debug` when the application sets DEBUG: the agent's
      // transport chatter does not belong in the application's output.
      name: 'silence-debug',
      setup(b) {
        b.onResolve({ filter: /^debug$/ }, () => ({ path: 'debug', namespace: 'silence-debug' }));
        b.onLoad({ filter: /.*/, namespace: 'silence-debug' }, () => ({
          contents: 'module.exports = () => Object.assign(() => undefined, { enabled: false });',
          loader: 'js',
        }));
      },
    },
  ],
  logLevel: 'warning',
  // Written by rename below: a process preloading the agent while it is rebuilt (tests run in
  // parallel) reads the old file or the new one, never half of one.
  write: false,
});
for (const file of result.outputFiles) {
  const partial = `${file.path}.${process.pid}.tmp`;
  await mkdir(dirname(file.path), { recursive: true });
  await writeFile(partial, file.contents);
  await rename(partial, file.path);
}
