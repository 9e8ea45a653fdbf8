#!/usr/bin/env node
/**
 * The package's `install` script: builds the native compute addon (build/Release/agentrl_native.node)
 * with node-gyp. On a user's machine a failed build is not an install failure: agentrl then runs on
 * its pure-JS backend, so this prints one warning line and exits 0 (machines without a C++ compiler
 * can still `npm ci`). With `AGENTRL_REQUIRE_NATIVE=1` (.ci/run sets it) a failed build is an error
 * (exit 1): CI must exercise the native kernels, not silently fall back. Plain `CI=true` is not
 * enough, so that projects depending on agentrl still install on CI machines without a compiler.
 *
 *   node scripts/build-native.mjs          # what `npm install` / `npm rebuild` runs
 *   AGENTRL_SKIP_NATIVE=1 npm ci           # skip the build entirely (also in CI: an explicit choice)
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);

/** node-gyp's CLI: the one npm passes in, else a local install, else the copy bundled with npm. */
function findNodeGyp() {
  const candidates = [];
  if (process.env.npm_config_node_gyp) candidates.push(process.env.npm_config_node_gyp);
  try {
    candidates.push(require.resolve('node-gyp/bin/node-gyp.js'));
  } catch {
    // not a dependency of this package: fall through to npm's bundled copy
  }
  const prefix = path.dirname(path.dirname(process.execPath));
  candidates.push(path.join(prefix, 'lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js'));
  candidates.push(path.join(path.dirname(process.execPath), 'node_modules/npm/node_modules/node-gyp/bin/node-gyp.js'));
  return candidates.find((c) => existsSync(c));
}

/**
 * Headers for the running Node, when they are installed locally (e.g. /usr/include/node from the
 * distribution's nodejs package): pointing node-gyp at them avoids a download, so offline builds work.
 */
function localNodeDir() {
  if (process.env.npm_config_nodedir) return undefined; // npm already told node-gyp
  const prefix = path.dirname(path.dirname(process.execPath));
  const versionHeader = path.join(prefix, 'include/node/node_version.h');
  if (!existsSync(versionHeader)) return undefined;
  const text = readFileSync(versionHeader, 'utf8');
  const part = (name) => text.match(new RegExp(`#define NODE_${name}_VERSION (\\d+)`))?.[1];
  const headerVersion = `v${part('MAJOR')}.${part('MINOR')}.${part('PATCH')}`;
  return headerVersion === process.version ? prefix : undefined;
}

const truthy = (v) => v !== undefined && v !== '' && v !== '0' && v.toLowerCase() !== 'false';
const required = truthy(process.env.AGENTRL_REQUIRE_NATIVE);

function warn(reason) {
  if (required) {
    console.error(`agentrl: native addon not built (${reason}). This is an error because AGENTRL_REQUIRE_NATIVE is set (CI must test the native kernels): install a C++ compiler and the Node headers, or unset it to fall back to the pure-JS backend.`);
    process.exit(1);
  }
  console.warn(`agentrl: native addon not built (${reason}); agentrl will use the slower pure-JS backend. Fix the cause and run \`npm rebuild agentrl\` to retry.`);
  process.exit(0);
}

if (process.env.AGENTRL_SKIP_NATIVE === '1') {
  console.warn('agentrl: native addon not built (AGENTRL_SKIP_NATIVE=1); agentrl will use the slower pure-JS backend.');
  process.exit(0);
}
const nodeGyp = findNodeGyp();
if (!nodeGyp) warn('node-gyp not found');
const args = [nodeGyp, 'rebuild', '--jobs', 'max'];
const nodedir = localNodeDir();
if (nodedir) args.push(`--nodedir=${nodedir}`);
const result = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' });
if (result.error) warn(`could not run node-gyp: ${result.error.message}`);
if (result.status !== 0) warn(`node-gyp exited with status ${result.status ?? result.signal}; is a C++ compiler installed?`);
const addonPath = path.join(root, 'build/Release/agentrl_native.node');
if (!existsSync(addonPath)) warn('node-gyp finished but build/Release/agentrl_native.node is missing');
// Built is not enough: it must load here (a missing libgomp or an ABI mismatch shows up only now).
try {
  const info = require(addonPath).info();
  console.log(`agentrl: native addon built (build/Release/agentrl_native.node; GEMM paths: ${info.paths.join(', ')})`);
} catch (e) {
  warn(`build/Release/agentrl_native.node was built but does not load: ${String(e?.message ?? e).split('\n')[0]}`);
}
