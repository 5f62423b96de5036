'use strict';
// Plain CommonJS on purpose: the SDK loads this module by path with Node's own `require`
// (in the worker, the client and the workflow bundle), so it must load without a
// TypeScript loader in front of it.
//
// Failure messages and stack traces go into encoded attributes, so the payload codec
// encrypts them like any other payload: an exception message that mentions a customer
// never reaches the Temporal server in clear.
const { DefaultFailureConverter } = require('@temporalio/common');

exports.failureConverter = new DefaultFailureConverter({ encodeCommonAttributes: true });
