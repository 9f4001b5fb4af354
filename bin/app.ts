#!/usr/bin/env node
/**
 * The CDK app (cdk.json runs `node dist/bin/app.js`): a platform stack, a stack per
 * `blueprints/<analysis>/blueprint.json` and a users stack from `users/*.json`; cdk-nag checks
 * every synth, and the web interface (NeurocaasWeb, from the built app in dist/web) unless
 * `-c web=false`. Context keys: see CONTEXT in lib/infra/app.ts.
 */
import { NeuroCaasError } from '../lib/core/errors.js';
import { buildNeurocaasApp, CONTEXT, createNeurocaasApp, webFlagOf } from '../lib/infra/app.js';

const app = createNeurocaasApp();
try {
  buildNeurocaasApp(app, { web: webFlagOf(app.node.tryGetContext(CONTEXT.web), true) });
} catch (error) {
  // Invalid blueprints and profiles are the developer's to fix: say what, not where in our code.
  if (!(error instanceof NeuroCaasError)) throw error;
  process.stderr.write(`${error.code}: ${error.message}\n`);
  process.exit(1);
}
