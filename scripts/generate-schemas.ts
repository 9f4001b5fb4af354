/**
 * `npm run schema`: writes schemas/*.json and docs/blueprint-reference.md from the zod schemas.
 * A test fails when the committed files are stale.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { generatedJsonSchemas } from '../lib/core/json-schemas.js';
import { renderSchemaReference } from '../lib/core/schema-reference.js';
import { packageRoot } from '../protocols/local-shell.js';

const root = packageRoot();
const schemas = generatedJsonSchemas();
await mkdir(join(root, 'schemas'), { recursive: true });
for (const [name, schema] of Object.entries(schemas)) {
  await writeFile(join(root, 'schemas', name), `${JSON.stringify(schema, null, 2)}\n`);
}
await writeFile(join(root, 'docs', 'blueprint-reference.md'), renderSchemaReference(schemas));
process.stdout.write(`wrote ${Object.keys(schemas).length} schemas and docs/blueprint-reference.md\n`);
