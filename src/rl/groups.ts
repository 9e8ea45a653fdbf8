/**
 * Grouping samples by explicit key fields.
 *
 * Every sample carries a record of key fields (`{ prompt: 'q17' }`, `{ group: 'g3', opponent:
 * 'aggressive', anchor: '…' }`); the caller names which fields form a group (`groupBy`). Two samples
 * share a group exactly when they agree on every named field. Callers never concatenate keys
 * themselves; the tuple of values is encoded here unambiguously (JSON of the value list).
 */

export type GroupKeys = Readonly<Record<string, string>>;

export interface Grouping {
  /** Groups in order of first appearance; `members` are sample indices in input order. */
  groups: { key: Record<string, string>; members: number[] }[];
  /** Index into `groups` of each sample. */
  groupOf: number[];
}

/**
 * Partition samples by the values of the `groupBy` fields. An empty `groupBy` puts every sample in
 * one group. Throws when a sample lacks a named field (a silent "undefined" group would merge
 * unrelated samples).
 */
export function groupSamples(keys: readonly GroupKeys[], groupBy: readonly string[]): Grouping {
  const index = new Map<string, number>();
  const groups: Grouping['groups'] = [];
  const groupOf = new Array<number>(keys.length);
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i]!;
    const values = groupBy.map((f) => {
      const v = k[f];
      if (typeof v !== 'string') {
        throw new Error(`groupSamples: sample ${i} has no key field "${f}" (its keys: ${JSON.stringify(k)}); set keys.${f} on every sample or remove "${f}" from groupBy`);
      }
      return v;
    });
    const id = JSON.stringify(values);
    let g = index.get(id);
    if (g === undefined) {
      g = groups.length;
      index.set(id, g);
      groups.push({ key: Object.fromEntries(groupBy.map((f, j) => [f, values[j]!])), members: [] });
    }
    groups[g]!.members.push(i);
    groupOf[i] = g;
  }
  return { groups, groupOf };
}
