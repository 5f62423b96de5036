// Every workflow the worker registers. Names are persisted in histories: public API.
export { canaryWorkflow } from './canary';
export { customerRetentionWorkflow, eraseCustomerWorkflow, registerCustomerWorkflow } from './customers';
export { createSubscriptionWorkflow, subscriptionWorkflow } from './subscriptions';
export { dunningWorkflow } from './dunning';
export { keyRotationWorkflow } from './key-rotation';
