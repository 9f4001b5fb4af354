import * as z from 'zod';
import { BlueprintSchema } from './blueprint.js';
import { SubmissionSchema } from './submission.js';
import { UserProfileSchema } from './user.js';
import { DatasetStatusSchema } from './status.js';
import { ImageRecipeSchema } from './image-recipe.js';

/**
 * JSON Schemas generated from the zod schemas, for editors and for documentation. They
 * describe the files as written by people (input side: defaults may be omitted).
 */
export function generatedJsonSchemas(): Record<string, unknown> {
  const render = (schema: z.ZodType, id: string, title: string) => ({
    $id: `https://neurocaas-ts.invalid/schemas/${id}`,
    title,
    ...z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any', target: 'draft-2020-12' }),
  });
  return {
    'blueprint.schema.json': render(BlueprintSchema, 'blueprint.schema.json', 'NeuroCAAS-TS analysis blueprint (blueprints/<analysis>/blueprint.json)'),
    'image-recipe.schema.json': render(ImageRecipeSchema, 'image-recipe.schema.json', 'NeuroCAAS-TS image recipe (blueprints/<analysis>/<environment.recipe>, e.g. image/recipe.json)'),
    'user.schema.json': render(UserProfileSchema, 'user.schema.json', 'NeuroCAAS-TS user profile (users/<name>.json)'),
    'submission.schema.json': render(SubmissionSchema, 'submission.schema.json', 'NeuroCAAS submission (<group>/submissions/<name>submit.json)'),
    'dataset-status.schema.json': render(DatasetStatusSchema, 'dataset-status.schema.json', 'Per-dataset status (logs/DATASET_NAME-<dataset>_STATUS.txt.json)'),
  };
}
