#!/usr/bin/env node
// The AWS SDK warns on stderr, once per process, that its releases after January 2027 will need
// Node 22: a notice for whoever maintains this package's Node version, not something a
// researcher can act on, and it breaks up the CLI's own output. The SDK's documented switch
// turns off that one warning (every other warning still shows); a value the caller set wins.
// Set before the CLI's modules load (a dynamic import): the SDK reads it when a client is made.
process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] ??= 'true';
const { runCli } = await import('../lib/cli/program.js');

const exitCode = await runCli({ argv: process.argv.slice(2), env: process.env, cwd: process.cwd() });
process.exitCode = exitCode;
