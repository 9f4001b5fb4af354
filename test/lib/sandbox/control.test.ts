/**
 * What `sandbox up` and `down` refuse or leave alone before any emulator starts: a folder that
 * holds someone's files, blueprints with errors, a folder of no blueprints, a `down` where
 * nothing runs. None of these may start a process or write into the folder.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { sandboxDown, sandboxStatus, sandboxUp } from '../../../lib/sandbox/control.js';
import { fixtureBlueprintsDir } from '../../e2e/helpers.js';

const usersDir = join(fixtureBlueprintsDir, '..', '..', '..', 'lib', 'sandbox', 'users');
const dirs: string[] = [];

function newDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'ncap-sandbox-control-'));
  dirs.push(dir);
  return dir;
}

afterEach(async () => {
  // A refusal that did not happen would have started a sandbox: stop it before removing the folder.
  for (const dir of dirs.splice(0)) {
    for (const sub of [join(dir, 'sandbox'), dir]) if (existsSync(sub)) await sandboxDown({ dir: sub }).catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }
}, 60_000);

describe('sandbox up', () => {
  it('refuses a folder that holds files of its own, and writes nothing into it', async () => {
    const dir = newDir();
    writeFileSync(join(dir, 'config'), '[default]\nregion = eu-west-1\n');
    mkdirSync(join(dir, 'bin'));

    await expect(sandboxUp({ dir, blueprintsDir: fixtureBlueprintsDir, usersDir, timeoutMs: 20_000 })).rejects.toThrow(
      new RegExp(`${dir} is not a sandbox folder: it holds bin, config.*Pass --dir with a new or empty folder`),
    );
    expect(readdirSync(dir).sort()).toEqual(['bin', 'config']);
    expect(readFileSync(join(dir, 'config'), 'utf8')).toBe('[default]\nregion = eu-west-1\n');
  });

  it('reports every blueprint error before it starts anything', async () => {
    const dir = join(newDir(), 'sandbox');
    const blueprints = newDir();
    mkdirSync(join(blueprints, 'bad'));
    writeFileSync(join(blueprints, 'bad', 'blueprint.json'), JSON.stringify({ schemaVersion: 1, name: 'bad', hardware: { instanceType: 7 } }));
    mkdirSync(join(blueprints, 'torn'));
    writeFileSync(join(blueprints, 'torn', 'blueprint.json'), '{"schemaVersion": 1,');

    const up = sandboxUp({ dir, blueprintsDir: blueprints, usersDir, timeoutMs: 20_000 });

    await expect(up).rejects.toMatchObject({ code: 'BlueprintInvalid' });
    await expect(up).rejects.toThrow(/bad\/blueprint\.json is invalid:[\s\S]*hardware\.instanceType[\s\S]*torn\/blueprint\.json is not valid JSON/);
    await expect(up).rejects.not.toThrow(/\n\s+at /);
    expect(existsSync(dir)).toBe(false);
  });

  it('refuses a blueprints folder with no blueprint in it, saying what it looks for', async () => {
    const dir = join(newDir(), 'sandbox');
    const notBlueprints = newDir();
    mkdirSync(join(notBlueprints, 'env'));

    await expect(sandboxUp({ dir, blueprintsDir: notBlueprints, usersDir, timeoutMs: 20_000 })).rejects.toThrow(
      `no blueprint in ${notBlueprints}: the sandbox deploys every ${notBlueprints}/<analysis>/blueprint.json; pass --blueprints with the folder that holds the analysis folders`,
    );
    expect(existsSync(dir)).toBe(false);
  });
});

describe('sandbox down and status', () => {
  it('down where nothing ever ran says so and creates nothing', async () => {
    const dir = join(newDir(), 'never');

    expect(await sandboxDown({ dir })).toEqual({ wasRunning: false, killedLeftovers: 0 });
    expect((await sandboxStatus({ dir })).running).toBe(false);
    expect(existsSync(dir)).toBe(false);
  });

  it('leave a state.json that is not a sandbox\'s as it is, and say the folder is not a sandbox folder', async () => {
    const dir = newDir();
    const theirs = `${JSON.stringify({ phase: 'ready', build: 42 })}\n`;
    writeFileSync(join(dir, 'state.json'), theirs);

    await expect(sandboxDown({ dir })).rejects.toThrow(`${join(dir, 'state.json')} is not a sandbox's state file`);
    await expect(sandboxStatus({ dir })).rejects.toThrow(/is not a sandbox's state file/);
    expect(readFileSync(join(dir, 'state.json'), 'utf8')).toBe(theirs);
  });
});
