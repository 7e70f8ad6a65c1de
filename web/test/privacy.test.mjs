// node --test web/test/ — the console's privacy helpers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { peopleCountText, splitPseudonyms } from '../src/privacy.js';

test('a suppressed or small people count is "< 10", never the number', () => {
  assert.equal(peopleCountText(null, true), '< 10');
  assert.equal(peopleCountText(7, false), '< 10');
  assert.equal(peopleCountText(7, true), '< 10');
  assert.equal(peopleCountText(undefined, false), '< 10');
  assert.equal(peopleCountText(240, false), '240');
  assert.equal(peopleCountText(239.6, false), '240');
  assert.equal(peopleCountText(12, false, 20), '< 20');
  for (let n = 0; n < 10; n++) assert.equal(peopleCountText(n, false), '< 10');
});

test('pseudonyms in a text become chips, nothing else does', () => {
  const p = 'plate:3:k7f3qx2mn4pz7qab3c2d';
  assert.deepEqual(splitPseudonyms(`véhicule ${p} vu`), [
    { text: 'véhicule ' }, { pseudonym: p }, { text: ' vu' },
  ]);
  assert.deepEqual(splitPseudonyms(p), [{ pseudonym: p }]);
  assert.deepEqual(splitPseudonyms('level_m = 3.2 (> 3)'), [{ text: 'level_m = 3.2 (> 3)' }]);
  // Not inside a longer token.
  assert.deepEqual(splitPseudonyms(`x${p}`), [{ text: `x${p}` }]);
  assert.deepEqual(splitPseudonyms(''), []);
  assert.deepEqual(splitPseudonyms(null), []);
});
