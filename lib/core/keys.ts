/**
 * The bucket key layout of DESIGN.md section 3, shared by every backend. All functions are pure
 * and reject keys that could escape their area: traversal, absolute keys, empty segments.
 */

export type KeyCheck = { ok: true } | { ok: false; reason: string };

export type GroupArea = 'inputs' | 'configs' | 'submissions' | 'results';

const MAX_KEY_BYTES = 1024;

/** A key usable on S3 and as a relative path on disk, with no way out of its folder. */
export function checkKey(key: string): KeyCheck {
  if (key.length === 0) return { ok: false, reason: 'key is empty' };
  if (Buffer.byteLength(key, 'utf8') > MAX_KEY_BYTES) return { ok: false, reason: `key "${key.slice(0, 40)}..." is longer than ${MAX_KEY_BYTES} bytes` };
  if (key.startsWith('/')) return { ok: false, reason: `key "${key}" is absolute; give it relative to the bucket, e.g. "mygroup/inputs/data.csv"` };
  if (key.includes('\\')) return { ok: false, reason: `key "${key}" contains a backslash; use "/" between folders` };
  // Control characters break logs and some filesystems.
  if (/[\u0000-\u001f\u007f]/.test(key)) return { ok: false, reason: `key ${JSON.stringify(key)} contains a control character` };
  const segments = key.split('/');
  for (const segment of segments) {
    if (segment === '') return { ok: false, reason: `key "${key}" has an empty folder name ("//" or a trailing "/")` };
    if (segment === '.' || segment === '..') return { ok: false, reason: `key "${key}" contains "${segment}"; paths may not step out of their folder` };
  }
  return { ok: true };
}

/**
 * Whether `key` can be written at all (S3 and the local folder tree): the rules of checkKey.
 * A write under a key failing this can never succeed, so callers decide before writing.
 */
export function isValidObjectKey(key: string): boolean {
  return checkKey(key).ok;
}

/** A valid key inside `<group>/<area>/` with at least one name below it. */
export function checkKeyInArea(key: string, group: string, area: GroupArea): KeyCheck {
  const basic = checkKey(key);
  if (!basic.ok) return basic;
  const segments = key.split('/');
  if (segments[0] !== group) {
    return { ok: false, reason: `key "${key}" is outside your group "${group}"; it must start with "${group}/${area}/"` };
  }
  if (segments[1] !== area || segments.length < 3) {
    return { ok: false, reason: `key "${key}" must be under "${group}/${area}/"` };
  }
  return { ok: true };
}

/**
 * Whether a dataset key names a folder: it ends in "/" and stands for every object under it
 * (fetched keeping their paths relative to the folder).
 */
export function isFolderKey(key: string): boolean {
  return key.endsWith('/');
}

/**
 * A dataset key inside `<group>/inputs/`: a file key as checkKeyInArea, or a folder key
 * (`<group>/inputs/<path>/`, the trailing "/" being the only empty segment allowed).
 */
export function checkDatasetKey(key: string, group: string): KeyCheck {
  if (!isFolderKey(key)) return checkKeyInArea(key, group, 'inputs');
  const folder = key.slice(0, -1);
  if (folder.endsWith('/')) return { ok: false, reason: `key "${key}" has an empty folder name ("//"); a folder dataset ends in exactly one "/"` };
  const check = checkKeyInArea(folder, group, 'inputs');
  return check.ok ? check : { ok: false, reason: check.reason.replace(JSON.stringify(folder), JSON.stringify(key)) };
}

/**
 * Submission trigger: `<group>/submissions/<user>/<name>submit.json` (per user, D1: the user
 * segment is what IAM proves) or the NeuroCAAS form `<group>/submissions/<name>submit.json`.
 */
export function parseSubmissionKey(key: string): { ok: true; group: string; user?: string; fileName: string } | { ok: false; reason: string } {
  const basic = checkKey(key);
  if (!basic.ok) return basic;
  const segments = key.split('/');
  if (segments.length < 3 || segments.length > 4 || segments[1] !== 'submissions' || !key.endsWith('submit.json')) {
    return { ok: false, reason: `key "${key}" is not a submission; submissions are "<group>/submissions/<user>/<name>submit.json" or "<group>/submissions/<name>submit.json"` };
  }
  const fileName = segments[segments.length - 1] as string;
  return segments.length === 4 ? { ok: true, group: segments[0] as string, user: segments[2] as string, fileName } : { ok: true, group: segments[0] as string, fileName };
}

/** Suffix of a cancel request object (D2). */
export const CANCEL_SUFFIX = '.cancel.json';

/** Cancel request: `<group>/submissions/<user>/<name>.cancel.json` (D2). */
export function parseCancelKey(key: string): { ok: true; group: string; user: string; fileName: string } | { ok: false; reason: string } {
  const basic = checkKey(key);
  if (!basic.ok) return basic;
  const segments = key.split('/');
  if (segments.length !== 4 || segments[1] !== 'submissions' || !key.endsWith(CANCEL_SUFFIX)) {
    return { ok: false, reason: `key "${key}" is not a cancel request; those are "<group>/submissions/<user>/<jobId>${CANCEL_SUFFIX}"` };
  }
  return { ok: true, group: segments[0] as string, user: segments[2] as string, fileName: segments[3] as string };
}

/** Where a submitter's cancel request for a job goes. */
export function cancelKey(group: string, user: string, jobId: string): string {
  return `${group}/submissions/${user}/${jobId}${CANCEL_SUFFIX}`;
}

/**
 * Receipt of a submission or cancel request (D3): `<group>/receipts/<user>/<file name>.json`;
 * `<group>/receipts/<file name>.json` when no submitter could be told from the key.
 */
export function receiptKey(group: string, user: string | undefined, fileName: string): string {
  return user === undefined ? `${group}/receipts/${fileName}.json` : `${group}/receipts/${user}/${fileName}.json`;
}

/** A user's budget view (D4), written by the protocol into the analysis bucket. */
export function budgetKey(group: string, user: string): string {
  return `${group}/budget/${user}.json`;
}

export function jobFolderName(analysis: string, jobId: string): string {
  return `job__${analysis}_${jobId}`;
}

/** Everything a job writes lives under this prefix (ends in "/"). */
export function jobPrefix(group: string, analysis: string, jobId: string): string {
  return `${group}/results/${jobFolderName(analysis, jobId)}/`;
}

export interface JobKeys {
  prefix: string;
  certificate: string;
  /** The job's config as validated JSON, for the runner and for the record. */
  config: string;
  provenance: string;
  end: string;
  datasetStatus(dataset: string): string;
  datasetLog(dataset: string): string;
  /** Outputs of one dataset; per dataset so that datasets never overwrite each other's files. */
  datasetResultsPrefix(dataset: string): string;
}

export function jobKeys(group: string, analysis: string, jobId: string): JobKeys {
  const prefix = jobPrefix(group, analysis, jobId);
  return {
    prefix,
    certificate: `${prefix}logs/certificate.txt`,
    config: `${prefix}config.json`,
    provenance: `${prefix}provenance.json`,
    end: `${prefix}end.txt`,
    datasetStatus: (dataset) => `${prefix}logs/DATASET_NAME-${dataset}_STATUS.txt.json`,
    datasetLog: (dataset) => `${prefix}logs/${dataset}.log`,
    datasetResultsPrefix: (dataset) => `${prefix}process_results/${dataset}/`,
  };
}

/**
 * Dataset name for an input key: its path below `<group>/inputs/`, made one safe file name by a
 * reversible escape: `%` -> `%25`, `/` -> `%2F`, a leading `.` -> `%2E`, control characters and
 * `\` -> `%XX`. Reversible, so two inputs never share a name (`a/b.csv` is `a%2Fb.csv`,
 * `a__b.csv` stays `a__b.csv`); plain names stay as they are (`a.csv` is `a.csv`). A folder
 * dataset keeps its trailing slash, escaped (`session1/` is `session1%2F`), so it never shares a
 * name with a file `session1`.
 */
export function datasetNameOf(inputKey: string): string {
  return escapeDatasetName(inputKey.split('/').slice(2).join('/'));
}

/** The escape of `datasetNameOf` for a path below `inputs/`. */
export function escapeDatasetName(path: string): string {
  // A leading dot would hide the dataset's files (and `.ncap-*` is reserved for the platform).
  const escaped = path.replace(/[%/\\\u0000-\u001f\u007f]/g, (ch) => `%${ch.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`);
  return escaped.startsWith('.') ? `%2E${escaped.slice(1)}` : escaped;
}

/** The path below `inputs/` a dataset name stands for (the inverse of `escapeDatasetName`). */
export function unescapeDatasetName(name: string): string {
  return name.replace(/%([0-9A-F]{2})/g, (_, hex: string) => String.fromCharCode(Number.parseInt(hex, 16)));
}

/**
 * Names a chain's hand-off uses in the next analysis's bucket start with this, in
 * `<group>/inputs/`, `<group>/configs/` and `<group>/submissions/<user>/`. They are the
 * protocol's: IAM lets only the protocols write them (researchers are denied), so nobody, not
 * even a member of the same group, can plant a chain stage's inputs, config or submission.
 */
export const CHAIN_NAME_PREFIX = 'chain-';

/** Where a chain stage's hand-off writes, for the job `parentJobId` of `user` in `group`. */
export function chainKeys(group: string, user: string, parentJobId: string) {
  return {
    /** The config the next stage receives (the blueprint's followOn.config). */
    config: `${group}/configs/${CHAIN_NAME_PREFIX}${parentJobId}.json`,
    /** One result file of a dataset of the job before, as an input of the next stage. */
    input: (dataset: string, file: string) => `${group}/inputs/${CHAIN_NAME_PREFIX}${parentJobId}/${dataset}/${file}`,
    /** The submission of the next stage's job `index`, under the submitter's own prefix (D1). */
    submission: (index: number) => `${group}/submissions/${user}/${CHAIN_NAME_PREFIX}${parentJobId}-${index}-submit.json`,
  };
}

/**
 * True when a researcher's key is one only the protocol writes (a chain hand-off name): the
 * client refuses it with the reason rather than leave it to IAM's AccessDenied.
 */
export function isChainReservedKey(key: string): boolean {
  const [group, area, ...rest] = key.split('/');
  if (group === undefined || rest.length === 0) return false;
  if (area === 'inputs' || area === 'configs') return (rest[0] ?? '').startsWith(CHAIN_NAME_PREFIX);
  if (area === 'submissions') return rest.length >= 2 && (rest[1] ?? '').startsWith(CHAIN_NAME_PREFIX);
  return false;
}
