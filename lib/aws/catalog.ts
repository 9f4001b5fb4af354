import { GetCommand, ScanCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import * as z from 'zod';
import { allowedInstanceTypes, parseBlueprintText, type Blueprint } from '../core/blueprint.js';
import { AnalysisNotFoundError, BlueprintInvalidError, UserProfileInvalidError } from '../core/errors.js';
import type { MachinePlacement } from './ec2-machines.js';
import { formatZodIssues } from '../core/issues.js';
import { parseUserProfileText, type UserProfile } from '../core/user.js';
import type { Catalog, Clock } from '../ports.js';
import type { ImageFacts } from '../core/image-recipe.js';

/** How long a lookup is reused before the table is read again: 60 s. */
export const DEFAULT_CACHE_TTL_MS = 60_000;

/** Where and how an analysis's machines are launched, as the deploy recorded it. */
export type AnalysisPlacement = MachinePlacement;

export interface DynamoCatalogOptions {
  /** Time source of the cache; default the system clock. */
  clock?: Clock;
  /** How long lookups are reused, in ms; default 60 000. */
  cacheTtlMs?: number;
}

/** The registry item the deploy writes per analysis: `{pk: "ANALYSIS#<name>", sk: "CONFIG", ...}`. */
const AnalysisItemSchema = z.object({
  blueprint: z.string().min(1),
  versionId: z.string().min(1),
  bucket: z.string().min(1),
  amiId: z.string().min(1),
  instanceProfileArn: z.string().min(1),
  securityGroupId: z.string().min(1),
  subnetIds: z.array(z.string().min(1)).min(1),
  machineRoleArn: z.string().min(1),
  // Written by deployments since images as code; older items have none of them.
  imageSource: z.enum(['ami', 'recipe']).optional(),
  recipeHash: z.string().min(1).optional(),
  baseImageParameter: z.string().min(1).optional(),
  baseImageId: z.string().min(1).optional(),
});

/** The registry item per user: `{pk: "USER#<username>", sk: "PROFILE", group, profile}`. */
const UserItemSchema = z.object({ pk: z.string().startsWith('USER#'), group: z.string(), profile: z.string() });

interface LoadedAnalysis {
  blueprint: Blueprint;
  versionId: string;
  placement: AnalysisPlacement;
}

interface CacheEntry<T> {
  value: T;
  expiresAtMs: number;
}

const systemClock: Clock = { nowMs: () => Date.now() };

/**
 * Blueprints and user profiles from the registry items the deploy writes into the platform
 * table. Lookups are cached for the lifetime of the object (a Lambda container) for 60 s, so a
 * burst of submissions reads the table once; a redeploy is seen within a minute.
 */
export class DynamoCatalog implements Catalog {
  private readonly clock: Clock;
  private readonly cacheTtlMs: number;
  private readonly analyses = new Map<string, CacheEntry<LoadedAnalysis | undefined>>();
  private readonly users = new Map<string, CacheEntry<UserProfile | undefined>>();
  private readonly groups = new Map<string, CacheEntry<UserProfile[]>>();
  /** AMI per analysis, kept past the cache lifetime: imageId() is synchronous. */
  private readonly amiIds = new Map<string, string>();
  /** Where each analysis's AMI came from, kept like amiIds. */
  private readonly images = new Map<string, ImageFacts>();

  constructor(
    private readonly doc: DynamoDBDocumentClient,
    private readonly tableName: string,
    options: DynamoCatalogOptions = {},
  ) {
    this.clock = options.clock ?? systemClock;
    this.cacheTtlMs = options.cacheTtlMs ?? DEFAULT_CACHE_TTL_MS;
  }

  async blueprint(analysis: string): Promise<{ blueprint: Blueprint; versionId: string } | undefined> {
    const loaded = await this.loadAnalysis(analysis);
    return loaded && { blueprint: loaded.blueprint, versionId: loaded.versionId };
  }

  /** Where the analysis's machines go; throws AnalysisNotFoundError when it is not deployed. */
  async placement(analysis: string): Promise<AnalysisPlacement> {
    const loaded = await this.loadAnalysis(analysis);
    if (!loaded) {
      throw new AnalysisNotFoundError(
        `analysis "${analysis}" is not deployed: table ${this.tableName} has no registry item ANALYSIS#${analysis}; ` +
          'check the name, or deploy its blueprint (npx cdk deploy)',
      );
    }
    return loaded.placement;
  }

  /** The AMI the deploy recorded for the blueprint's analysis (loaded by blueprint() or placement()). */
  imageId(blueprint: Blueprint): string {
    const amiId = this.amiIds.get(blueprint.name) ?? blueprint.environment.ami;
    if (amiId === undefined) {
      throw new BlueprintInvalidError(
        `no AMI is known for analysis "${blueprint.name}": it was not loaded from table ${this.tableName} and its blueprint has no environment.ami`,
      );
    }
    return amiId;
  }

  /** Where the deploy's AMI came from (a literal id, or a recipe with its hash and base image); undefined for items written before images as code. */
  imageFacts(blueprint: Blueprint): ImageFacts | undefined {
    return this.images.get(blueprint.name);
  }

  async usersOfGroup(group: string): Promise<UserProfile[]> {
    return this.cached(this.groups, group, async () => {
      const profiles: UserProfile[] = [];
      let startKey: Record<string, unknown> | undefined;
      do {
        // A Scan with a filter: a deployment has tens of users, not millions.
        const page = await this.doc.send(
          new ScanCommand({
            TableName: this.tableName,
            FilterExpression: 'begins_with(pk, :user) AND sk = :sk AND #group = :group',
            ExpressionAttributeNames: { '#group': 'group' },
            ExpressionAttributeValues: { ':user': 'USER#', ':sk': 'PROFILE', ':group': group },
            ExclusiveStartKey: startKey,
          }),
        );
        for (const item of page.Items ?? []) {
          const profile = this.parseUserItem(item);
          if (profile.group === group) profiles.push(profile);
        }
        startKey = page.LastEvaluatedKey;
      } while (startKey);
      return profiles.sort((a, b) => (a.username < b.username ? -1 : a.username > b.username ? 1 : 0));
    });
  }

  async user(username: string): Promise<UserProfile | undefined> {
    if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$/.test(username)) return undefined;
    return this.cached(this.users, username, async () => {
      const result = await this.doc.send(
        new GetCommand({ TableName: this.tableName, Key: { pk: `USER#${username}`, sk: 'PROFILE' } }),
      );
      return result.Item ? this.parseUserItem(result.Item) : undefined;
    });
  }

  private async loadAnalysis(analysis: string): Promise<LoadedAnalysis | undefined> {
    if (!/^[a-z0-9][a-z0-9-]*$/.test(analysis)) return undefined;
    return this.cached(this.analyses, analysis, async () => {
      const result = await this.doc.send(
        new GetCommand({ TableName: this.tableName, Key: { pk: `ANALYSIS#${analysis}`, sk: 'CONFIG' } }),
      );
      if (!result.Item) return undefined;
      const source = `registry item ANALYSIS#${analysis} in table ${this.tableName}`;
      const parsed = AnalysisItemSchema.safeParse(result.Item);
      if (!parsed.success) throw new BlueprintInvalidError(`${formatZodIssues(parsed.error, source)}\nredeploy the analysis to rewrite it`);
      const item = parsed.data;
      const blueprint = parseBlueprintText(item.blueprint, `blueprint of ${source}`, analysis);
      const allowed = allowedInstanceTypes(blueprint);
      const defaultType = blueprint.hardware.instanceType;
      const loaded: LoadedAnalysis = {
        blueprint,
        versionId: item.versionId,
        placement: {
          analysis,
          bucket: item.bucket,
          amiId: item.amiId,
          instanceProfileArn: item.instanceProfileArn,
          securityGroupId: item.securityGroupId,
          subnetIds: [...item.subnetIds],
          volumeSizeGiB: blueprint.hardware.volumeSizeGiB,
          ...(blueprint.hardware.extraVolumeSizesGiB ? { extraVolumeSizesGiB: [...blueprint.hardware.extraVolumeSizesGiB] } : {}),
          instanceTypes: [defaultType, ...allowed.filter((type) => type !== defaultType)],
          hourlyUsd: { ...blueprint.pricing.hourlyUsd },
        },
      };
      this.amiIds.set(analysis, item.amiId);
      if (item.imageSource) {
        this.images.set(analysis, {
          source: item.imageSource,
          ...(item.recipeHash ? { recipeHash: item.recipeHash } : {}),
          ...(item.baseImageParameter && item.baseImageId ? { baseImage: { parameter: item.baseImageParameter, imageId: item.baseImageId } } : {}),
        });
      }
      return loaded;
    });
  }

  private parseUserItem(item: Record<string, unknown>): UserProfile {
    const source = `registry item ${String(item.pk)} in table ${this.tableName}`;
    const parsed = UserItemSchema.safeParse(item);
    if (!parsed.success) throw new UserProfileInvalidError(`${formatZodIssues(parsed.error, source)}\nredeploy the users to rewrite it`);
    return parseUserProfileText(parsed.data.profile, `profile of ${source}`, parsed.data.pk.slice('USER#'.length));
  }

  /** The cached value while fresh; otherwise loads, caches and returns it. Failures are not cached. */
  private async cached<T>(cache: Map<string, CacheEntry<T>>, key: string, load: () => Promise<T>): Promise<T> {
    const nowMs = this.clock.nowMs();
    const hit = cache.get(key);
    if (hit && hit.expiresAtMs > nowMs) return hit.value;
    const value = await load();
    cache.set(key, { value, expiresAtMs: nowMs + this.cacheTtlMs });
    return value;
  }
}
