import { describe, expect, it } from 'vitest';
import { checkContentLength, checkHost, checkOrigin, matchRoute, onThisMachine, parseTarget, statusOfCode } from '../../../lib/ui/request-guard.js';

const loopback = { host: '127.0.0.1', port: 8765 };

describe('checkHost', () => {
  it('accepts the loopback names with the bound port', () => {
    for (const host of ['127.0.0.1:8765', 'localhost:8765', 'LOCALHOST:8765', '[::1]:8765']) expect(() => checkHost(host, loopback)).not.toThrow();
  });

  it('refuses a foreign name (DNS rebinding), another port, a missing port and no Host at all', () => {
    for (const host of ['evil.example:8765', '127.0.0.1:80', '127.0.0.1', 'localhost.evil.example:8765', '', undefined]) {
      expect(() => checkHost(host, loopback), String(host)).toThrow(expect.objectContaining({ code: 'HostRefused' }));
    }
  });

  it('accepts any IP literal but no name when bound to every interface', () => {
    const all = { host: '0.0.0.0', port: 9000 };
    expect(() => checkHost('192.168.1.20:9000', all)).not.toThrow();
    expect(() => checkHost('[fe80::1]:9000', all)).not.toThrow();
    expect(() => checkHost('rebind.example:9000', all)).toThrow(expect.objectContaining({ code: 'HostRefused' }));
  });

  it('accepts the --host given', () => {
    expect(() => checkHost('10.0.0.5:9000', { host: '10.0.0.5', port: 9000 })).not.toThrow();
    expect(() => checkHost('10.0.0.6:9000', { host: '10.0.0.5', port: 9000 })).toThrow();
  });
});

describe('checkOrigin', () => {
  it('accepts no Origin (a program, not a page) and the same origin', () => {
    expect(() => checkOrigin({}, '127.0.0.1:8765')).not.toThrow();
    expect(() => checkOrigin({ origin: 'http://127.0.0.1:8765', 'sec-fetch-site': 'same-origin' }, '127.0.0.1:8765')).not.toThrow();
    expect(() => checkOrigin({ 'sec-fetch-site': 'none' }, '127.0.0.1:8765')).not.toThrow();
  });

  it('refuses another origin, "null", https of the same host, and cross-site fetch metadata', () => {
    for (const origin of ['http://evil.example', 'null', 'https://127.0.0.1:8765', 'http://localhost:8765', 'http://127.0.0.1:8766']) {
      expect(() => checkOrigin({ origin }, '127.0.0.1:8765'), origin).toThrow(expect.objectContaining({ code: 'CrossOriginRefused' }));
    }
    for (const site of ['cross-site', 'same-site']) expect(() => checkOrigin({ 'sec-fetch-site': site }, '127.0.0.1:8765')).toThrow(expect.objectContaining({ code: 'CrossOriginRefused' }));
  });
});

describe('parseTarget', () => {
  it('decodes segments and the query', () => {
    const parsed = parseTarget('/api/analyses/kalman-smoother/objects?kind=inputs&name=a%2Fb.csv');
    expect(parsed.segments).toEqual(['api', 'analyses', 'kalman-smoother', 'objects']);
    expect(parsed.query.get('name')).toBe('a/b.csv');
    expect(parseTarget('/').segments).toEqual([]);
    expect(parseTarget('/api/jobs/').segments).toEqual(['api', 'jobs']);
  });

  it('refuses traversal however it is spelled, backslashes, NUL and encoded slashes inside a segment', () => {
    for (const target of ['/api/../etc', '/api/%2e%2e/x', '/api/%2E%2E', '/api/.%2e/x', '/api/./x', '/api/a%2fb', '/api/a%5cb', '/api\\x', '/api/a%00b', '/api//x', '/api/%zz', 'api/x', 'http://evil/api']) {
      expect(() => parseTarget(target), target).toThrow(expect.objectContaining({ code: 'PathInvalid' }));
    }
    expect(() => parseTarget('/api/x?name=a%00b')).toThrow(expect.objectContaining({ code: 'PathInvalid' }));
  });
});

describe('matchRoute', () => {
  it('captures parameters and needs the same length', () => {
    expect(matchRoute(['api', 'jobs', ':id'], ['api', 'jobs', 'abc'])).toEqual({ id: 'abc' });
    expect(matchRoute(['api', 'jobs', ':id'], ['api', 'jobs'])).toBeUndefined();
    expect(matchRoute(['api', 'jobs', ':id'], ['api', 'job', 'abc'])).toBeUndefined();
  });
});

describe('checkContentLength and statusOfCode', () => {
  it('refuses a body over the limit and a length that is not a number', () => {
    expect(checkContentLength('10', 10, 'x')).toBe(10);
    expect(checkContentLength(undefined, 10, 'x')).toBeUndefined();
    expect(() => checkContentLength('11', 10, 'x')).toThrow(expect.objectContaining({ code: 'BodyTooLarge' }));
    expect(() => checkContentLength('-1', 10, 'x')).toThrow(expect.objectContaining({ code: 'BadRequest' }));
  });

  it('maps the client faults to 4xx and anything unknown to 500', () => {
    expect(statusOfCode('KeyInvalid')).toBe(400);
    expect(statusOfCode('JobNotFound')).toBe(404);
    expect(statusOfCode('ObjectExists')).toBe(409);
    expect(statusOfCode('BodyTooLarge')).toBe(413);
    expect(statusOfCode('REJECTED')).toBe(422);
    expect(statusOfCode('DiskFull')).toBe(507);
    expect(statusOfCode('DiskWriteFailed')).toBe(500);
    expect(statusOfCode('Internal')).toBe(500);
  });
});

describe('onThisMachine', () => {
  it('is true only for a loopback connection to a page opened at a loopback name', () => {
    expect(onThisMachine('127.0.0.1', '127.0.0.1:8080')).toBe(true);
    expect(onThisMachine('::ffff:127.0.0.1', 'localhost:8080')).toBe(true);
    expect(onThisMachine('::1', '[::1]:8080')).toBe(true);
    expect(onThisMachine('127.0.0.2', '127.0.0.2:9')).toBe(true);
    // Another machine on the network.
    expect(onThisMachine('192.168.1.20', '192.168.1.5:8080')).toBe(false);
    expect(onThisMachine('::ffff:10.0.0.7', '127.0.0.1:8080')).toBe(false);
    // A reverse proxy on this machine relays a browser elsewhere: the page's own name says so.
    expect(onThisMachine('127.0.0.1', 'lab.example.org')).toBe(false);
    expect(onThisMachine('127.0.0.1', '192.168.1.5:8080')).toBe(false);
    expect(onThisMachine(undefined, '127.0.0.1:8080')).toBe(false);
    expect(onThisMachine('127.0.0.1', undefined)).toBe(false);
  });
});
