// Shared by the Node tests: the server under test comes from the environment (pytest starts a real `ripple serve`).
export const URL_ = process.env.RIPPLE_URL || null;
export const SKIP = URL_ ? false : "set RIPPLE_URL to a running `ripple serve` (pytest tests/browser does)";
export const FACTOR = Number(process.env.RIPPLE_TEST_TIMEOUT_FACTOR || "1");

/** A fresh name per test run, so tests never see each other's keys. */
export function unique(prefix) {
  return `${prefix}-${process.pid}-${Math.random().toString(36).slice(2, 10)}`;
}

/** Reject after `ms` (scaled by RIPPLE_TEST_TIMEOUT_FACTOR) unless `promise` settles first. */
export function within(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms * FACTOR} ms: ${what}`)), ms * FACTOR);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** The first `n` items of an async iterable. */
export async function take(iterable, n) {
  const out = [];
  if (n === 0) return out;
  for await (const item of iterable) {
    out.push(item);
    if (out.length >= n) break;
  }
  return out;
}
