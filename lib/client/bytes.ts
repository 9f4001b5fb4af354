/**
 * Bytes, randomness and waiting without Node built-ins, so the use-cases run in a browser
 * bundle as well as in Node (which has TextDecoder, Web Crypto and setTimeout too).
 */

// ignoreBOM keeps a leading byte-order mark as U+FEFF, as Buffer#toString('utf8') does.
const decoder = new TextDecoder('utf-8', { ignoreBOM: true });

/** The bytes as UTF-8 text; invalid sequences become U+FFFD (as with Buffer#toString). */
export function utf8Text(bytes: Uint8Array): string {
  return decoder.decode(bytes);
}

/** `byteCount` random bytes as lower-case hex (2 characters per byte). */
export function randomHex(byteCount: number): string {
  const bytes = new Uint8Array(byteCount);
  globalThis.crypto.getRandomValues(bytes);
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, '0')).join('');
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** `a` then `b` in one new array. */
export function concatBytes(a: Uint8Array, b: Uint8Array): Uint8Array {
  const joined = new Uint8Array(a.length + b.length);
  joined.set(a, 0);
  joined.set(b, a.length);
  return joined;
}
