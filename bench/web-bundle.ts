/**
 * `npm run bench` (web): the built app's size as a browser downloads it, gzipped (level 9, what
 * a server or CloudFront would send), from dist/web/ (npm run bench builds first).
 * Figures: the first load of the Jobs page (index.html + the entry chunk + its CSS and static
 * imports), every chunk the local app can load, and the aws-only chunks apart.
 * Target: <= 500 KB gzipped for the local app.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { packageRoot } from '../protocols/local-shell.js';

const KB = 1000;

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? files(path) : [path];
  });
}

export function webBundleFigures(webDir = join(packageRoot(), 'dist', 'web')): { initialGzBytes: number; localGzBytes: number; awsGzBytes: number; rawBytes: number; chunks: number } {
  if (!existsSync(join(webDir, 'index.html'))) throw new Error(`${webDir}/index.html missing: run npm run build`);
  const all = files(webDir).filter((f) => /\.(js|css|html|wasm|svg)$/.test(f));
  const gz = (f: string) => gzipSync(readFileSync(f), { level: 9 }).length;
  const html = readFileSync(join(webDir, 'index.html'), 'utf8');
  // What index.html names (the entry script, its CSS, modulepreloads) is the first load.
  const initialNames = [...html.matchAll(/(?:src|href)="\.?\/?(assets\/[^"]+)"/g)].map((m) => m[1] as string);
  const initial = [join(webDir, 'index.html'), ...initialNames.map((n) => join(webDir, n))];
  // Chunks only the aws backend loads are named after it (aws.ts and the SDK it pulls in).
  const isAws = (f: string) => /\/assets\/aws[-.]/.test(f);
  return {
    initialGzBytes: initial.reduce((s, f) => s + gz(f), 0),
    localGzBytes: all.filter((f) => !isAws(f)).reduce((s, f) => s + gz(f), 0),
    awsGzBytes: all.filter(isAws).reduce((s, f) => s + gz(f), 0),
    rawBytes: all.reduce((s, f) => s + statSync(f).size, 0),
    chunks: all.length,
  };
}

export async function benchWebBundle(print: (line: string) => void): Promise<void> {
  const f = webBundleFigures();
  print(
    `web app bundle (gzip -9): first load of the Jobs page ${(f.initialGzBytes / KB).toFixed(1)} KB, whole local app ${(f.localGzBytes / KB).toFixed(1)} KB of ${f.chunks} files ` +
      `(${(f.rawBytes / KB).toFixed(0)} KB raw), aws-only chunks ${(f.awsGzBytes / KB).toFixed(1)} KB   (target <= 500 KB)`,
  );
}
