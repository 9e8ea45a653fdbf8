/**
 * A Hugging Face tokenizer (`tokenizer.json` + optional `tokenizer_config.json`) behind the
 * agentrl `Tokenizer` contract, for remote models (vLLM/SGLang) whose token ids must match ours.
 * Parsing and the BPE/WordPiece/Unigram models come from the pure-JS `@huggingface/tokenizers`.
 *
 * Conventions: `encode` adds no special tokens (prompts are rendered by chat templates that already
 * contain them); `decode` keeps special tokens (so `<|im_end|>` stays visible to stop checks).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer as HfLibTokenizer, type Encoding } from '@huggingface/tokenizers';
import type { Tokenizer } from './types.ts';

export interface HfTokenizerOptions {
  /** End-of-sequence token string; default: `eos_token` of tokenizer_config.json, else a well-known one. */
  eosToken?: string;
}

/** Serialised form, stored in checkpoints. */
export interface HfTokenizerJSON {
  type: 'huggingface';
  tokenizer: unknown;
  config: unknown;
  eosToken: string;
}

/** EOS strings tried, in order, when the config names none. */
const WELL_KNOWN_EOS = ['<|im_end|>', '<|endoftext|>', '<|eot_id|>', '</s>', '<eos>', '<|end|>'];

export class HfTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly eosId: number;
  readonly eosToken: string;
  /** ids of special added tokens (e.g. <|im_start|>), in ascending order. */
  readonly specialIds: readonly number[];
  private readonly lib: HfLibTokenizer;

  private constructor(private readonly tokenizerJson: unknown, private readonly configJson: Record<string, unknown>, source: string, opts: HfTokenizerOptions) {
    try {
      this.lib = new HfLibTokenizer(tokenizerJson as object, configJson);
    } catch (e) {
      throw new Error(`HfTokenizer: cannot load ${source}: ${(e as Error).message}`);
    }
    const vocab = this.lib.get_vocab(true);
    let maxId = -1;
    for (const id of vocab.values()) maxId = Math.max(maxId, id);
    if (maxId < 0) throw new Error(`HfTokenizer: ${source} has an empty vocabulary`);
    this.vocabSize = maxId + 1;
    this.specialIds = [...this.lib.get_added_tokens_decoder().entries()].filter(([, t]) => t.special).map(([id]) => id).sort((a, b) => a - b);

    const eos = opts.eosToken ?? tokenContent(configJson.eos_token) ?? WELL_KNOWN_EOS.find((t) => vocab.has(t));
    if (eos === undefined) {
      throw new Error(`HfTokenizer: cannot tell the end-of-sequence token of ${source} (tokenizer_config.json has no eos_token and none of ${WELL_KNOWN_EOS.join(' ')} is in the vocabulary); pass { eosToken: '...' }`);
    }
    const eosId = this.lib.token_to_id(eos);
    if (eosId === undefined) throw new Error(`HfTokenizer: the end-of-sequence token ${JSON.stringify(eos)} is not in the vocabulary of ${source}`);
    this.eosToken = eos;
    this.eosId = eosId;
  }

  /** Load `dir/tokenizer.json` and, when present, `dir/tokenizer_config.json`. */
  static fromDirectory(dir: string, opts: HfTokenizerOptions = {}): HfTokenizer {
    const tokPath = join(dir, 'tokenizer.json');
    if (!existsSync(tokPath)) throw new Error(`HfTokenizer: ${tokPath} does not exist (a Hugging Face model directory must contain tokenizer.json)`);
    const cfgPath = join(dir, 'tokenizer_config.json');
    const config = existsSync(cfgPath) ? readJson(cfgPath) : {};
    if (!isPlainObject(config)) throw new Error(`HfTokenizer: ${cfgPath} must hold a JSON object`);
    return new HfTokenizer(readJson(tokPath), config, tokPath, opts);
  }

  /** Build from already-parsed `tokenizer.json` (and `tokenizer_config.json`) contents. */
  static fromObjects(tokenizerJson: unknown, config: Record<string, unknown> = {}, opts: HfTokenizerOptions = {}): HfTokenizer {
    return new HfTokenizer(tokenizerJson, config, 'tokenizer.json', opts);
  }

  static fromJSON(json: unknown): HfTokenizer {
    const j = json as Partial<HfTokenizerJSON> | null;
    if (!j || typeof j !== 'object' || j.type !== 'huggingface') throw new Error(`HfTokenizer.fromJSON: expected an object with type 'huggingface'`);
    if (!isPlainObject(j.config)) throw new Error('HfTokenizer.fromJSON: `config` must be an object');
    return new HfTokenizer(j.tokenizer, j.config, 'checkpointed tokenizer', { eosToken: j.eosToken });
  }

  toJSON(): HfTokenizerJSON {
    return { type: 'huggingface', tokenizer: this.tokenizerJson, config: this.configJson, eosToken: this.eosToken };
  }

  /**
   * Token ids of `text`, without BOS/EOS unless `addSpecialTokens`. Special-token strings written in
   * the text (e.g. `<|im_start|>`) become their ids. Throws only for a model without an unknown
   * token whose vocabulary cannot spell the text (byte-level BPE spells everything).
   */
  encode(text: string, opts: { addSpecialTokens?: boolean } = {}): number[] {
    const enc: Encoding = this.lib.encode(text, { add_special_tokens: opts.addSpecialTokens ?? false });
    const bad = enc.ids.findIndex((id: number | undefined | null) => id === undefined || id === null);
    if (bad >= 0) throw new Error(`HfTokenizer: the vocabulary has no token for piece ${JSON.stringify(enc.tokens[bad])} and the model defines no unk_token`);
    return enc.ids;
  }

  decode(ids: readonly number[], opts: { skipSpecialTokens?: boolean } = {}): string {
    if (ids.length === 0) return '';
    return this.lib.decode([...ids], { skip_special_tokens: opts.skipSpecialTokens ?? false });
  }

  tokenString(id: number): string {
    const t = this.lib.id_to_token(id);
    if (t === undefined) throw new RangeError(`HfTokenizer: token id ${id} is not in the vocabulary (size ${this.vocabSize})`);
    return t;
  }

  tokenId(token: string): number | undefined {
    return this.lib.token_to_id(token);
  }
}

/** `eos_token` in tokenizer_config.json is either a string or an AddedToken-like `{ content }`. */
function tokenContent(x: unknown): string | undefined {
  if (typeof x === 'string') return x;
  if (isPlainObject(x) && typeof x.content === 'string') return x.content;
  return undefined;
}

function readJson(path: string): unknown {
  const text = readFileSync(path, 'utf8');
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`HfTokenizer: ${path} is not valid JSON: ${(e as Error).message}`);
  }
}

function isPlainObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}
