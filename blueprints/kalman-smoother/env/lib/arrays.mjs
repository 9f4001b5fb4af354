// @ts-check

/**
 * `array[index]` for an index that must be in range. The project compiles with
 * noUncheckedIndexedAccess, which types every indexed read as possibly undefined; this keeps
 * that assertion in one place and turns an out-of-range read into an error instead of a NaN.
 * @template T
 * @param {ArrayLike<T>} array
 * @param {number} index
 * @returns {T}
 */
export function nth(array, index) {
  if (!(index >= 0 && index < array.length)) {
    throw new RangeError(`index ${index} is outside 0..${array.length - 1}`);
  }
  return /** @type {T} */ (array[index]);
}
