/**
 * Results pages (docs/results/*.md) are shared by several scripts: each owns a section between
 * `<!-- name start -->` and `<!-- name end -->` markers and replaces only that section.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

export function writeResultsSection(path: string, name: string, section: string, title: string): void {
  const start = `<!-- ${name} start -->`, end = `<!-- ${name} end -->`;
  const old = existsSync(path) ? readFileSync(path, 'utf8') : `# ${title}\n`;
  const block = `${start}\n${section}\n${end}`;
  const i = old.indexOf(start), j = old.indexOf(end);
  const next = i >= 0 && j > i ? old.slice(0, i) + block + old.slice(j + end.length) : `${old.trimEnd()}\n\n${block}\n`;
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, next);
}
