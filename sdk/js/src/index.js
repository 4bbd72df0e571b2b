// mics-sdk: the MICS client for browsers and Node. The tenant hook SDK (Node only) is `mics-sdk/hooks`.
export { connect, MicsClient, newClientMsgId } from './client.js';
export { Timeline, applyChange } from './timeline.js';
export { AgentStream, agentErrorOf, deltaOf } from './streams.js';
export * from './errors.js';
