// The JS SDK over wss:// (run by tests/integration/test_tls.py with NODE_EXTRA_CA_CERTS naming the
// test CA): alice and bob join the tenant, alice sends bob a message, and the outcome is printed as
// one JSON line. A failed join prints {"error": uri} and exits 1.
import { connect } from '../../sdk/js/src/index.js';

const [url, tenant] = process.argv.slice(2);
const options = { url, tenant, reconnect: false };
try {
  const bob = await connect({ ...options, token: 'tok-bob', deviceId: 'js' });
  const got = new Promise((resolve) => bob.on('message', resolve));
  const alice = await connect({ ...options, token: 'tok-alice', deviceId: 'js' });
  const ack = await alice.send('bob', { text: 'hello over wss' });
  const message = await got;
  console.log(JSON.stringify({ node_id: alice.welcome.authextra.node_id, ack, body: message.body }));
  await Promise.all([alice.close(), bob.close()]);
} catch (err) {
  console.log(JSON.stringify({ error: err.uri || String(err), message: err.message }));
  process.exitCode = 1;
}
