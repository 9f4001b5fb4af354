/**
 * The analyses catalog of a deployed web app (`analyses.json` next to the app, written by the
 * WebStack at synth time): what the Analyses page shows of each analysis (the same view as the
 * local server's GET /api/analyses) and the deployed blueprint, so the browser estimates and
 * validates with the same lib/client code the CLI and the local server run. Browser-safe.
 */
import type { Blueprint } from '../core/blueprint.js';
import { NeuroCaasError } from '../core/errors.js';
import { describeAnalysis, type AnalysisView } from './analysis-catalog.js';

export const WEB_CATALOG_SCHEMA_VERSION = 1;

/** One deployed analysis: its view and the blueprint it was deployed with. */
export interface WebCatalogEntry {
  analysis: string;
  view: AnalysisView;
  /** The parsed blueprint (defaults filled in), as the analysis stack deployed it. */
  blueprint: Blueprint;
}

export interface WebCatalog {
  schemaVersion: typeof WEB_CATALOG_SCHEMA_VERSION;
  analyses: WebCatalogEntry[];
}

/** analyses.json is missing, from another version, or not a catalog: redeploy the web stack. */
export class CatalogInvalidError extends NeuroCaasError {
  constructor(message: string) {
    super('CatalogInvalid', message);
  }
}

/** The catalog of `analyses`, in the order given (the deployment's). */
export function buildWebCatalog(analyses: readonly { analysis: string; blueprint: Blueprint; readme: string | null }[]): WebCatalog {
  return {
    schemaVersion: WEB_CATALOG_SCHEMA_VERSION,
    analyses: analyses.map(({ analysis, blueprint, readme }) => ({ analysis, view: describeAnalysis(blueprint, readme), blueprint })),
  };
}

const isObject = (value: unknown): value is Record<string, unknown> => value !== null && typeof value === 'object' && !Array.isArray(value);

/**
 * Checks what the browser fetched is a catalog of this version; `where` names it in errors
 * (e.g. "./analyses.json"). Shallow: the file is the deployment's own, written from blueprints
 * the platform already validated; this catches a stale or hand-edited file, with a clear fix.
 */
export function parseWebCatalog(value: unknown, where: string): WebCatalog {
  const redeploy = 'redeploy the web stack (npx cdk deploy NeurocaasWeb) so it is written again from the blueprints';
  if (!isObject(value)) throw new CatalogInvalidError(`${where} is not an analyses catalog (expected a JSON object); ${redeploy}`);
  if (value['schemaVersion'] !== WEB_CATALOG_SCHEMA_VERSION) {
    throw new CatalogInvalidError(`${where} has schemaVersion ${JSON.stringify(value['schemaVersion'])}, this app reads ${WEB_CATALOG_SCHEMA_VERSION}; ${redeploy}`);
  }
  const analyses = value['analyses'];
  if (!Array.isArray(analyses)) throw new CatalogInvalidError(`${where}: "analyses" must be a list; ${redeploy}`);
  analyses.forEach((entry: unknown, index) => {
    const ok =
      isObject(entry) &&
      typeof entry['analysis'] === 'string' &&
      isObject(entry['view']) &&
      isObject(entry['blueprint']) &&
      isObject((entry['blueprint'] as Record<string, unknown>)['config']) &&
      isObject(((entry['blueprint'] as Record<string, unknown>)['config'] as Record<string, unknown>)['jsonSchema']);
    if (!ok) throw new CatalogInvalidError(`${where}: analyses[${index}] needs "analysis", "view" and "blueprint" (with config.jsonSchema); ${redeploy}`);
  });
  return value as unknown as WebCatalog;
}
