/**
 * The search agent's context as a list of token segments, so a long page chunk can be shrunk once
 * it has been read (ASearcher keeps its first 100 characters) without ever re-tokenizing model text.
 *
 * Training sequences follow the context: tokens are appended to the current sequence until a rewrite
 * changes a prefix the sequence already holds; then that sequence is closed (it is one training
 * sample) and the next starts from the rewritten context, in which every earlier model token is
 * context (mask 0: it was trained in the sequence that sampled it). So one trajectory can become
 * several training sequences, split exactly where its context was rewritten.
 */
import type { TokenSeq, TokenSourceId } from '../../core/types.ts';
import { appendCompletion, appendContext, emptySeq, TokenSource } from '../../core/types.ts';
import type { SampledCompletion } from '../../engine/types.ts';

interface Segment {
  source: TokenSourceId;
  ids: number[];
  /** Model segments: what the sampler recorded. */
  completion?: Pick<SampledCompletion, 'ids' | 'logprobs' | 'versions' | 'masks'>;
  /** Once set, later contexts show these ids instead (a read chunk's shrunk form). */
  shrunk?: number[];
}

export class SearchContext {
  private readonly segments: Segment[] = [];
  private current: TokenSeq = emptySeq();
  /** Closed training sequences (every one but the current). */
  private readonly closed: TokenSeq[] = [];
  /** Token positions of the current sequence at which each closed sequence ended (for viewers). */
  readonly splits: { atTurn: number; tokens: number }[] = [];

  /** Tokens of the context the next model call sees. */
  get ids(): readonly number[] {
    return this.current.ids;
  }

  get length(): number {
    return this.current.ids.length;
  }

  /** Append prompt / tool / environment tokens; returns the segment index (to shrink it later). */
  appendContext(ids: readonly number[], source: TokenSourceId): number {
    this.segments.push({ source, ids: [...ids] });
    appendContext(this.current, ids, source);
    return this.segments.length - 1;
  }

  /** Append a sampled completion (trained). */
  appendCompletion(c: Pick<SampledCompletion, 'ids' | 'logprobs' | 'versions' | 'masks'>): void {
    this.segments.push({ source: TokenSource.model, ids: [...c.ids], completion: c });
    appendCompletion(this.current, c);
  }

  /**
   * Replace segment `index` by `ids` in every later context. The current sequence is closed as a
   * training sequence and a new one starts from the rewritten context. `turn` is recorded with the split.
   */
  shrink(index: number, ids: readonly number[], turn: number): void {
    const seg = this.segments[index];
    if (!seg || seg.source === TokenSource.model) throw new Error(`SearchContext.shrink: segment ${index} is not a context segment`);
    seg.shrunk = [...ids];
    this.closed.push(this.current);
    this.splits.push({ atTurn: turn, tokens: this.current.ids.length });
    const next = emptySeq();
    for (const s of this.segments) {
      if (s.source === TokenSource.model) appendCompletion(next, s.completion!, false);
      else appendContext(next, s.shrunk ?? s.ids, s.source);
    }
    this.current = next;
  }

  /** The training sequences of the trajectory: the closed ones, then the current one. */
  sequences(): TokenSeq[] {
    return [...this.closed, this.current];
  }
}
