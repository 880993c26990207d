import { test } from 'node:test';
import assert from 'node:assert/strict';
import { analystMarks } from './analyst-marks.ts';
import { VERDICT_CODES } from './codes.ts';

test('clearing a detection is a false positive, for every detection code', () => {
  for (const v of VERDICT_CODES.filter((c) => c !== 'CLN')) assert.deepEqual(analystMarks(v, 'CLN'), { isFp: true, isFn: false }, v);
});

test('flagging what the engines called clean is a false negative', () => {
  for (const v of VERDICT_CODES.filter((c) => c !== 'CLN')) assert.deepEqual(analystMarks('CLN', v), { isFp: false, isFn: true }, v);
});

test('moving between detections, or back to the engines\' verdict, marks nothing', () => {
  assert.deepEqual(analystMarks('MAL', 'SUS'), { isFp: false, isFn: false });
  assert.deepEqual(analystMarks('SPM', 'BLK'), { isFp: false, isFn: false });
  assert.deepEqual(analystMarks('CLN', 'CLN'), { isFp: false, isFn: false });
  assert.deepEqual(analystMarks(null, 'CLN'), { isFp: false, isFn: false });
});
