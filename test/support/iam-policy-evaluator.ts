/**
 * A small, pure evaluator of IAM identity policies, for tests. No AWS IAM policy simulator is
 * reachable from the test machines (tests never leave 127.0.0.1), so user policies are checked
 * against this model of IAM's evaluation logic instead:
 *
 * - an explicit Deny in any matching statement wins, then any matching Allow, else deny;
 * - Action matches case-insensitively, Resource case-sensitively, both with `*` and `?`;
 * - conditions: every operator and every key of a statement must hold, any value of a key
 *   may match; a key missing from the request fails StringEquals and StringLike, satisfies
 *   the negated StringNotEquals and StringNotLike (as in IAM), and is what `Null: true` asks;
 * - policy variables (`${aws:username}`, `${aws:PrincipalTag/neurocaas-group}`, any key) in
 *   Resource and in condition values are replaced by the request's value of that key, taken
 *   literally (a `*` in a tag value is no wildcard); a variable the request lacks makes that
 *   pattern match nothing, as in IAM. `${*}`, `${?}` and `${$}` stand for the characters.
 *
 * - trust (role) policies: `Principal` is matched against the request's principal (exact, or
 *   `*`); a statement with a Principal evaluated without one throws. Multi-valued keys (such as
 *   `cognito-identity.amazonaws.com:amr`) are lists in the context and need `ForAnyValue:`
 *   (StringEquals, StringLike): any value of the request matching any of the policy's; a
 *   missing key fails. A list given to a single-valued operator throws.
 * - session tags: a role session's principal tags come from sts:TagSession at assume time
 *   (for Cognito identity pools, its principal-tag mapping of token claims); pass them as
 *   `aws:PrincipalTag/<key>` like a user's tags.
 *
 * Anything outside that subset (NotAction, NotResource, NotPrincipal, variables with defaults,
 * ...IfExists, ForAllValues:, other operators) throws: a policy cannot pass by being misread.
 */

export interface PolicyDocument {
  readonly Version?: string;
  readonly Statement: PolicyStatement | readonly PolicyStatement[];
}

export type ConditionBlock = Readonly<Record<string, Readonly<Record<string, string | readonly string[]>>>>;

/** `{ Federated: 'cognito-identity.amazonaws.com' }`, `{ Service: ... }`, `{ AWS: ... }`, or `*`. */
export type PrincipalBlock = '*' | Readonly<Record<string, string | readonly string[]>>;

export interface PolicyStatement {
  readonly Sid?: string;
  readonly Effect: 'Allow' | 'Deny';
  readonly Principal?: PrincipalBlock;
  readonly Action: string | readonly string[];
  /** Absent in a trust policy (the role is the resource). */
  readonly Resource?: string | readonly string[];
  readonly Condition?: ConditionBlock;
}

export interface AccessRequest {
  /** e.g. `s3:GetObject` */
  readonly action: string;
  /** e.g. `arn:aws:s3:::bucket/lab/inputs/x` */
  readonly resource: string;
  /**
   * Condition keys of the request, e.g. `{ 's3:prefix': 'lab/' }`; also the values of policy
   * variables: `{ 'aws:username': 'ada', 'aws:PrincipalTag/neurocaas-group': 'lab' }`.
   */
  readonly context?: Readonly<Record<string, string | readonly string[]>>;
  /** Who asks, for trust policies: e.g. `{ Federated: 'cognito-identity.amazonaws.com' }`. */
  readonly principal?: Readonly<Record<string, string>>;
}

export type Decision = 'Allow' | 'ExplicitDeny' | 'ImplicitDeny';

export interface Evaluation {
  readonly decision: Decision;
  /** Sids (or `#<index>`) of the statements that decided: the denying ones, else the allowing ones. */
  readonly decidingStatements: readonly string[];
}

const KNOWN_STATEMENT_KEYS = new Set(['Sid', 'Effect', 'Principal', 'Action', 'Resource', 'Condition']);
const OPERATORS = new Set(['StringEquals', 'StringNotEquals', 'StringLike', 'StringNotLike', 'Null', 'ForAnyValue:StringEquals', 'ForAnyValue:StringLike']);

/** IAM's decision for one request against a set of identity policies. */
export function evaluate(policies: readonly PolicyDocument[], request: AccessRequest): Evaluation {
  const allows: string[] = [];
  const denies: string[] = [];
  policies.forEach((policy, policyIndex) => {
    statementsOf(policy).forEach((statement, statementIndex) => {
      checkSupported(statement);
      if (!statementApplies(statement, request)) return;
      const name = statement.Sid ?? `#${policyIndex}.${statementIndex}`;
      (statement.Effect === 'Deny' ? denies : allows).push(name);
    });
  });
  if (denies.length > 0) return { decision: 'ExplicitDeny', decidingStatements: denies };
  if (allows.length > 0) return { decision: 'Allow', decidingStatements: allows };
  return { decision: 'ImplicitDeny', decidingStatements: [] };
}

/** True when the request is allowed. */
export function isAllowed(policies: readonly PolicyDocument[], request: AccessRequest): boolean {
  return evaluate(policies, request).decision === 'Allow';
}

/**
 * IAM's wildcard match: `*` is any run of characters (also none, also `/`), `?` exactly one.
 * With `variables`, `${key}` is replaced by the key's value taken literally; an unknown key
 * makes the pattern match nothing.
 */
export function wildcardMatch(
  pattern: string,
  value: string,
  options: { caseInsensitive?: boolean; variables?: (key: string) => string | undefined } = {},
): boolean {
  const escape = (text: string) => text.replace(/[\\^$.|+()[\]{}*?]/g, '\\$&');
  let source = '';
  for (let index = 0; index < pattern.length; index += 1) {
    const char = pattern[index] as string;
    if (char === '$' && pattern[index + 1] === '{' && options.variables) {
      const end = pattern.indexOf('}', index);
      if (end < 0) throw new Error(`unterminated policy variable in ${pattern}`);
      const key = pattern.slice(index + 2, end);
      index = end;
      if (key === '*' || key === '?' || key === '$') {
        source += escape(key);
        continue;
      }
      if (key.includes(',')) throw new Error(`policy variables with a default are not supported: \${${key}}`);
      const resolved = options.variables(key);
      if (resolved === undefined) return false;
      source += escape(resolved);
      continue;
    }
    source += char === '*' ? '.*' : char === '?' ? '.' : escape(char);
  }
  return new RegExp(`^${source}$`, options.caseInsensitive ? 'is' : 's').test(value);
}

function statementsOf(policy: PolicyDocument): readonly PolicyStatement[] {
  const statements = policy.Statement;
  return Array.isArray(statements) ? statements : [statements as PolicyStatement];
}

function asList(value: string | readonly string[]): readonly string[] {
  return typeof value === 'string' ? [value] : value;
}

function checkSupported(statement: PolicyStatement): void {
  for (const key of Object.keys(statement)) {
    if (!KNOWN_STATEMENT_KEYS.has(key)) throw new Error(`policy element ${key} is not supported by this evaluator`);
  }
  if (statement.Effect !== 'Allow' && statement.Effect !== 'Deny') throw new Error(`Effect must be Allow or Deny, got ${String(statement.Effect)}`);
  for (const value of [...asList(statement.Action), ...asList(statement.Resource ?? [])]) {
    if (typeof value !== 'string') throw new Error(`Action and Resource must be resolved strings, got ${JSON.stringify(value)}`);
  }
  for (const operator of Object.keys(statement.Condition ?? {})) {
    if (!OPERATORS.has(operator)) throw new Error(`condition operator ${operator} is not supported by this evaluator`);
  }
}

function principalMatches(block: PrincipalBlock, principal: Readonly<Record<string, string>> | undefined): boolean {
  if (principal === undefined) throw new Error('a statement with a Principal (a trust policy) needs the request\'s principal');
  if (block === '*') return true;
  return Object.entries(block).some(([type, values]) => {
    const asked = principal[type];
    return asked !== undefined && asList(values).some((value) => value === '*' || value === asked);
  });
}

function statementApplies(statement: PolicyStatement, request: AccessRequest): boolean {
  // Condition keys (and so variable names) are case-insensitive.
  const lookup = new Map(Object.entries(request.context ?? {}).map(([key, value]) => [key.toLowerCase(), value]));
  const variables = (key: string) => {
    const value = lookup.get(key.toLowerCase());
    if (value !== undefined && typeof value !== 'string') throw new Error(`policy variable \${${key}} names a multi-valued key`);
    return value;
  };
  const actionMatches = asList(statement.Action).some((pattern) => wildcardMatch(pattern, request.action, { caseInsensitive: true }));
  // A trust policy has no Resource: the role it belongs to is the resource.
  const resourceMatches = statement.Resource === undefined ? statement.Principal !== undefined : asList(statement.Resource).some((pattern) => wildcardMatch(pattern, request.resource, { variables }));
  const principalOk = statement.Principal === undefined || principalMatches(statement.Principal, request.principal);
  return actionMatches && resourceMatches && principalOk && conditionsHold(statement.Condition ?? {}, lookup, variables);
}

function conditionsHold(condition: ConditionBlock, lookup: ReadonlyMap<string, string | readonly string[]>, variables: (key: string) => string | undefined): boolean {
  return Object.entries(condition).every(([operator, keys]) =>
    Object.entries(keys).every(([key, expected]) => {
      const actual = lookup.get(key.toLowerCase());
      if (operator.startsWith('ForAnyValue:')) {
        // Any value of the request's (multi-valued) key against the single-valued operator.
        const single = operator.slice('ForAnyValue:'.length);
        return actual !== undefined && asList(actual).some((value) => operatorHolds(single, value, asList(expected), variables));
      }
      if (actual !== undefined && typeof actual !== 'string') throw new Error(`condition key ${key} is multi-valued in the request: use ForAnyValue:${operator}`);
      return operatorHolds(operator, actual, asList(expected), variables);
    }),
  );
}

/** A condition value with its policy variables filled in; undefined when one is missing. */
function substituted(value: string, variables: (key: string) => string | undefined): string | undefined {
  let missing = false;
  const result = value.replace(/\$\{([^}]*)\}/g, (_match, key: string) => {
    if (key === '*' || key === '?' || key === '$') return key;
    if (key.includes(',')) throw new Error(`policy variables with a default are not supported: \${${key}}`);
    const resolved = variables(key);
    if (resolved === undefined) missing = true;
    return resolved ?? '';
  });
  return missing ? undefined : result;
}

function operatorHolds(operator: string, actual: string | undefined, expected: readonly string[], variables: (key: string) => string | undefined): boolean {
  if (operator === 'StringLike' || operator === 'StringNotLike') {
    // Wildcards of the policy stay wildcards; the variables' values are literal.
    const matches = actual !== undefined && expected.some((pattern) => wildcardMatch(pattern, actual, { variables }));
    return operator === 'StringLike' ? matches : actual === undefined || !matches;
  }
  if (operator !== 'Null') {
    const values = expected.map((value) => substituted(value, variables)).filter((value): value is string => value !== undefined);
    if (operator === 'StringEquals') return actual !== undefined && values.includes(actual);
    if (operator === 'StringNotEquals') return actual === undefined || !values.includes(actual);
  }
  switch (operator) {
    case 'Null':
      return expected.some((flag) => (flag === 'true') === (actual === undefined));
    default:
      throw new Error(`condition operator ${operator} is not supported by this evaluator`);
  }
}
