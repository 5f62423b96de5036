import { createRequire } from 'node:module';
import type { History } from '@temporalio/common/lib/proto-utils';
import type * as protoModule from '@temporalio/proto';

/**
 * Workflow histories to and from the JSON that Temporal's tools write (`temporal workflow
 * show --output json`, the Web UI's download).
 *
 * Not the SDK's historyToJSON/historyFromJSON: with this install they throw "type must be
 * a Type". @grpc/proto-loader pins protobufjs 7 at the top of node_modules, so npm gives
 * @temporalio/common and @temporalio/proto each their own nested copy of protobufjs 8, and
 * common's protojson refuses the types of proto's copy. Here the protojson extension is
 * loaded from the very copy @temporalio/proto uses, which holds with any layout.
 */

interface ProtoJson {
  toJson(type: unknown, message: unknown): unknown;
  fromJson(type: unknown, json: unknown, options?: { ignoreUnknownFields?: boolean }): unknown;
}

// Plain require, not an ES import: the root must be the CommonJS module object itself, under tsx and vitest alike.
const protoRequire = createRequire(require.resolve('@temporalio/proto'));
const proto = require('@temporalio/proto') as typeof protoModule;
const { patchProtobufRoot } = require('@temporalio/proto/lib/patch-protobuf-root') as { patchProtobufRoot<T>(root: T): T };
const protojson = protoRequire('protobufjs/ext/protojson') as ProtoJson;
const historyType = (patchProtobufRoot(proto) as unknown as { lookupType(name: string): unknown }).lookupType('temporal.api.history.v1.History');

export function historyToJson(history: History): unknown {
  return protojson.toJson(historyType, proto.temporal.api.history.v1.History.fromObject(history));
}

/** A history object the replayer takes as it is (64-bit ids as Long, not strings). */
export function historyFromJson(json: unknown): History {
  if (typeof json !== 'object' || json === null || !Array.isArray((json as { events?: unknown }).events)) {
    throw new TypeError('not a workflow history: expected an object with an array of events');
  }
  return protojson.fromJson(historyType, json, { ignoreUnknownFields: true }) as History;
}
