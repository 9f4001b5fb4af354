/**
 * The real AWS CLI v2 from the emulator's trixie tree (installed by
 * scripts/emulator/setup-awscli.sh), callable as `aws` on this host: a small wrapper runs the
 * tree's python through the tree's own dynamic loader and libraries, so host paths (the
 * instance's scratch folder) stay valid and no chroot or root is needed to run it.
 */
import { chmodSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { shellQuote } from '../core/runner-spec.js';
import { EmulatorUnavailableError } from './emulator.js';

/** The wrapper script's text for the tree at `root`. */
export function awsCliWrapper(root: string): string {
  return [
    '#!/bin/sh',
    '# neurocaas sandbox: the AWS CLI v2 of the emulator tree (Debian trixie package awscli).',
    `root=${shellQuote(root)}`,
    'PYTHONHOME="$root/usr" PYTHONNOUSERSITE=1 PYTHONDONTWRITEBYTECODE=1 exec "$root/lib64/ld-linux-x86-64.so.2" \\',
    '  --library-path "$root/usr/lib/x86_64-linux-gnu:$root/lib/x86_64-linux-gnu" "$root/usr/bin/python3" "$root/usr/bin/aws" "$@"',
    '',
  ].join('\n');
}

/**
 * Stand-ins for `shutdown` and `poweroff` on an emulated instance: the runner powers its machine
 * off when done (NCAP_SHUTDOWN=1), which must terminate the emulated instance, never this host.
 */
export function shutdownWrapper(): string {
  return [
    '#!/bin/sh',
    '# neurocaas sandbox: the emulated instance powers off (its shutdown behaviour terminates it).',
    'printf "%s\\n" "$*" >> "${NEUROCAAS_SANDBOX_SHUTDOWN_FILE:?not an emulated instance}"',
    '',
  ].join('\n');
}

/** Writes `aws`, `shutdown` and `poweroff` into `binDir`; returns the folder. */
export function installInstanceTools(binDir: string, root: string): string {
  for (const needed of ['usr/bin/aws', 'lib64/ld-linux-x86-64.so.2']) {
    if (!existsSync(join(root, needed))) {
      throw new EmulatorUnavailableError(`${join(root, needed)} is missing: the AWS CLI is not installed in the emulator tree; run scripts/emulator/setup-awscli.sh as root`);
    }
  }
  mkdirSync(binDir, { recursive: true });
  const write = (name: string, text: string) => {
    writeFileSync(join(binDir, name), text);
    chmodSync(join(binDir, name), 0o755);
  };
  write('aws', awsCliWrapper(root));
  write('shutdown', shutdownWrapper());
  write('poweroff', shutdownWrapper());
  return binDir;
}
