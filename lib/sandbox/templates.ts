/**
 * The deployment's CloudFormation templates, synthesized in-process from the same CDK app
 * `npx cdk deploy` uses (lib/infra/app.ts), with the sandbox's blueprints and users.
 */
import { buildNeurocaasApp, createNeurocaasApp } from '../infra/app.js';
import type { StackTemplate } from './provision.js';

export interface SynthesizeOptions {
  blueprintsDir: string;
  usersDir: string;
  /** Where the cloud assembly goes. */
  outdir: string;
  /** The image every analysis's machines get (one the emulator knows). */
  amiId: string;
  /** Analyses to give `amiId`: all of them (their blueprints' own AMIs do not exist in the emulator). */
  analyses: readonly string[];
}

/** The templates in deployment order: platform, one per analysis, users. */
export function synthesizeTemplates(options: SynthesizeOptions): StackTemplate[] {
  const app = createNeurocaasApp({
    outdir: options.outdir,
    context: {
      // Nothing is bundled: the sandbox runs the protocols from this package, in-process.
      'aws:cdk:bundling-stacks': [],
      ...Object.fromEntries(options.analyses.map((analysis) => [`ami:${analysis}`, options.amiId])),
    },
  });
  // cdk-nag checks belong to `cdk synth`; the sandbox takes the templates as they are.
  const stacks = buildNeurocaasApp(app, { blueprintsDir: options.blueprintsDir, usersDir: options.usersDir, nagChecks: false });
  const assembly = app.synth();
  return [stacks.platform, ...stacks.analyses, ...stacks.usersStacks].map((stack) => ({
    stackName: stack.stackName,
    template: assembly.getStackByName(stack.stackName).template as StackTemplate['template'],
  }));
}
