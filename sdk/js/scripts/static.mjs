// Vendor the Autobahn|JS browser bundle for the demo page the node serves (components/mics/static/vendor).
// The SDK itself is served through the symlink components/mics/static/sdk -> sdk/js/src.
// Usage: node sdk/js/scripts/static.mjs [--check]   (--check: fail if the committed copy differs)
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const here = (p) => fileURLToPath(new URL(p, import.meta.url));
const files = [
  [here('../node_modules/autobahn-browser/autobahn.min.js'), here('../../../components/mics/static/vendor/autobahn.min.js')],
  [here('../node_modules/autobahn-browser/LICENSE'), here('../../../components/mics/static/vendor/autobahn.LICENSE')],
];
const check = process.argv.includes('--check');
let stale = 0;
for (const [from, to] of files) {
  const data = readFileSync(from);
  if (existsSync(to) && readFileSync(to).equals(data)) continue;
  if (check) {
    console.error(`stale: ${to} differs from ${from} (run: node sdk/js/scripts/static.mjs)`);
    stale += 1;
  } else {
    writeFileSync(to, data);
    console.log(`wrote ${to}`);
  }
}
process.exit(stale ? 1 : 0);
