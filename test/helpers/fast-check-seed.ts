/**
 * Property and fuzz tests run with a fixed fast-check seed so CI is deterministic; FC_SEED=<n> (or
 * FC_SEED=random) explores other inputs locally. A failure prints the seed and the counterexample.
 */
import fc from 'fast-check';

const env = process.env.FC_SEED;
const seed = env === 'random' ? Date.now() : env !== undefined ? Number(env) : 20261201;
if (!Number.isInteger(seed)) throw new Error(`FC_SEED must be an integer or 'random', got ${env}`);
fc.configureGlobal({ seed });
