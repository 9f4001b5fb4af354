/**
 * A group's inputs and configs as a researcher picks from them, and the "already uploaded?"
 * check that lets a client skip sending the same bytes twice. Browser-safe.
 */
import type { UseCaseBackend } from './ports.js';
import { groupObjectKey, type ObjectKind } from './object-names.js';

/** One object under `<group>/inputs/` or `<group>/configs/` (D10). */
export interface GroupObjectView {
  key: string;
  /** The part after `<group>/<kind>/`; may contain "/" (folder uploads). */
  name: string;
  sizeBytes: number;
  /** ISO 8601. */
  lastModified: string;
  /** Hex sha256 when the backend knows it (always on local; recorded metadata on aws). */
  sha256?: string;
}

const SHA256_HEX = /^[0-9a-f]{64}$/;

/** Every object of the group's `kind` area, sorted by key. */
export async function listGroupObjects(backend: UseCaseBackend, bucket: string, group: string, kind: ObjectKind): Promise<GroupObjectView[]> {
  const prefix = `${group}/${kind}/`;
  const objects = await backend.objects.list(bucket, prefix);
  const views: GroupObjectView[] = [];
  for (const object of objects) {
    if (object.key.endsWith('/')) continue;
    const sha256 = await backend.objects.sha256(bucket, object.key).catch(() => undefined);
    views.push({
      key: object.key,
      name: object.key.slice(prefix.length),
      sizeBytes: object.size,
      lastModified: new Date(object.lastModifiedMs ?? 0).toISOString(),
      ...(sha256 !== undefined && SHA256_HEX.test(sha256) ? { sha256 } : {}),
    });
  }
  return views;
}

/** Whether `<group>/<kind>/<name>` exists and, when `sha256` is given, holds exactly those bytes. */
export async function uploadedAlready(backend: UseCaseBackend, bucket: string, group: string, kind: ObjectKind, name: string, sha256?: string): Promise<{ key: string; exists: boolean; sameContent: boolean }> {
  const key = groupObjectKey(group, kind, name);
  const info = await backend.objects.head(bucket, key);
  if (!info) return { key, exists: false, sameContent: false };
  if (sha256 === undefined) return { key, exists: true, sameContent: false };
  const stored = await backend.objects.sha256(bucket, key);
  return { key, exists: true, sameContent: stored !== undefined && stored === sha256.toLowerCase() };
}
