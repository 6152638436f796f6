// A Tensor is a dtype, a shape and row-major contiguous data. bf16/fp16 hold raw IEEE bits in a
// Uint16Array, and fp8_e4m3fn/fp8_e5m2/fp8_e8m0 their raw codes in a Uint8Array, so that no
// conversion ever happens behind the user's back.
import { MoeError } from './errors.js';
import { bf16ToF32, e8m0ToF32, f32ToBf16, f32ToE8m0Exact, f32ToFp16, f32ToFp8, fp16ToF32, fp8ToF32 } from './numbers.js';

export type DType = 'bf16' | 'fp16' | 'f32' | 'int8' | 'int32' | 'int64' | 'bool' | Fp8DType;

/** The one-byte float dtypes (950 contract §1, §6): raw codes in a Uint8Array. fp8_e8m0 holds only scales. */
export type Fp8DType = 'fp8_e4m3fn' | 'fp8_e5m2' | 'fp8_e8m0';

export const isFp8 = (d: DType): d is Fp8DType => d === 'fp8_e4m3fn' || d === 'fp8_e5m2' || d === 'fp8_e8m0';

export type TensorData = Uint16Array | Float32Array | Int8Array | Int32Array | BigInt64Array | Uint8Array;

export interface Tensor<D extends DType = DType> {
  readonly dtype: D;
  readonly shape: readonly number[];
  readonly data: DataOf<D>;
}

export type DataOf<D extends DType> = D extends 'bf16' | 'fp16'
  ? Uint16Array
  : D extends 'f32'
    ? Float32Array
    : D extends 'int8'
      ? Int8Array
      : D extends 'int32'
        ? Int32Array
        : D extends 'int64'
          ? BigInt64Array
          : Uint8Array;

export const DTYPE_BYTES: Record<DType, number> = {
  bf16: 2,
  fp16: 2,
  f32: 4,
  int8: 1,
  int32: 4,
  int64: 8,
  bool: 1,
  fp8_e4m3fn: 1,
  fp8_e5m2: 1,
  fp8_e8m0: 1,
};

export const DTYPES: readonly DType[] = ['bf16', 'fp16', 'f32', 'int8', 'int32', 'int64', 'bool', 'fp8_e4m3fn', 'fp8_e5m2', 'fp8_e8m0'];

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** The typed array of `dtype` over the first `n` elements of `buf` (no copy). */
export function dataView<D extends DType>(dtype: D, buf: ArrayBufferLike, n: number): DataOf<D> {
  switch (dtype) {
    case 'bf16':
    case 'fp16':
      return new Uint16Array(buf, 0, n) as DataOf<D>;
    case 'f32':
      return new Float32Array(buf, 0, n) as DataOf<D>;
    case 'int8':
      return new Int8Array(buf, 0, n) as DataOf<D>;
    case 'int32':
      return new Int32Array(buf, 0, n) as DataOf<D>;
    case 'int64':
      return new BigInt64Array(buf, 0, n) as DataOf<D>;
    case 'bool':
    case 'fp8_e4m3fn':
    case 'fp8_e5m2':
    case 'fp8_e8m0':
      return new Uint8Array(buf, 0, n) as DataOf<D>;
  }
  throw new TypeError(`unknown dtype ${String(dtype)}`);
}

function allocData<D extends DType>(dtype: D, n: number): DataOf<D> {
  return dataView(dtype, new ArrayBuffer(n * (DTYPE_BYTES[dtype] ?? 1)), n);
}

/** A zero-filled tensor. */
export function zeros<D extends DType>(dtype: D, shape: readonly number[]): Tensor<D> {
  return { dtype, shape: [...shape], data: allocData(dtype, numel(shape)) };
}

/** Wraps existing data (no copy); the data length must match the shape. */
export function tensor<D extends DType>(dtype: D, shape: readonly number[], data: DataOf<D>): Tensor<D> {
  if (data.length !== numel(shape)) {
    throw new RangeError(`tensor data has ${data.length} elements, shape [${shape.join(', ')}] needs ${numel(shape)}`);
  }
  return { dtype, shape: [...shape], data };
}

/**
 * Makes a tensor from plain numbers; floats are rounded to the dtype round-half-even (through f32,
 * as the hardware converts). fp8_e4m3fn/fp8_e5m2 convert as torch's `.to(float8_*)` does, not
 * saturating, like bf16/fp16: past max is NaN (e4m3fn) or ±inf (e5m2); the saturating conversion is
 * `f32ToFp8(format, x, true)`. fp8_e8m0 takes only exact powers of two 2^-127..2^127 (or NaN):
 * a scale is never rounded, so anything else is a MoeError.
 */
export function fromNumbers<D extends DType>(
  dtype: D,
  shape: readonly number[],
  values: ArrayLike<number | bigint | boolean>,
): Tensor<D> {
  const t = zeros(dtype, shape);
  if (values.length !== t.data.length) {
    throw new RangeError(`${values.length} values given, shape [${shape.join(', ')}] needs ${t.data.length}`);
  }
  const d = t.data as TensorData;
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    switch (dtype) {
      case 'bf16':
        d[i] = f32ToBf16(Math.fround(Number(v)));
        break;
      case 'fp16':
        d[i] = f32ToFp16(Math.fround(Number(v)));
        break;
      case 'int64':
        (d as BigInt64Array)[i] = BigInt(v);
        break;
      case 'bool':
        d[i] = v ? 1 : 0;
        break;
      case 'fp8_e4m3fn':
      case 'fp8_e5m2':
        d[i] = f32ToFp8(dtype, Math.fround(Number(v)), false);
        break;
      case 'fp8_e8m0': {
        const code = f32ToE8m0Exact(Number(v));
        if (code < 0) {
          throw new MoeError('E_VALUE', `values[${i}]`, Number(v), 'fp8_e8m0 values should be 2^k for an integer k in [-127, 127], or NaN');
        }
        d[i] = code;
        break;
      }
      default:
        (d as Float32Array)[i] = Number(v);
    }
  }
  return t;
}

/** The values as plain numbers (bf16/fp16/fp8 decoded exactly, int64 through Number). */
export function toNumbers(t: Tensor): number[] {
  const out = new Array<number>(t.data.length);
  for (let i = 0; i < t.data.length; i++) out[i] = elementAsNumber(t, i);
  return out;
}

export function elementAsNumber(t: Tensor, i: number): number {
  switch (t.dtype) {
    case 'bf16':
      return bf16ToF32((t.data as Uint16Array)[i]!);
    case 'fp16':
      return fp16ToF32((t.data as Uint16Array)[i]!);
    case 'fp8_e4m3fn':
    case 'fp8_e5m2':
      return fp8ToF32(t.dtype, (t.data as Uint8Array)[i]!);
    case 'fp8_e8m0':
      return e8m0ToF32((t.data as Uint8Array)[i]!);
    case 'int64':
      return Number((t.data as BigInt64Array)[i]!);
    default:
      return Number((t.data as Float32Array)[i]!);
  }
}

/** The tensor's bytes (a view, no copy). */
export function bytesOf(t: Tensor): Uint8Array {
  return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}

export function describe(t: Tensor): string {
  return `${t.dtype}[${t.shape.join(', ')}]`;
}
