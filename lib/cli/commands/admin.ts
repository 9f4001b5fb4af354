import { open, rm } from 'node:fs/promises';
import { CreateAccessKeyCommand, DeleteAccessKeyCommand, IAMClient, ListAccessKeysCommand } from '@aws-sdk/client-iam';
import { NeuroCaasError, ObjectExistsError } from '../../core/errors.js';
import { translateAwsError } from '../../client/aws-backend.js';
import type { Reporter } from '../reporter.js';

/** The admin's IAM client from the standard chain (AWS_PROFILE, AWS_ENDPOINT_URL for an emulator). */
export function adminIamClient(env: NodeJS.ProcessEnv): IAMClient {
  const endpoint = env['AWS_ENDPOINT_URL'] || undefined;
  // IAM is global; the region only picks the signing endpoint.
  return new IAMClient({ ...(endpoint ? { endpoint } : {}), region: env['AWS_REGION'] || env['AWS_DEFAULT_REGION'] || 'us-east-1' });
}

export interface IssuedCredentials {
  user: string;
  file: string;
  accessKeyId: string;
  /** Access key ids deleted by --rotate. */
  deleted: string[];
}

/**
 * `neurocaas admin credentials <user> --out FILE [--rotate]`: creates an access key for the
 * user's IAM user (D1: IAM user name == profile username) and writes it, in the standard AWS
 * shared-credentials format, to FILE with mode 0600. The secret goes to that file only: never
 * to stdout, never to a log. FILE is created exclusively, so an existing file is never replaced;
 * with --rotate the old key(s) are deleted only after the new one is safely written.
 */
export async function createCredentialsFile(iam: IAMClient, user: string, file: string, rotate: boolean): Promise<IssuedCredentials> {
  // Open first: a refused file must not leave a new key behind.
  let handle;
  try {
    handle = await open(file, 'wx', 0o600);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new ObjectExistsError(`${file} already exists; it was not overwritten: choose another --out file, or move the old one away first`);
    }
    throw new NeuroCaasError('CredentialsFile', `cannot create ${file}: ${(error as Error).message}`);
  }
  let accessKeyId: string | undefined;
  let written = false;
  try {
    const before = await guardedIam(`listing the access keys of IAM user ${user}`, () => iam.send(new ListAccessKeysCommand({ UserName: user })));
    const old = (before.AccessKeyMetadata ?? []).map((k) => k.AccessKeyId).filter((id): id is string => id !== undefined);
    if (!rotate && old.length >= 2) {
      throw new NeuroCaasError('CredentialsLimit', `IAM user ${user} already has ${old.length} access keys (the IAM limit is 2); use --rotate to replace them`);
    }
    if (rotate && old.length >= 2) {
      // No room for a new key: the oldest makes room (the newest stays valid until the new one is written).
      const oldest = [...(before.AccessKeyMetadata ?? [])].sort((a, b) => (a.CreateDate?.getTime() ?? 0) - (b.CreateDate?.getTime() ?? 0))[0];
      if (oldest?.AccessKeyId) await iam.send(new DeleteAccessKeyCommand({ UserName: user, AccessKeyId: oldest.AccessKeyId }));
    }
    const created = await guardedIam(`creating an access key for IAM user ${user}`, () => iam.send(new CreateAccessKeyCommand({ UserName: user })));
    const key = created.AccessKey;
    if (!key?.AccessKeyId || !key.SecretAccessKey) throw new NeuroCaasError('CredentialsIssue', `IAM returned no access key for ${user}`);
    accessKeyId = key.AccessKeyId;
    await handle.writeFile(`[default]\naws_access_key_id = ${key.AccessKeyId}\naws_secret_access_key = ${key.SecretAccessKey}\n`, { encoding: 'utf8' });
    await handle.sync();
    await handle.close();
    written = true;
    const deleted: string[] = [];
    if (rotate) {
      for (const id of old) {
        const still = await iam.send(new ListAccessKeysCommand({ UserName: user }));
        if (!(still.AccessKeyMetadata ?? []).some((k) => k.AccessKeyId === id)) continue;
        await iam.send(new DeleteAccessKeyCommand({ UserName: user, AccessKeyId: id }));
        deleted.push(id);
      }
    }
    return { user, file, accessKeyId, deleted };
  } catch (error) {
    if (written) throw error; // The new key is in the file and valid; only the old keys' deletion failed.
    // Nothing half-done stays: neither the file (no usable key in it) nor a key nobody received.
    await handle.close().catch(() => undefined);
    await rm(file, { force: true });
    if (accessKeyId !== undefined) await iam.send(new DeleteAccessKeyCommand({ UserName: user, AccessKeyId: accessKeyId })).catch(() => undefined);
    throw error;
  }
}

export async function issueCredentials(iam: IAMClient, user: string, file: string, rotate: boolean, reporter: Reporter): Promise<number> {
  const issued = await createCredentialsFile(iam, user, file, rotate);
  const rotated = issued.deleted.length > 0 ? `; deleted old key(s) ${issued.deleted.join(', ')}` : '';
  reporter.result(
    issued,
    `wrote access key ${issued.accessKeyId} of IAM user ${user} to ${file} (mode 0600)${rotated}\n` +
      `give the researcher that file; they use it with AWS_SHARED_CREDENTIALS_FILE=${file} and AWS_REGION set, then neurocaas --backend aws ...`,
  );
  return 0;
}

async function guardedIam<T>(what: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    if ((error as { name?: string }).name === 'NoSuchEntity' || (error as { name?: string }).name === 'NoSuchEntityException') {
      throw new NeuroCaasError('UserNotFound', `no IAM user "${what.split(' ').pop()}": deploy the users stack with users/<name>.json first (${what})`);
    }
    throw translateAwsError(error, what);
  }
}
