import { mkdtempSync } from 'node:fs';
import { readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateUserCommand, IAMClient, ListAccessKeysCommand } from '@aws-sdk/client-iam';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCredentialsFile, issueCredentials } from '../../../lib/cli/commands/admin.js';
import { JsonReporter } from '../../../lib/cli/reporter.js';
import { MOTO_START_TIMEOUT_MS, startMoto, type MotoServer } from '../../support/moto.js';

describe('neurocaas admin credentials against the IAM emulator', () => {
  let moto: MotoServer;
  let iam: IAMClient;
  let dir: string;

  beforeAll(async () => {
    moto = await startMoto();
    iam = new IAMClient({ endpoint: moto.endpoint, region: 'us-east-1', credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' } });
    await iam.send(new CreateUserCommand({ UserName: 'alice' }));
    dir = mkdtempSync(join(tmpdir(), 'ncap-credentials-'));
  }, MOTO_START_TIMEOUT_MS);
  afterAll(async () => {
    await moto?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  const keysOf = async (user: string) => ((await iam.send(new ListAccessKeysCommand({ UserName: user }))).AccessKeyMetadata ?? []).map((k) => k.AccessKeyId);

  it('writes a new access key in the shared-credentials format to a file of mode 0600, and the secret nowhere else', async () => {
    const file = join(dir, 'alice');
    let printed = '';
    const reporter = new JsonReporter({ stdout: { write: (t: string) => (printed += t) }, stderr: { write: (t: string) => (printed += t) } });

    await issueCredentials(iam, 'alice', file, false, reporter);
    reporter.flush();

    const text = await readFile(file, 'utf8');
    const [, keyId, secret] = /^\[default\]\naws_access_key_id = (\S+)\naws_secret_access_key = (\S+)\n$/.exec(text) ?? [];
    expect(keyId).toBeDefined();
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect(await keysOf('alice')).toEqual([keyId]);
    expect(printed).toContain(keyId as string);
    expect(printed).not.toContain(secret as string);
  });

  it('refuses to overwrite an existing file, saying so, and creates no key', async () => {
    const file = join(dir, 'taken');
    await writeFile(file, 'mine\n');
    const before = await keysOf('alice');

    await expect(createCredentialsFile(iam, 'alice', file, false)).rejects.toThrow(/taken already exists; it was not overwritten/);

    expect(await readFile(file, 'utf8')).toBe('mine\n');
    expect(await keysOf('alice')).toEqual(before);
  });

  it('--rotate writes the new key, then deletes the old one(s): exactly one key is left, the new one', async () => {
    const first = await createCredentialsFile(iam, 'alice', join(dir, 'second'), false);
    expect((await keysOf('alice')).length).toBe(2);

    const rotated = await createCredentialsFile(iam, 'alice', join(dir, 'rotated'), true);

    expect(await keysOf('alice')).toEqual([rotated.accessKeyId]);
    expect(rotated.deleted).toContain(first.accessKeyId);
    expect(await readFile(join(dir, 'rotated'), 'utf8')).toContain(rotated.accessKeyId);
  });

  it('names a user that has no IAM user and leaves no file behind', async () => {
    const file = join(dir, 'nobody');

    await expect(createCredentialsFile(iam, 'nobody', file, false)).rejects.toThrow(/no IAM user/);

    await expect(stat(file)).rejects.toThrow(/ENOENT/);
  });
});
