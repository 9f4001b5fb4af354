/**
 * A small, pure evaluator of IAM identity policies, for tests. No AWS IAM policy simulator is
 * reachable from the test machines (tests never leave 127.0.0.1), so user policies are checked
 * against this model of IAM's evaluation logic instead:
 *
 * - an explicit Deny in any matching statement wins, then any matching Allow, else deny;
 * - Action matches case-insensitively, Resource case-sensitively, both with `*` and `?`;
 * - conditions: every operator and every key of a statement must hold, any value of a key
 *   may match; a key missing from the request fails StringEquals and StringLike, satisfies
 *   the negated StringNotEquals and StringNotLike (as in IAM), and is what `Null: true` asks.
 *
 * Anything outside that subset (NotAction, NotResource, Principal, policy variables,
 * ...IfExists, ForAnyValue:, other operators) throws: a policy cannot pass by being misread.
 */

export interface PolicyDocument {
  readonly Version?: string;
  readonly Statement: PolicyStatement | readonly PolicyStatement[];
}

export type ConditionBlock = Readonly<Record<string, Readonly<Record<string, string | readonly string[]>>>>;

export interface PolicyStatement {
  readonly Sid?: string;
  readonly Effect: 'Allow' | 'Deny';
  readonly Action: string | readonly string[];
  readonly Resource: string | readonly string[];
  readonly Condition?: ConditionBlock;
}

export interface AccessRequest {
  /** e.g. `s3:GetObject` */
  readonly action: string;
  /** e.g. `arn:aws:s3:::bucket/lab/inputs/x` */
  readonly resource: string;
  /** Condition keys of the request, e.g. `{ 's3:prefix': 'lab/' }`. */
  readonly context?: Readonly<Record<string, string>>;
}

export type Decision = 'Allow' | 'ExplicitDeny' | 'ImplicitDeny';

export interface Evaluation {
  readonly decision: Decision;
  /** Sids (or `#<index>`) of the statements that decided: the denying ones, else the allowing ones. */
  readonly decidingStatements: readonly string[];
}

const KNOWN_STATEMENT_KEYS = new Set(['Sid', 'Effect', 'Action', 'Resource', 'Condition']);
const OPERATORS = new Set(['StringEquals', 'StringNotEquals', 'StringLike', 'StringNotLike', 'Null']);

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
 */
export function wildcardMatch(pattern: string, value: string, options: { caseInsensitive?: boolean } = {}): boolean {
  const source = pattern
    .split('')
    .map((char) => (char === '*' ? '.*' : char === '?' ? '.' : char.replace(/[\\^$.|+()[\]{}]/g, '\\$&')))
    .join('');
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
  for (const value of [...asList(statement.Action), ...asList(statement.Resource)]) {
    if (typeof value !== 'string') throw new Error(`Action and Resource must be resolved strings, got ${JSON.stringify(value)}`);
    if (value.includes('${')) throw new Error(`policy variables are not supported: ${value}`);
  }
  for (const operator of Object.keys(statement.Condition ?? {})) {
    if (!OPERATORS.has(operator)) throw new Error(`condition operator ${operator} is not supported by this evaluator`);
  }
}

function statementApplies(statement: PolicyStatement, request: AccessRequest): boolean {
  const actionMatches = asList(statement.Action).some((pattern) => wildcardMatch(pattern, request.action, { caseInsensitive: true }));
  const resourceMatches = asList(statement.Resource).some((pattern) => wildcardMatch(pattern, request.resource));
  return actionMatches && resourceMatches && conditionsHold(statement.Condition ?? {}, request.context ?? {});
}

function conditionsHold(condition: ConditionBlock, context: Readonly<Record<string, string>>): boolean {
  // Condition keys are case-insensitive.
  const lookup = new Map(Object.entries(context).map(([key, value]) => [key.toLowerCase(), value]));
  return Object.entries(condition).every(([operator, keys]) =>
    Object.entries(keys).every(([key, expected]) => operatorHolds(operator, lookup.get(key.toLowerCase()), asList(expected))),
  );
}

function operatorHolds(operator: string, actual: string | undefined, expected: readonly string[]): boolean {
  switch (operator) {
    case 'Null':
      return expected.some((flag) => (flag === 'true') === (actual === undefined));
    case 'StringEquals':
      return actual !== undefined && expected.includes(actual);
    case 'StringNotEquals':
      return actual === undefined || !expected.includes(actual);
    case 'StringLike':
      return actual !== undefined && expected.some((pattern) => wildcardMatch(pattern, actual));
    case 'StringNotLike':
      return actual === undefined || !expected.some((pattern) => wildcardMatch(pattern, actual));
    default:
      throw new Error(`condition operator ${operator} is not supported by this evaluator`);
  }
}
