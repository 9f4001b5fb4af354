#!/usr/bin/env node
// Stands in for the AWS CLI on a machine, for the few calls ncap-runner.sh makes, against the
// S3 emulator at NCAP_TEST_S3_ENDPOINT:
//   aws s3 cp [--only-show-errors] <src> <dst>          (one side s3://bucket/key)
//   aws s3api put-object --bucket B --key K --body F --if-none-match '*'
import { readFileSync, writeFileSync } from 'node:fs';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';

const s3 = new S3Client({
  endpoint: process.env.NCAP_TEST_S3_ENDPOINT,
  region: 'us-east-1',
  forcePathStyle: true,
  credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
  requestChecksumCalculation: 'WHEN_REQUIRED',
  responseChecksumValidation: 'WHEN_REQUIRED',
});
const args = process.argv.slice(2).filter((a) => a !== '--only-show-errors');
const s3Url = (url) => {
  const match = /^s3:\/\/([^/]+)\/(.+)$/.exec(url);
  if (!match) throw new Error(`not an s3 url: ${url}`);
  return { Bucket: match[1], Key: match[2] };
};

try {
  if (args[0] === 's3' && args[1] === 'cp') {
    const [src, dst] = args.slice(2);
    if (src.startsWith('s3://')) {
      const out = await s3.send(new GetObjectCommand(s3Url(src)));
      writeFileSync(dst, Buffer.from(await out.Body.transformToByteArray()));
    } else {
      await s3.send(new PutObjectCommand({ ...s3Url(dst), Body: readFileSync(src) }));
    }
  } else if (args[0] === 's3api' && args[1] === 'put-object') {
    const option = (name) => args[args.indexOf(name) + 1];
    await s3.send(
      new PutObjectCommand({
        Bucket: option('--bucket'),
        Key: option('--key'),
        Body: readFileSync(option('--body')),
        ...(args.includes('--if-none-match') ? { IfNoneMatch: option('--if-none-match') } : {}),
      }),
    );
  } else {
    throw new Error(`fake aws cli: unsupported call: ${args.join(' ')}`);
  }
} catch (error) {
  process.stderr.write(`aws: ${error.name}: ${error.message}\n`);
  process.exit(1);
}
