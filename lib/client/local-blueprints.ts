import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { LocalCatalog } from '../local/catalog.js';
import type { BlueprintSource } from './analysis-catalog.js';

/** Largest README shown: 256 KiB (a README is a page, not a data file). */
const MAX_README_BYTES = 256 * 1024;

/** Blueprints (and their README.md) from the local blueprints folder. Node-only. */
export class LocalBlueprintSource implements BlueprintSource {
  constructor(private readonly catalog: LocalCatalog) {}

  get location(): string {
    return this.catalog.blueprintsDir;
  }

  analyses(): Promise<string[]> {
    return this.catalog.analyses();
  }

  async blueprint(analysis: string): Promise<{ blueprint: import('../core/blueprint.js').Blueprint; readme: string | null } | undefined> {
    // The catalog validates the name's shape: nothing outside the blueprints folder is read.
    if (!(await this.catalog.analyses()).includes(analysis)) return undefined;
    const entry = await this.catalog.blueprint(analysis);
    if (!entry) return undefined;
    const readme = await readFile(join(this.catalog.blueprintsDir, analysis, 'README.md')).then(
      (bytes) => bytes.subarray(0, MAX_README_BYTES).toString('utf8'),
      () => null,
    );
    return { blueprint: entry.blueprint, readme };
  }
}
