/**
 * Names starting with this are the platform's own (temp files, staging, caches): never a
 * researcher's. The same prefix as lib/local/object-store.ts PLATFORM_PREFIX, kept here so the
 * browser bundle does not import node-only code.
 */
export const PLATFORM_NAME_PREFIX = '.ncap-';
