// The SDK's whole-file writes on a shared machine: a neighbour's link at the old predictable temp
// name, or at the target itself, is never written through; a write that fails leaves no temp file.
import { expect } from 'chai';
import { lstatSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomically } from '../ts-sdk/src/atomic-write.js';
import { tempDir } from './helpers.js';

describe('atomic writes (no worker)', () => {
  it('a link planted at the temp name the old code used, or at the target, is not written through', () => {
    const dir = tempDir('afa-atomic-');
    const victim = join(dir, 'victim');
    writeFileSync(victim, 'precious');
    const target = join(dir, 'report.html');
    symlinkSync(victim, `${target}.${process.pid}.tmp`); // where `<path>.<pid>.tmp` used to be written
    writeFileAtomically(target, 'first');
    expect(readFileSync(victim, 'utf8')).to.equal('precious');
    expect(readFileSync(target, 'utf8')).to.equal('first');
    const other = join(dir, 'result.json');
    symlinkSync(victim, other); // a link at the target: replaced by the file, its target untouched
    writeFileAtomically(other, '{}');
    expect(lstatSync(other).isSymbolicLink()).to.equal(false);
    expect(readFileSync(victim, 'utf8')).to.equal('precious');
  });

  it('a write that cannot complete leaves no temp file behind', () => {
    const dir = tempDir('afa-atomic-');
    mkdirSync(join(dir, 'report.html', 'inside'), { recursive: true }); // the target is a folder: the rename fails
    expect(() => writeFileAtomically(join(dir, 'report.html'), 'new')).to.throw(/EISDIR|ENOTEMPTY|EEXIST/);
    expect(readdirSync(dir)).to.deep.equal(['report.html']);
  });
});
