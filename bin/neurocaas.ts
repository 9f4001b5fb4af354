#!/usr/bin/env node
import { runCli } from '../lib/cli/program.js';

const exitCode = await runCli({ argv: process.argv.slice(2), env: process.env, cwd: process.cwd() });
process.exitCode = exitCode;
