'use strict';
// Plain CommonJS on purpose, like failure-converter.js: the SDK loads this module by path
// with Node's own `require` (client, worker, and the workflow bundle).
//
// The default payload converter, plus one for the marker the payload codec puts in place
// of a payload it refused (one it did not encrypt). Inside a workflow the marker becomes a
// value the workflow interceptors refuse (workflows/payload-authenticity.ts): throwing
// there would fail the workflow task again and again instead of refusing once. Everywhere
// else (clients, activity workers) it is a non-retryable PayloadRefused failure.
// The strings agree with workflows/payload-refusal.ts (a unit test checks).
const { ApplicationFailure, CompositePayloadConverter, UndefinedPayloadConverter, BinaryPayloadConverter, JsonPayloadConverter } = require('@temporalio/common');
const { inWorkflowContext } = require('@temporalio/workflow');

const REFUSED_ENCODING = 'binary/ledgerlock-refused';
const PAYLOAD_REFUSED = 'PayloadRefused';
const REFUSED_MARK = '__ledgerlockRefusedPayload';
const REFUSED = Object.freeze({ [REFUSED_MARK]: true });

class RefusedPayloadConverter {
  constructor() {
    this.encodingType = REFUSED_ENCODING;
  }

  /** Never produces the marker: only the codec does. */
  toPayload() {
    return undefined;
  }

  fromPayload() {
    if (inWorkflowContext()) return REFUSED;
    throw ApplicationFailure.create({
      type: PAYLOAD_REFUSED,
      nonRetryable: true,
      message: "payload refused: it was not encrypted by Ledgerlock's payload codec",
    });
  }
}

exports.REFUSED_ENCODING = REFUSED_ENCODING;
exports.PAYLOAD_REFUSED = PAYLOAD_REFUSED;
exports.REFUSED_MARK = REFUSED_MARK;
exports.payloadConverter = new CompositePayloadConverter(
  new UndefinedPayloadConverter(),
  new BinaryPayloadConverter(),
  new JsonPayloadConverter(),
  new RefusedPayloadConverter(),
);
