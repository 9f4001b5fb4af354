/**
 * THROWAWAY development stub of the D10 API (in memory), used only to look at the app while the
 * real `neurocaas ui` was being written. The browser tests run against the real server.
 * Run: npx esbuild test/web/support/dev-stub.ts --bundle --platform=node --format=esm --packages=external --outfile=/tmp/stub.mjs && node /tmp/stub.mjs 5199
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { readFileSync, existsSync } from 'node:fs';
import { join, extname } from 'node:path';
import Ajv2020 from 'ajv/dist/2020.js';
import yaml from 'js-yaml';

const repo = process.cwd();
const bp = JSON.parse(readFileSync(join(repo, 'blueprints/kalman-smoother/blueprint.json'), 'utf8'));
const readme = readFileSync(join(repo, 'blueprints/kalman-smoother/README.md'), 'utf8');
const ajv = new (Ajv2020 as unknown as typeof import('ajv').default)({ allErrors: true, strict: false });
const validate = ajv.compile(bp.config.jsonSchema);
const objects = new Map<string, { body: Buffer; at: string }>();
const uploads = new Map<string, { name: string; kind: string; parts: Map<number, Buffer> }>();
const jobs: any[] = [];
const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="400" height="200"><rect width="400" height="200" fill="#fff"/><polyline fill="none" stroke="#0b57a4" stroke-width="2" points="0,150 50,120 100,130 150,80 200,90 250,40 300,60 350,30 400,50"/></svg>`;

async function body(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}
function json(res: ServerResponse, status: number, value: unknown) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(value));
}
function fieldsOf(errors: any[] | null | undefined) {
  return (errors ?? []).map((e) => ({ path: e.instancePath || (e.params?.missingProperty ? `/${e.params.missingProperty}` : ''), message: e.message ?? 'invalid' }));
}
const list = (kind: string) => [...objects.entries()].filter(([k]) => k.startsWith(`labA/${kind}/`)).map(([key, o]) => ({ key, name: key.slice(`labA/${kind}/`.length), sizeBytes: o.body.length, lastModified: o.at }));

createServer(async (req, res) => {
  const url = new URL(req.url ?? '/', 'http://x');
  const p = url.pathname;
  let m: RegExpMatchArray | null;
  if (p === '/api/session') return json(res, 200, { backend: 'local', user: 'alice', group: 'labA' });
  if (p === '/api/analyses') return json(res, 200, [{ name: bp.name, description: bp.description, hardware: bp.hardware, perDatasetUsd: 0.056, readme, configSchema: bp.config.jsonSchema }]);
  if ((m = p.match(/^\/api\/analyses\/[^/]+\/objects\/exists$/))) {
    const o = objects.get(`labA/${url.searchParams.get('kind')}/${url.searchParams.get('name')}`);
    return json(res, 200, { exists: !!o, sameContent: false });
  }
  if ((m = p.match(/^\/api\/analyses\/[^/]+\/objects$/))) {
    if (req.method === 'PUT') {
      const key = `labA/${url.searchParams.get('kind')}/${url.searchParams.get('name')}`;
      if (objects.has(key)) return json(res, 409, { error: { code: 'ObjectExists', message: `${key} exists` } });
      objects.set(key, { body: await body(req), at: new Date().toISOString() });
      return json(res, 201, { key });
    }
    return json(res, 200, list(url.searchParams.get('kind') ?? 'inputs'));
  }
  if ((m = p.match(/^\/api\/analyses\/[^/]+\/uploads$/))) {
    const b = JSON.parse((await body(req)).toString());
    const id = `u${uploads.size + 1}`;
    uploads.set(id, { name: b.name, kind: b.kind, parts: new Map() });
    return json(res, 200, { uploadId: id, key: `labA/${b.kind}/${b.name}` });
  }
  if ((m = p.match(/^\/api\/uploads\/([^/]+)\/parts\/(\d+)$/))) {
    uploads.get(m[1]!)!.parts.set(Number(m[2]), await body(req));
    res.writeHead(200, { etag: `"p${m[2]}"` });
    return res.end();
  }
  if ((m = p.match(/^\/api\/uploads\/([^/]+)\/parts$/))) return json(res, 200, [...uploads.get(m[1]!)!.parts.entries()].map(([n, b]) => ({ PartNumber: n, Size: b.length, ETag: `"p${n}"` })));
  if ((m = p.match(/^\/api\/uploads\/([^/]+)\/complete$/))) {
    const u = uploads.get(m[1]!)!;
    const key = `labA/${u.kind}/${u.name}`;
    objects.set(key, { body: Buffer.concat([...u.parts.entries()].sort((a, b) => a[0] - b[0]).map((e) => e[1])), at: new Date().toISOString() });
    return json(res, 201, { key });
  }
  if ((m = p.match(/^\/api\/analyses\/[^/]+\/configs\/validate$/))) {
    const b = JSON.parse((await body(req)).toString());
    const config = b.format === 'yaml' ? yaml.load(b.text) : JSON.parse(b.text);
    return validate(config) ? json(res, 200, { ok: true, config }) : json(res, 200, { ok: false, fields: fieldsOf(validate.errors) });
  }
  if ((m = p.match(/^\/api\/analyses\/[^/]+\/configs$/))) {
    const b = JSON.parse((await body(req)).toString());
    if (!validate(b.config)) return json(res, 400, { error: { code: 'ConfigInvalid', message: 'config does not fit the schema', fields: fieldsOf(validate.errors) } });
    const key = `labA/configs/${b.name}`;
    objects.set(key, { body: Buffer.from(JSON.stringify(b.config)), at: new Date().toISOString() });
    return json(res, 201, { key });
  }
  if ((m = p.match(/^\/api\/analyses\/[^/]+\/estimate$/))) {
    const b = JSON.parse((await body(req)).toString());
    return json(res, 200, { reservedUsd: 0.056 * b.datasets.length, perDatasetUsd: 0.056, instanceType: b.instanceType ?? 'm5.large', deadlineMinutes: 30 });
  }
  if ((m = p.match(/^\/api\/analyses\/[^/]+\/submit$/))) {
    const b = JSON.parse((await body(req)).toString());
    if (b.datasets.length > 2) return json(res, 422, { error: { code: 'REJECTED', message: 'submission rejected', reasons: ['budget: this job reserves $0.17 but alice has $0.10 left in 2026-12'] } });
    const job = { jobId: `job-${jobs.length + 1}`, analysis: bp.name, group: 'labA', user: 'alice', phase: 'ACTIVE', outcome: 'RUNNING', createdAtMs: Date.now(), updatedAtMs: Date.now(), bucket: 'b', datasets: b.datasets.map((d: string) => ({ name: d, phase: 'RUNNING' })), reservedUsd: 0.056, costUsd: 0, instanceType: 'm5.large', hourlyUsd: 0.096, lines: [] as string[] };
    jobs.unshift(job);
    let i = 0;
    const t = setInterval(() => {
      job.lines.push(`smoothing frame block ${++i}`);
      job.costUsd = 0.0001 * i;
      if (i >= 6) {
        clearInterval(t);
        job.phase = 'DONE';
        job.outcome = 'SUCCEEDED';
        job.datasets.forEach((d: any) => (d.phase = 'SUCCEEDED'));
      }
    }, 400);
    return json(res, 201, { jobId: job.jobId, submissionKey: 'labA/submissions/alice/x-submit.json' });
  }
  if (p === '/api/jobs') return json(res, 200, jobs.map(({ lines, ...j }) => j));
  if ((m = p.match(/^\/api\/jobs\/([^/]+)\/events$/))) {
    const job = jobs.find((j) => j.jobId === m![1]);
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store' });
    let sent = 0;
    const t = setInterval(() => {
      while (sent < job.lines.length) res.write(`data: ${JSON.stringify({ type: 'log', dataset: job.datasets[0].name, line: job.lines[sent++] })}\n\n`);
      if (job.phase === 'DONE') {
        res.write(`data: ${JSON.stringify({ type: 'certificate', line: 'job finished: 1 of 1 datasets succeeded' })}\n\n`);
        const { lines, ...j } = job;
        res.write(`data: ${JSON.stringify({ type: 'end', job: j })}\n\n`);
        clearInterval(t);
        res.end();
      }
    }, 200);
    req.on('close', () => clearInterval(t));
    return;
  }
  if ((m = p.match(/^\/api\/jobs\/([^/]+)\/results$/))) return json(res, 200, [{ path: 'process_results/plot.svg', sizeBytes: svg.length }, { path: 'process_results/smoothed.csv', sizeBytes: 40 }, { path: 'process_results/summary.json', sizeBytes: 30 }, { path: 'logs/certificate.txt', sizeBytes: 20 }]);
  if ((m = p.match(/^\/api\/jobs\/([^/]+)\/results\/file$/))) {
    const path = url.searchParams.get('path') ?? '';
    const content = path.endsWith('.svg') ? svg : path.endsWith('.csv') ? 'frame,x,y\n0,1.5,2.5\n1,1.6,2.7\n' : path.endsWith('.json') ? '{"frames":2,"filled":0}' : 'ok';
    res.writeHead(200, { 'content-type': path.endsWith('.svg') ? 'image/svg+xml' : 'text/plain', ...(url.searchParams.get('download') ? { 'content-disposition': `attachment; filename="${path.split('/').pop()}"` } : {}) });
    return res.end(content);
  }
  if ((m = p.match(/^\/api\/jobs\/([^/]+)\/results\.zip$/))) {
    res.writeHead(200, { 'content-type': 'application/zip', 'content-disposition': `attachment; filename="${m[1]}.zip"` });
    return res.end('PK');
  }
  if ((m = p.match(/^\/api\/jobs\/([^/]+)\/cancel$/))) return json(res, 200, { job: jobs.find((j) => j.jobId === m![1]), alreadyFinished: true });
  if ((m = p.match(/^\/api\/jobs\/([^/]+)$/))) {
    const { lines, ...j } = jobs.find((x) => x.jobId === m![1]) ?? {};
    return j.jobId ? json(res, 200, { ...j, certificate: 'job accepted\n' }) : json(res, 404, { error: { code: 'JobNotFound', message: `no job ${m[1]}` } });
  }
  if (p === '/api/budget') return json(res, 200, { user: 'alice', group: 'labA', budget: { schemaVersion: 1, user: 'alice', group: 'labA', period: '2026-12', budgetUsd: 10, reservedUsd: 0.056, spentUsd: 0.42, leftUsd: 9.52, updatedAt: new Date().toISOString(), jobs: jobs.map((j) => ({ jobId: j.jobId, analysis: j.analysis, reservedUsd: 0.056, spentUsd: j.costUsd, settled: j.phase === 'DONE' })) } });
  const file = join(repo, 'dist/web', p === '/' ? 'index.html' : p);
  if (existsSync(file) && file.startsWith(join(repo, 'dist/web'))) {
    const types: Record<string, string> = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.json': 'application/json', '.svg': 'image/svg+xml', '.wasm': 'application/wasm' };
    res.writeHead(200, { 'content-type': types[extname(file)] ?? 'application/octet-stream' });
    return res.end(readFileSync(file));
  }
  json(res, 404, { error: { code: 'NotFound', message: p } });
}).listen(Number(process.argv[2] ?? 5199), '127.0.0.1');
