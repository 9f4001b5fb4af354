#!/usr/bin/env node
// Stands in for the AWS CLI on a machine, for the calls ncap-runner.sh makes:
//   aws s3 cp [--recursive] [--only-show-errors] <src> <dst>     (one side s3://bucket/key)
//   aws s3api put-object --bucket B --key K --body F [--metadata k=v] [--if-none-match '*']
//   aws s3api head-object --bucket B --key K [--output json]     (exit 254 when absent, like the CLI)
//   aws s3api create-multipart-upload | upload-part | complete-multipart-upload | abort-multipart-upload
//   (--query <Field> --output text prints that one field, as the runner asks)
// Two stores behind it:
//   NCAP_TEST_S3_ENDPOINT  the S3 emulator (moto), through the SDK
//   NCAP_TEST_S3_DIR       a folder (<dir>/<bucket>/<key>, metadata beside in <dir>/.meta), whose
//                          copies keep holes: a 6 GB sparse result costs no 6 GB of bytes
// NCAP_TEST_AWS_LOG, when set, gets one line per call (its arguments), so a test can tell which
// path the runner took. NCAP_TEST_AWS_FAIL_PART=<n> makes upload-part of part n fail.
import { spawnSync } from 'node:child_process';
import { appendFileSync, existsSync, linkSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';

const raw = process.argv.slice(2);
if (process.env.NCAP_TEST_AWS_LOG) appendFileSync(process.env.NCAP_TEST_AWS_LOG, `${raw.join(' ')}\n`);
const args = raw.filter((a) => a !== '--only-show-errors');
const option = (name) => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);
const s3Url = (url) => {
  const match = /^s3:\/\/([^/]+)\/(.*)$/.exec(url);
  if (!match) throw new Error(`not an s3 url: ${url}`);
  return { Bucket: match[1], Key: match[2] };
};
const metadataOf = () => {
  const given = option('--metadata');
  if (!given) return {};
  return Object.fromEntries(given.split(',').map((pair) => pair.split('=')));
};
class CliError extends Error {
  constructor(name, message, exitCode = 1) {
    super(message);
    this.name = name;
    this.exitCode = exitCode;
  }
}
const preconditionFailed = () => new CliError('PreconditionFailed', 'An error occurred (PreconditionFailed): At least one of the pre-conditions you specified did not hold');
/** What the runner reads back with `--query <Field> --output text`, or the whole reply as JSON. */
const reply = (value) => {
  const field = option('--query');
  process.stdout.write(field ? `${value[field] ?? 'None'}\n` : `${JSON.stringify(value, null, 4)}\n`);
};

/** A bucket folder: objects as files, their metadata beside them, multipart uploads as part files. */
function folderStore(dir) {
  const objectPath = (b, k) => join(dir, b, ...k.split('/'));
  const metaPath = (b, k) => join(dir, '.meta', b, `${k}.json`);
  const uploadDir = (id) => join(dir, '.uploads', id);
  const sparseCopy = (from, to) => {
    mkdirSync(dirname(to), { recursive: true });
    const copied = spawnSync('cp', ['--sparse=always', from, to]);
    if (copied.status !== 0) throw new CliError('CopyFailed', String(copied.stderr));
  };
  /** Moves a finished file into place; with `createOnly`, only if the key is free (link(2) is atomic). */
  const place = (temp, b, k, metadata, createOnly) => {
    const target = objectPath(b, k);
    mkdirSync(dirname(target), { recursive: true });
    try {
      if (createOnly) linkSync(temp, target);
      else spawnSync('mv', ['-f', temp, target]);
    } catch (error) {
      if (error.code === 'EEXIST') throw preconditionFailed();
      throw error;
    } finally {
      rmSync(temp, { force: true });
    }
    mkdirSync(dirname(metaPath(b, k)), { recursive: true });
    writeFileSync(metaPath(b, k), JSON.stringify(metadata));
  };
  const temp = () => join(dir, '.tmp', `${process.pid}-${Math.random().toString(16).slice(2)}`);
  return {
    async get(b, k, dst) {
      if (!existsSync(objectPath(b, k))) throw new CliError('NoSuchKey', `An error occurred (404) when calling the GetObject operation: Key "${k}" does not exist`);
      sparseCopy(objectPath(b, k), dst);
    },
    async list(b, prefix) {
      const root = join(dir, b);
      const found = [];
      const walk = (folder) => {
        if (!existsSync(folder)) return;
        for (const entry of readdirSync(folder, { withFileTypes: true })) {
          const full = join(folder, entry.name);
          if (entry.isDirectory()) walk(full);
          else found.push(relative(root, full).split('\\').join('/'));
        }
      };
      walk(root);
      return found.filter((key) => key.startsWith(prefix));
    },
    async put(b, k, file, metadata, createOnly) {
      const staged = temp();
      sparseCopy(file, staged);
      place(staged, b, k, metadata, createOnly);
    },
    async head(b, k) {
      if (!existsSync(objectPath(b, k))) return undefined;
      const metadata = existsSync(metaPath(b, k)) ? JSON.parse(readFileSync(metaPath(b, k), 'utf8')) : {};
      return { ContentLength: statSync(objectPath(b, k)).size, ETag: '"folder"', Metadata: metadata };
    },
    async createUpload(b, k, metadata) {
      const id = `upload-${process.pid}-${Date.now().toString(16)}`;
      mkdirSync(uploadDir(id), { recursive: true });
      writeFileSync(join(uploadDir(id), 'upload.json'), JSON.stringify({ bucket: b, key: k, metadata }));
      return id;
    },
    async uploadPart(id, n, file) {
      if (!existsSync(uploadDir(id))) throw new CliError('NoSuchUpload', `An error occurred (NoSuchUpload): upload ${id} does not exist`);
      sparseCopy(file, join(uploadDir(id), `part-${n}`));
      return `"${id}-${n}-${statSync(file).size}"`;
    },
    async complete(id, parts, createOnly) {
      if (!existsSync(uploadDir(id))) throw new CliError('NoSuchUpload', `An error occurred (NoSuchUpload): upload ${id} does not exist`);
      const upload = JSON.parse(readFileSync(join(uploadDir(id), 'upload.json'), 'utf8'));
      const staged = temp();
      mkdirSync(dirname(staged), { recursive: true });
      writeFileSync(staged, '');
      let offset = 0;
      parts.forEach((part, index) => {
        const path = join(uploadDir(id), `part-${part.PartNumber}`);
        if (part.PartNumber !== index + 1 || !existsSync(path)) throw new CliError('InvalidPart', `An error occurred (InvalidPart): part ${part.PartNumber} was not uploaded`);
        const size = statSync(path).size;
        if (part.ETag !== `"${id}-${part.PartNumber}-${size}"`) throw new CliError('InvalidPart', `An error occurred (InvalidPart): part ${part.PartNumber} has another ETag`);
        // S3's rule: every part but the last is at least 5 MiB.
        if (index < parts.length - 1 && size < 5 * 1024 * 1024) throw new CliError('EntityTooSmall', `An error occurred (EntityTooSmall): part ${part.PartNumber} is ${size} bytes`);
        // Appended sparsely: zeros are skipped, so holes stay holes.
        const appended = spawnSync('dd', [`if=${path}`, `of=${staged}`, 'bs=1M', `seek=${offset}`, 'oflag=seek_bytes', 'conv=sparse,notrunc', 'status=none']);
        if (appended.status !== 0) throw new CliError('InternalError', String(appended.stderr));
        offset += size;
      });
      spawnSync('truncate', ['-s', String(offset), staged]);
      place(staged, upload.bucket, upload.key, upload.metadata, createOnly);
      rmSync(uploadDir(id), { recursive: true, force: true });
    },
    async abort(id) {
      rmSync(uploadDir(id), { recursive: true, force: true });
    },
  };
}

/** The S3 emulator through the SDK. */
async function emulatorStore(endpoint) {
  const sdk = await import('@aws-sdk/client-s3');
  const s3 = new sdk.S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  const asCliError = (error) => (error.name === 'PreconditionFailed' || error.$metadata?.httpStatusCode === 412 ? preconditionFailed() : error);
  return {
    async get(b, k, dst) {
      const out = await s3.send(new sdk.GetObjectCommand({ Bucket: b, Key: k }));
      mkdirSync(dirname(dst), { recursive: true });
      writeFileSync(dst, Buffer.from(await out.Body.transformToByteArray()));
    },
    async list(b, prefix) {
      const keys = [];
      let token;
      do {
        const page = await s3.send(new sdk.ListObjectsV2Command({ Bucket: b, Prefix: prefix, ContinuationToken: token }));
        keys.push(...(page.Contents ?? []).map((o) => o.Key));
        token = page.NextContinuationToken;
      } while (token);
      return keys;
    },
    async put(b, k, file, metadata, createOnly) {
      await s3.send(new sdk.PutObjectCommand({ Bucket: b, Key: k, Body: readFileSync(file), Metadata: metadata, ...(createOnly ? { IfNoneMatch: '*' } : {}) })).catch((e) => {
        throw asCliError(e);
      });
    },
    async head(b, k) {
      try {
        const out = await s3.send(new sdk.HeadObjectCommand({ Bucket: b, Key: k }));
        return { ContentLength: out.ContentLength, ETag: out.ETag, Metadata: out.Metadata ?? {} };
      } catch (error) {
        if (error.$metadata?.httpStatusCode === 404) return undefined;
        throw error;
      }
    },
    async createUpload(b, k, metadata) {
      const out = await s3.send(new sdk.CreateMultipartUploadCommand({ Bucket: b, Key: k, Metadata: metadata }));
      return `${b}|${k}|${out.UploadId}`;
    },
    async uploadPart(id, n, file) {
      const [b, k, uploadId] = id.split('|');
      const out = await s3.send(new sdk.UploadPartCommand({ Bucket: b, Key: k, UploadId: uploadId, PartNumber: n, Body: readFileSync(file) }));
      return out.ETag;
    },
    async complete(id, parts, createOnly) {
      const [b, k, uploadId] = id.split('|');
      await s3
        .send(new sdk.CompleteMultipartUploadCommand({ Bucket: b, Key: k, UploadId: uploadId, MultipartUpload: { Parts: parts }, ...(createOnly ? { IfNoneMatch: '*' } : {}) }))
        .catch((e) => {
          throw asCliError(e);
        });
    },
    async abort(id) {
      const [b, k, uploadId] = id.split('|');
      await s3.send(new sdk.AbortMultipartUploadCommand({ Bucket: b, Key: k, UploadId: uploadId }));
    },
  };
}

try {
  const store = process.env.NCAP_TEST_S3_DIR ? folderStore(process.env.NCAP_TEST_S3_DIR) : await emulatorStore(process.env.NCAP_TEST_S3_ENDPOINT);
  const call = `${args[0]} ${args[1]}`;
  const createOnly = args.includes('--if-none-match');
  if (call === 's3 cp') {
    const [src, dst] = args.slice(2).filter((a) => a !== '--recursive');
    if (args.includes('--recursive')) {
      if (!src.startsWith('s3://')) throw new CliError('Unsupported', 'fake aws cli: only downloads are recursive here');
      const { Bucket, Key } = s3Url(src);
      const keys = await store.list(Bucket, Key);
      // Like the CLI: each object lands at its path relative to the prefix.
      for (const key of keys) await store.get(Bucket, key, join(dst, ...key.slice(Key.length).split('/')));
    } else if (src.startsWith('s3://')) {
      await store.get(s3Url(src).Bucket, s3Url(src).Key, dst);
    } else {
      await store.put(s3Url(dst).Bucket, s3Url(dst).Key, src, metadataOf(), false);
    }
  } else if (call === 's3api put-object') {
    await store.put(option('--bucket'), option('--key'), option('--body'), metadataOf(), createOnly);
  } else if (call === 's3api head-object') {
    const head = await store.head(option('--bucket'), option('--key'));
    if (!head) throw new CliError('NotFound', 'An error occurred (404) when calling the HeadObject operation: Not Found', 254);
    reply(head);
  } else if (call === 's3api create-multipart-upload') {
    reply({ UploadId: await store.createUpload(option('--bucket'), option('--key'), metadataOf()) });
  } else if (call === 's3api upload-part') {
    const n = Number(option('--part-number'));
    if (process.env.NCAP_TEST_AWS_FAIL_PART === String(n)) throw new CliError('InternalError', `An error occurred (InternalError) when calling the UploadPart operation (part ${n})`);
    reply({ ETag: await store.uploadPart(option('--upload-id'), n, option('--body')) });
  } else if (call === 's3api complete-multipart-upload') {
    const given = option('--multipart-upload');
    const parts = JSON.parse(readFileSync(given.replace(/^file:\/\//, ''), 'utf8')).Parts;
    await store.complete(option('--upload-id'), parts, createOnly);
  } else if (call === 's3api abort-multipart-upload') {
    await store.abort(option('--upload-id'));
  } else {
    throw new CliError('Unsupported', `fake aws cli: unsupported call: ${args.join(' ')}`, 2);
  }
} catch (error) {
  process.stderr.write(`aws: ${error.name}: ${error.message}\n`);
  process.exit(error.exitCode ?? 1);
}
