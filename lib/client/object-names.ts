/**
 * Names a researcher gives to objects and result paths (the web app's upload names, dataset
 * names, result paths): relative, forward slashes, no way out of their folder. Browser-safe.
 */
import { KeyInvalidError } from '../core/errors.js';
import { checkKey } from '../core/keys.js';
import { PLATFORM_NAME_PREFIX } from './platform-names.js';

/** The area of a group a researcher writes to (D6). */
export type ObjectKind = 'inputs' | 'configs';

export const OBJECT_KINDS: readonly ObjectKind[] = ['inputs', 'configs'];

/**
 * Throws KeyInvalidError (naming `what`) unless `name` is a safe relative name: no "..", no
 * leading "/", no backslash, no control characters (NUL included), no empty folder, no name of
 * the platform's own (".ncap-..."). `folder: true` allows one trailing "/" (a folder dataset).
 */
export function checkRelativeName(name: string, what: string, options: { folder?: boolean } = {}): void {
  const body = options.folder && name.endsWith('/') ? name.slice(0, -1) : name;
  const check = checkKey(body);
  if (!check.ok) throw new KeyInvalidError(`${what} "${printable(name)}" is not allowed: ${check.reason.replace(/^key /, 'the name ')}`);
  for (const segment of body.split('/')) {
    if (segment.startsWith(PLATFORM_NAME_PREFIX)) throw new KeyInvalidError(`${what} "${printable(name)}" is not allowed: names starting with "${PLATFORM_NAME_PREFIX}" are the platform's own`);
  }
}

/** `<group>/<kind>/<name>` after checking the name; the only keys a researcher's upload may have. */
export function groupObjectKey(group: string, kind: ObjectKind, name: string): string {
  if (!OBJECT_KINDS.includes(kind)) throw new KeyInvalidError(`kind must be "inputs" or "configs", got "${printable(String(kind))}"`);
  checkRelativeName(name, kind === 'inputs' ? 'input name' : 'config name');
  return `${group}/${kind}/${name}`;
}

/**
 * A dataset as the web app names it: a name below `<group>/inputs/` ("a.csv", "session/") or the
 * full key ("lab/inputs/a.csv"). Returns the full key; another group's key is refused.
 */
export function datasetKeyOf(group: string, dataset: string): string {
  const prefix = `${group}/inputs/`;
  if (dataset.startsWith(prefix)) {
    checkRelativeName(dataset.slice(prefix.length), 'dataset', { folder: true });
    return dataset;
  }
  if (/^[^/]+\/inputs\//.test(dataset)) throw new KeyInvalidError(`dataset "${printable(dataset)}" is outside your group "${group}"; give a name under ${prefix}`);
  checkRelativeName(dataset, 'dataset', { folder: true });
  return `${prefix}${dataset}`;
}

/** A config as the web app names it: a name below `<group>/configs/` or the full key. */
export function configKeyOf(group: string, config: string): string {
  const prefix = `${group}/configs/`;
  const name = config.startsWith(prefix) ? config.slice(prefix.length) : config;
  if (name !== config || !/^[^/]+\/configs\//.test(config)) return groupObjectKey(group, 'configs', name);
  throw new KeyInvalidError(`config "${printable(config)}" is outside your group "${group}"; give a name under ${prefix}`);
}

/** Shows control characters as escapes, so an error message never carries them raw. */
export function printable(text: string): string {
  const shown = text.length > 200 ? `${text.slice(0, 200)}...` : text;
  return shown.replace(/[\u0000-\u001f\u007f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
