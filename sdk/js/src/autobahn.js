// Autobahn|JS for Node and the browser: the browser page loads the autobahn-browser bundle
// (a classic <script> defining `window.autobahn`); Node imports the npm package.
let ab = globalThis.autobahn;
if (!ab) {
  try {
    ab = (await import('autobahn')).default;
  } catch (err) {
    throw new Error('mics-sdk needs Autobahn|JS: load autobahn.min.js first in the browser, or npm install autobahn', {
      cause: err,
    });
  }
}

// Autobahn prints every connection close and retry with console.warn; the SDK reports those
// as events instead, so drop just that lifecycle noise (other warnings still print).
const NOISE = /^(connection closed|auto-reconnect|giving up trying|auto-reconnect disabled)/;
if (ab.log && !ab.log.__micsQuiet) {
  const warn = ab.log.warn;
  ab.log.warn = (first, ...rest) => {
    if (typeof first === 'string' && NOISE.test(first)) return;
    warn(first, ...rest);
  };
  ab.log.__micsQuiet = true;
}

export default ab;
