import { describe, expect, it } from 'vitest';
import { MAX_SEND_BYTES, sendSize } from '../../src/common/kafka-topic.js';

const values = (...sizes: number[]) => sizes.map((n) => ({ value: 'x'.repeat(n) }));

describe('sendSize', () => {
  it('takes messages up to the count limit while they stay under the broker limit', () => {
    expect(sendSize(values(10, 10, 10), 2)).toBe(2);
    expect(sendSize(values(10, 10, 10), 100)).toBe(3);
    // 2,000 stats frames of 2.5 KB (5 MB) were one send, refused by the broker for ever.
    const frames = values(...Array.from({ length: 2_000 }, () => 2_500));
    const first = sendSize(frames, 2_000);
    expect(first).toBe(Math.floor(MAX_SEND_BYTES / 2_500));
    expect(first * 2_500).toBeLessThanOrEqual(MAX_SEND_BYTES);
  });

  it('always takes one message, however large (compression brings it under the limit)', () => {
    expect(sendSize(values(2_000_000, 10), 100)).toBe(1);
    expect(sendSize(values(10, 2_000_000), 100)).toBe(1);
    expect(sendSize([], 100)).toBe(0);
  });
});
