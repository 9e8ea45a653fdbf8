/**
 * Readable config errors from zod: one `path: message` line per issue, and for an unknown key
 * (strict schemas) the closest valid key — `optimizer.learningRate: unknown key (did you mean 'lr'?)`.
 *
 *   const r = Schema.safeParse(input);
 *   if (!r.success) throw new Error(`invalid optimizer config: ${formatZodError(r.error, { schema: Schema, prefix: 'optimizer' })}`);
 *
 * Closeness: keys are compared as lower-case words with '_' / '-' / camelCase boundaries removed
 * ('weight_decay' = 'weightDecay'), then by their initials ('learningRate' → 'lr'), then by leading
 * words ('warmup' → 'warmupSteps'), then by edit distance with transpositions (at most a third of
 * the longer key, at least 1: 'position' → 'positions', 'nmae' → 'name').
 */
import type { ZodError, ZodIssue, ZodTypeAny } from 'zod';

export interface FormatZodOptions {
  /** The schema that produced the error: lets unknown keys be matched against the valid ones. */
  schema?: ZodTypeAny;
  /** Prepended to every path (e.g. 'optimizer' gives 'optimizer.lr: …'). */
  prefix?: string;
}

/**
 * Edit distance with insertions, deletions, substitutions and transpositions of adjacent characters
 * (optimal string alignment: 'nmae' → 'name' is 1).
 */
export function editDistance(a: string, b: string): number {
  if (a === b) return 0;
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}

/** Words of a key: split at '_', '-', '.', spaces and camelCase boundaries, lower-cased. */
function words(key: string): string[] {
  return key
    .replace(/([a-z0-9])([A-Z])/g, '$1 $2')
    .replace(/([A-Z]+)([A-Z][a-z])/g, '$1 $2')
    .split(/[\s_.-]+/)
    .filter((w) => w.length > 0)
    .map((w) => w.toLowerCase());
}

/**
 * The valid key closest to `key`, or undefined when none is close (see the file comment for what
 * "close" means). Ties go to the candidate listed first.
 */
export function closestKey(key: string, candidates: readonly string[]): string | undefined {
  const norm = (s: string) => words(s).join('');
  const initials = (s: string) => words(s).map((w) => w[0]).join('');
  const k = norm(key);
  let best: string | undefined, bestScore = Infinity;
  for (const c of candidates) {
    const n = norm(c);
    let score: number;
    const kw = words(key), cw = words(c);
    const leading = (x: string[], y: string[]) => x.length < y.length && x.every((w, i) => w === y[i]);
    if (n === k) score = 0;
    else if ((kw.length > 1 && initials(key) === n) || (cw.length > 1 && initials(c) === k)) score = 0.5;
    else if (leading(kw, cw) || leading(cw, kw)) score = 1.5; // 'warmup' → 'warmupSteps' (a one-letter typo elsewhere wins)
    else {
      const d = editDistance(k, n);
      score = d <= Math.max(1, Math.floor(Math.max(k.length, n.length) / 3)) ? d : Infinity;
    }
    if (score < bestScore) {
      best = c;
      bestScore = score;
    }
  }
  return best;
}

/**
 * The keys an object schema accepts at `path` inside `schema` (through defaults, optionals,
 * refinements, arrays, records, unions …), or [] when the path does not lead to an object.
 */
export function schemaKeysAt(schema: ZodTypeAny, path: readonly (string | number)[]): string[] {
  let s: ZodTypeAny | undefined = schema;
  for (let i = 0; ; i++) {
    s = s && unwrap(s);
    if (!s) return [];
    const def = s._def as { typeName?: string; [k: string]: unknown };
    if (i === path.length) {
      if (def.typeName === 'ZodObject') return Object.keys((s as unknown as { shape: Record<string, unknown> }).shape);
      if (def.typeName === 'ZodUnion' || def.typeName === 'ZodDiscriminatedUnion') {
        const opts = [...((def.options as Iterable<ZodTypeAny> | undefined) ?? [])];
        return [...new Set(opts.flatMap((o) => schemaKeysAt(o, [])))];
      }
      if (def.typeName === 'ZodIntersection') return [...new Set([...schemaKeysAt(def.left as ZodTypeAny, []), ...schemaKeysAt(def.right as ZodTypeAny, [])])];
      return [];
    }
    const step = path[i]!;
    switch (def.typeName) {
      case 'ZodObject':
        s = (s as unknown as { shape: Record<string, ZodTypeAny> }).shape[String(step)];
        break;
      case 'ZodArray':
        s = def.type as ZodTypeAny;
        break;
      case 'ZodTuple':
        s = (def.items as ZodTypeAny[])[Number(step)] ?? (def.rest as ZodTypeAny | undefined);
        break;
      case 'ZodRecord':
      case 'ZodMap':
        s = def.valueType as ZodTypeAny;
        break;
      case 'ZodUnion':
      case 'ZodDiscriminatedUnion': {
        const opts = [...((def.options as Iterable<ZodTypeAny> | undefined) ?? [])];
        return [...new Set(opts.flatMap((o) => schemaKeysAt(o, path.slice(i))))];
      }
      case 'ZodIntersection':
        return [...new Set([...schemaKeysAt(def.left as ZodTypeAny, path.slice(i)), ...schemaKeysAt(def.right as ZodTypeAny, path.slice(i))])];
      default:
        return [];
    }
  }
}

/** Peel wrappers that do not change which keys an object takes. */
function unwrap(s: ZodTypeAny): ZodTypeAny | undefined {
  for (let guard = 0; guard < 64; guard++) {
    const def = s._def as { typeName?: string; [k: string]: unknown };
    switch (def.typeName) {
      case 'ZodEffects': s = def.schema as ZodTypeAny; break;
      case 'ZodDefault':
      case 'ZodOptional':
      case 'ZodNullable':
      case 'ZodReadonly':
      case 'ZodCatch': s = def.innerType as ZodTypeAny; break;
      case 'ZodBranded': s = def.type as ZodTypeAny; break;
      case 'ZodPipeline': s = def.in as ZodTypeAny; break;
      case 'ZodLazy': s = (def.getter as () => ZodTypeAny)(); break;
      default: return s;
    }
  }
  return undefined;
}

function joinPath(prefix: string | undefined, path: readonly (string | number)[]): string {
  const parts = [...(prefix ? [prefix] : []), ...path.map(String)];
  return parts.length > 0 ? parts.join('.') : '(root)';
}

/** One `path: message` line per issue; an unknown key gets one line of its own with a suggestion. */
export function formatZodIssues(error: ZodError | { issues: ZodIssue[] }, opts: FormatZodOptions = {}): string[] {
  const lines: string[] = [];
  for (const issue of error.issues) {
    if (issue.code === 'unrecognized_keys') {
      const valid = opts.schema ? schemaKeysAt(opts.schema, issue.path) : [];
      for (const key of issue.keys) {
        const where = joinPath(opts.prefix, [...issue.path, key]);
        const near = closestKey(key, valid);
        const hint = near !== undefined ? ` (did you mean '${near}'?)` : valid.length > 0 ? ` (valid keys: ${valid.join(', ')})` : '';
        lines.push(`${where}: unknown key${hint}`);
      }
      continue;
    }
    lines.push(`${joinPath(opts.prefix, issue.path)}: ${issue.message}`);
  }
  return lines;
}

/** `formatZodIssues` joined with '; ' — for one-line error messages. */
export function formatZodError(error: ZodError | { issues: ZodIssue[] }, opts: FormatZodOptions = {}): string {
  return formatZodIssues(error, opts).join('; ');
}
