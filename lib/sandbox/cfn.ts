/**
 * Enough of CloudFormation's intrinsic functions to turn a synthesized template's values into
 * concrete strings on the emulator: Ref, Fn::GetAtt, Fn::Join, Fn::Sub, Fn::Select, Fn::Split,
 * Fn::ImportValue, Fn::GetAZs, Fn::If with Fn::Equals/Not/And/Or conditions, Fn::FindInMap and
 * the pseudo parameters. Pure: what a reference stands for comes in through `ResolveContext`.
 */
import { NeuroCaasError } from '../core/errors.js';

/** A value cannot be resolved (unknown function, missing reference); the resource needing it is skipped. */
export class TemplateValueError extends NeuroCaasError {
  constructor(message: string) {
    super('TemplateValue', message);
  }
}

/** CloudFormation's AWS::NoValue: the property it stands for is dropped. */
export const NO_VALUE = Symbol('AWS::NoValue');

export interface ResolveContext {
  stackName: string;
  region: string;
  accountId: string;
  /** `Ref` of a resource or parameter; undefined when unknown (not created yet). */
  ref(logicalId: string): string | undefined;
  /** `Fn::GetAtt`; undefined when unknown. */
  attribute(logicalId: string, attribute: string): string | undefined;
  /** An export of an earlier stack. */
  importValue(exportName: string): string | undefined;
  conditions?: Readonly<Record<string, unknown>>;
  mappings?: Readonly<Record<string, Record<string, Record<string, unknown>>>>;
}

const PSEUDO = (context: ResolveContext): Record<string, string | typeof NO_VALUE> => ({
  'AWS::Region': context.region,
  'AWS::AccountId': context.accountId,
  'AWS::Partition': 'aws',
  'AWS::URLSuffix': 'amazonaws.com',
  'AWS::StackName': context.stackName,
  'AWS::StackId': `arn:aws:cloudformation:${context.region}:${context.accountId}:stack/${context.stackName}/sandbox`,
  'AWS::NoValue': NO_VALUE,
});

/** The value with every intrinsic function replaced by what it evaluates to. */
export function resolveValue(value: unknown, context: ResolveContext): unknown {
  if (Array.isArray(value)) return value.map((item) => resolveValue(item, context)).filter((item) => item !== NO_VALUE);
  if (value === null || typeof value !== 'object') return value;
  const entries = Object.entries(value as Record<string, unknown>);
  const only = entries.length === 1 ? entries[0] : undefined;
  if (only && (only[0] === 'Ref' || only[0].startsWith('Fn::') || only[0] === 'Condition')) return intrinsic(only[0], only[1], context);
  const out: Record<string, unknown> = {};
  for (const [key, item] of entries) {
    const resolved = resolveValue(item, context);
    if (resolved !== NO_VALUE) out[key] = resolved;
  }
  return out;
}

/** Like resolveValue, but the result must be a string. */
export function resolveString(value: unknown, context: ResolveContext, where: string): string {
  const resolved = resolveValue(value, context);
  if (typeof resolved === 'string') return resolved;
  if (typeof resolved === 'number' || typeof resolved === 'boolean') return String(resolved);
  throw new TemplateValueError(`${where} must resolve to a string, got ${JSON.stringify(resolved)}`);
}

function intrinsic(name: string, argument: unknown, context: ResolveContext): unknown {
  switch (name) {
    case 'Ref': {
      const target = String(argument);
      const pseudo = PSEUDO(context)[target];
      if (pseudo !== undefined) return pseudo;
      const ref = context.ref(target);
      if (ref === undefined) throw new TemplateValueError(`Ref ${target}: no such resource or parameter (or it was not created)`);
      return ref;
    }
    case 'Fn::GetAtt': {
      const [logicalId, attribute] = Array.isArray(argument) ? argument.map(String) : String(argument).split(/\.(.*)/s);
      const got = context.attribute(String(logicalId), String(attribute));
      if (got === undefined) throw new TemplateValueError(`Fn::GetAtt ${logicalId}.${attribute}: unknown (the resource was not created, or has no such attribute)`);
      return got;
    }
    case 'Fn::Join': {
      const [delimiter, parts] = argument as [string, unknown];
      const list = resolveValue(parts, context);
      if (!Array.isArray(list)) throw new TemplateValueError(`Fn::Join needs a list, got ${JSON.stringify(list)}`);
      return list.map((part) => stringOf(part, 'Fn::Join part')).join(delimiter);
    }
    case 'Fn::Select': {
      const [index, list] = argument as [unknown, unknown];
      const items = resolveValue(list, context);
      const at = Number(resolveValue(index, context));
      if (!Array.isArray(items) || !Number.isInteger(at) || at < 0 || at >= items.length) {
        throw new TemplateValueError(`Fn::Select ${at} out of ${JSON.stringify(items)}`);
      }
      return items[at];
    }
    case 'Fn::Split': {
      const [delimiter, source] = argument as [string, unknown];
      return stringOf(resolveValue(source, context), 'Fn::Split source').split(delimiter);
    }
    case 'Fn::ImportValue': {
      const exportName = stringOf(resolveValue(argument, context), 'Fn::ImportValue name');
      const got = context.importValue(exportName);
      if (got === undefined) throw new TemplateValueError(`Fn::ImportValue ${exportName}: no stack exports it`);
      return got;
    }
    case 'Fn::GetAZs':
      return ['a', 'b', 'c'].map((zone) => `${context.region}${zone}`);
    case 'Fn::Sub':
      return substitute(argument, context);
    case 'Fn::If': {
      const [condition, whenTrue, whenFalse] = argument as [string, unknown, unknown];
      return resolveValue(conditionHolds(condition, context) ? whenTrue : whenFalse, context);
    }
    case 'Fn::Equals': {
      const [a, b] = argument as [unknown, unknown];
      return JSON.stringify(resolveValue(a, context)) === JSON.stringify(resolveValue(b, context));
    }
    case 'Fn::Not':
      return !truthy(resolveValue((argument as unknown[])[0], context));
    case 'Fn::And':
      return (argument as unknown[]).every((item) => truthy(resolveValue(item, context)));
    case 'Fn::Or':
      return (argument as unknown[]).some((item) => truthy(resolveValue(item, context)));
    case 'Condition':
      return conditionHolds(String(argument), context);
    case 'Fn::FindInMap': {
      const [map, top, second] = (argument as unknown[]).map((item) => stringOf(resolveValue(item, context), 'Fn::FindInMap key'));
      const found = context.mappings?.[map as string]?.[top as string]?.[second as string];
      if (found === undefined) throw new TemplateValueError(`Fn::FindInMap ${map}.${top}.${second}: no such mapping`);
      return found;
    }
    default:
      throw new TemplateValueError(`${name} is not supported by the sandbox's template interpreter`);
  }
}

function substitute(argument: unknown, context: ResolveContext): string {
  const [template, variables] = typeof argument === 'string' ? [argument, {}] : (argument as [string, Record<string, unknown>]);
  return template.replace(/\$\{([^}]+)\}/g, (whole, name: string) => {
    // ${!Literal} stays literal (without the !), as in CloudFormation.
    if (name.startsWith('!')) return `\${${name.slice(1)}}`;
    if (variables && Object.hasOwn(variables, name)) return stringOf(resolveValue(variables[name], context), `Fn::Sub variable ${name}`);
    if (name.includes('.')) return stringOf(intrinsic('Fn::GetAtt', name, context), `Fn::Sub ${whole}`);
    return stringOf(intrinsic('Ref', name, context), `Fn::Sub ${whole}`);
  });
}

function conditionHolds(name: string, context: ResolveContext): boolean {
  const definition = context.conditions?.[name];
  if (definition === undefined) throw new TemplateValueError(`condition ${name} is not defined`);
  return truthy(resolveValue(definition, context));
}

function truthy(value: unknown): boolean {
  return value === true || value === 'true';
}

function stringOf(value: unknown, where: string): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  throw new TemplateValueError(`${where} must be a string, got ${JSON.stringify(value)}`);
}

/** Logical ids a value refers to (Ref, Fn::GetAtt, Fn::Sub), for ordering resources. */
export function referencedIds(value: unknown, into: Set<string> = new Set()): Set<string> {
  if (Array.isArray(value)) {
    for (const item of value) referencedIds(item, into);
  } else if (value !== null && typeof value === 'object') {
    for (const [key, item] of Object.entries(value as Record<string, unknown>)) {
      if (key === 'Ref' && typeof item === 'string' && !item.startsWith('AWS::')) into.add(item);
      else if (key === 'Fn::GetAtt') into.add(Array.isArray(item) ? String(item[0]) : String(item).split('.')[0] as string);
      else if (key === 'Fn::Sub') {
        const template = typeof item === 'string' ? item : String((item as unknown[])[0]);
        for (const match of template.matchAll(/\$\{([^}!][^}.]*)/g)) if (!match[1]?.startsWith('AWS::')) into.add(match[1] as string);
        if (Array.isArray(item)) referencedIds(item[1], into);
      } else referencedIds(item, into);
    }
  }
  return into;
}
