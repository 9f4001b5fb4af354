/**
 * What a researcher sees of an analysis before submitting: its description, hardware, typical
 * cost per dataset, README and config schema. Browser-safe (no node: imports): the web app's
 * aws backend reads blueprints its own way and reuses these functions.
 */
import { allowedInstanceTypes, type Blueprint } from '../core/blueprint.js';
import { AnalysisNotFoundError } from '../core/errors.js';
import { estimateReservation } from './estimate.js';

/** Where blueprints come from: the blueprints folder on local. */
export interface BlueprintSource {
  /** Analysis names, sorted. */
  analyses(): Promise<string[]>;
  /** The blueprint and its README (markdown, null when it has none); undefined when unknown. */
  blueprint(analysis: string): Promise<{ blueprint: Blueprint; readme: string | null } | undefined>;
  /** Where the blueprints are, for error messages (a folder, or "the deployment"). */
  readonly location: string;
}

/** GET /api/analyses, one entry (D10). */
export interface AnalysisView {
  name: string;
  description: string;
  hardware: { instanceType: string; allowedInstanceTypes: string[]; gpu?: unknown };
  /** The reservation of one dataset on the default instance type, in USD. */
  perDatasetUsd: number;
  readme: string | null;
  configSchema: Record<string, unknown>;
}

export function describeAnalysis(blueprint: Blueprint, readme: string | null): AnalysisView {
  const hardware: AnalysisView['hardware'] = { instanceType: blueprint.hardware.instanceType, allowedInstanceTypes: allowedInstanceTypes(blueprint) };
  // Blueprints that declare a GPU requirement (issue 8) carry it; older ones have none.
  const gpu = (blueprint as { requires?: { gpu?: unknown } }).requires?.gpu ?? (blueprint.hardware as { gpu?: unknown }).gpu;
  if (gpu !== undefined) hardware.gpu = gpu;
  return {
    name: blueprint.name,
    description: blueprint.description ?? '',
    hardware,
    perDatasetUsd: estimateReservation(blueprint, 1).perDatasetUsd,
    readme,
    configSchema: blueprint.config.jsonSchema as Record<string, unknown>,
  };
}

/** Every analysis the source knows, described. */
export async function listAnalyses(source: BlueprintSource): Promise<AnalysisView[]> {
  const views: AnalysisView[] = [];
  for (const name of await source.analyses()) {
    const entry = await source.blueprint(name);
    if (entry) views.push(describeAnalysis(entry.blueprint, entry.readme));
  }
  return views;
}

/** The blueprint of `analysis`; throws AnalysisNotFoundError naming the known ones. */
export async function requireBlueprint(source: BlueprintSource, analysis: string): Promise<Blueprint> {
  const entry = await source.blueprint(analysis);
  if (entry) return entry.blueprint;
  const known = await source.analyses();
  throw new AnalysisNotFoundError(`analysis "${analysis}" not found in ${source.location}; available: ${known.join(', ') || 'none'}`);
}
