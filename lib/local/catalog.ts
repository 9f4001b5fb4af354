import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { parseBlueprintText, type Blueprint } from '../core/blueprint.js';
import { BlueprintInvalidError } from '../core/errors.js';
import { blueprintVersionId } from '../core/hash.js';
import { parseUserProfileText, type UserProfile } from '../core/user.js';
import type { Catalog } from '../ports.js';
import { isErrno } from './fs-util.js';

interface LoadedBlueprint {
  blueprint: Blueprint;
  versionId: string;
  dir: string;
  imageId: string;
}

/**
 * Blueprints from `<blueprintsDir>/<analysis>/blueprint.json` and users from
 * `<usersDir>/<name>.json`, read from disk and validated on every lookup that needs them.
 */
export class LocalCatalog implements Catalog {
  private readonly loaded = new Map<string, LoadedBlueprint>();

  constructor(
    readonly blueprintsDir: string,
    readonly usersDir: string,
  ) {}

  async blueprint(analysis: string): Promise<{ blueprint: Blueprint; versionId: string } | undefined> {
    const entry = await this.load(analysis);
    return entry && { blueprint: entry.blueprint, versionId: entry.versionId };
  }

  /** Folder the analysis's workflow runs in on the local backend. */
  envDirOf(analysis: string): string {
    const entry = this.loaded.get(analysis);
    if (!entry) throw new BlueprintInvalidError(`blueprint "${analysis}" was not loaded before its environment was needed`);
    return join(entry.dir, entry.blueprint.environment.local?.dir ?? 'env');
  }

  imageId(blueprint: Blueprint): string {
    return this.loaded.get(blueprint.name)?.imageId ?? 'local-env:unknown';
  }

  async analyses(): Promise<string[]> {
    try {
      const entries = await readdir(this.blueprintsDir, { withFileTypes: true });
      const names: string[] = [];
      for (const entry of entries) {
        if (!entry.isDirectory()) continue;
        const exists = await readFile(join(this.blueprintsDir, entry.name, 'blueprint.json')).then(() => true, () => false);
        if (exists) names.push(entry.name);
      }
      return names.sort();
    } catch (error) {
      if (isErrno(error, 'ENOENT')) return [];
      throw error;
    }
  }

  async usersOfGroup(group: string): Promise<UserProfile[]> {
    return (await this.allUsers()).filter((user) => user.group === group);
  }

  async user(username: string): Promise<UserProfile | undefined> {
    if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$/.test(username)) return undefined;
    const path = join(this.usersDir, `${username}.json`);
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (error) {
      if (isErrno(error, 'ENOENT')) return undefined;
      throw error;
    }
    return parseUserProfileText(text, path, username);
  }

  async allUsers(): Promise<UserProfile[]> {
    let names: string[];
    try {
      names = (await readdir(this.usersDir)).filter((name) => name.endsWith('.json'));
    } catch (error) {
      if (isErrno(error, 'ENOENT')) return [];
      throw error;
    }
    const users: UserProfile[] = [];
    for (const name of names.sort()) {
      const user = await this.user(name.slice(0, -'.json'.length));
      if (user) users.push(user);
    }
    return users;
  }

  private async load(analysis: string): Promise<LoadedBlueprint | undefined> {
    if (!/^[a-z0-9][a-z0-9-]*$/.test(analysis)) return undefined;
    const dir = join(this.blueprintsDir, analysis);
    const path = join(dir, 'blueprint.json');
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (error) {
      if (isErrno(error, 'ENOENT')) return undefined;
      throw error;
    }
    const blueprint = parseBlueprintText(text, path, analysis);
    const envDir = join(dir, blueprint.environment.local?.dir ?? 'env');
    const entry: LoadedBlueprint = {
      blueprint,
      versionId: blueprintVersionId(JSON.parse(text)),
      dir,
      imageId: `local-env:sha256:${await hashFolder(envDir)}`,
    };
    this.loaded.set(analysis, entry);
    return entry;
  }
}

/** sha256 over a folder's relative paths and contents: the local "image id". */
async function hashFolder(dir: string): Promise<string> {
  const hash = createHash('sha256');
  const visit = async (current: string): Promise<void> => {
    let entries;
    try {
      entries = await readdir(current, { withFileTypes: true });
    } catch (error) {
      if (isErrno(error, 'ENOENT')) return;
      throw error;
    }
    for (const entry of entries.sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const full = join(current, entry.name);
      if (entry.isDirectory()) {
        if (entry.name !== 'node_modules') await visit(full);
      } else if (entry.isFile()) {
        hash.update(relative(dir, full).split(sep).join('/'));
        hash.update(await readFile(full));
      }
    }
  };
  await visit(dir);
  return hash.digest('hex');
}
