#!/usr/bin/env node
// Patched launcher of the npm Firestore emulator (@firestore-emulator/server 0.3.15).
//
//   node emulators/firestore_server.mjs --host 127.0.0.1 --port 8081 --admin-port 8082
//
// prints one line `READY <host>:<port> admin <host>:<admin-port>` once both ports listen, and
// exits cleanly on SIGTERM / SIGINT (and, with --exit-on-stdin-close, when its stdin closes, so
// a crashed parent never leaves it behind). Port 0 picks a free port (the READY line tells which).
//
// The package is a small, readable emulator, but it gets several things wrong that the product
// (and any user of the Python client) relies on. Every fix below replaces one method of the
// package's classes at startup (node_modules is never edited) and names, in a comment, what real
// Firestore does. In short:
//   - queries: cursors, offset, implicit ordering by __name__, filters/orders/cursors on __name__,
//     documents lacking an order_by field excluded, Firestore's cross-type value ordering, select
//     projection, unary filters, nested composite filters, dotted field paths, collection groups;
//   - writes: atomic commits, update_time and exists preconditions, update masks that delete,
//     every field transform (ArrayUnion, ...) with transform_results, strictly increasing commit
//     times with microsecond precision, no-op writes keep their update_time;
//   - RPCs the package leaves unimplemented: BatchWrite, GetDocument, ListDocuments,
//     ListCollectionIds; Listen sends incremental changes (and handles remove_target);
//   - transactions: conflicts abort (ABORTED, retried by clients), older transactions win;
//   - an admin HTTP server: /health, billing-like /stats, and DELETE of a project's documents.
//
// Known gaps (not needed by the product): no security rules, no composite-index requirements
// or query-shape validation, reads at a past read_time see current data, non-transactional
// writes do not wait for transaction locks, query explain, vector search, PartitionQuery,
// the Write stream and the unary Create/Update/DeleteDocument RPCs are missing.

import { randomBytes } from "node:crypto";
import http from "node:http";
import { createRequire } from "node:module";
import { parseArgs } from "node:util";

// Exit cleanly on SIGTERM / SIGINT, also while still starting up (before the modules load).
const shutdownSteps = [];
function shutdown() {
  for (const step of shutdownSteps.splice(0)) {
    try {
      step();
    } catch (err) {
      console.error("shutdown:", err);
    }
  }
  process.exit(0);
}
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);

const require = createRequire(import.meta.url);
const grpc = require("@grpc/grpc-js");
const {
  FirestoreServer,
  FirestoreState,
  FirestoreStateCollection,
  FirestoreStateDatabase,
  FirestoreStateDocument,
  FirestoreStateProject,
} = require("@firestore-emulator/server");
// Messages of the Firestore service as the package's gRPC definition (de)serializes them.
const proto = require("@firestore-emulator/proto/dist/google/firestore/v1/firestore");
const { Empty } = require("@firestore-emulator/proto/dist/google/protobuf/empty");
const {
  StructuredQueryCompositeFilterOperator: CompositeOp,
  StructuredQueryDirection: Direction,
  StructuredQueryFieldFilterOperator: FieldOp,
  StructuredQueryUnaryFilterOperator: UnaryOp,
} = require("@firestore-emulator/proto/dist/google/firestore/v1/query");

const Status = grpc.status;
const TargetChangeType = proto.TargetChangeTargetChangeType;
const REQUEST_TIME = 1; // DocumentTransform.FieldTransform.ServerValue.REQUEST_TIME

// ---------------------------------------------------------------------------------------------
// Errors and the commit clock
// ---------------------------------------------------------------------------------------------

/** An error that reaches the client as a gRPC status. */
class RpcError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
    this.details = message;
  }
}

function toServiceError(err) {
  if (err instanceof RpcError) return err;
  if (err && typeof err.code === "number") return new RpcError(err.code, err.message);
  // The package's path parsing throws plain errors for malformed names.
  if (/^Invalid path/.test(err?.message)) return new RpcError(Status.INVALID_ARGUMENT, err.message);
  console.error(err);
  return new RpcError(Status.INTERNAL, `emulator error: ${err?.message ?? err}`);
}

let lastCommitMicros = 0;
const nowMicros = () => Math.floor((performance.timeOrigin + performance.now()) * 1000);

// Real Firestore: commit times only grow, with microsecond precision; two commits in the same
// millisecond still get distinct, increasing times (the package used Date, in milliseconds).
function nextCommitMicros() {
  lastCommitMicros = Math.max(nowMicros(), lastCommitMicros + 1);
  return lastCommitMicros;
}

// A read time is never before the last commit, so a reader sees every commit acknowledged earlier.
const readTimeMicros = () => Math.max(nowMicros(), lastCommitMicros);

const timestampObject = (micros) => ({
  seconds: Math.floor(micros / 1e6),
  nanos: (micros % 1e6) * 1000,
});

// ---------------------------------------------------------------------------------------------
// Values: the package's field classes, Firestore's ordering and equality, field paths
// ---------------------------------------------------------------------------------------------

// The package does not export its field classes; take them from a document it builds itself.
const FieldClass = captureFieldClasses();

function captureFieldClasses() {
  const samples = {
    null_value: { null_value: 0 },
    boolean_value: { boolean_value: true },
    integer_value: { integer_value: 1 },
    double_value: { double_value: 0.5 },
    timestamp_value: { timestamp_value: { seconds: 1, nanos: 0 } },
    string_value: { string_value: "s" },
    bytes_value: { bytes_value: new Uint8Array([1]) },
    reference_value: { reference_value: "projects/p/databases/(default)/documents/c/d" },
    geo_point_value: { geo_point_value: { latitude: 1, longitude: 1 } },
    array_value: { array_value: { values: [] } },
    map_value: { map_value: { fields: {} } },
  };
  const name = "projects/bootstrap/databases/(default)/documents/c/d";
  const scratch = new FirestoreState();
  const update = { name, fields: samples };
  const [write] = proto.CommitRequest.fromObject({ writes: [{ update }] }).writes;
  scratch.writeV1Document(new Date(), write);
  const { fields } = scratch.getDocument(name);
  return Object.fromEntries(Object.keys(samples).map((type) => [type, fields[type].constructor]));
}

const makeField = (type, value) => new FieldClass[type](value);
const NULL = makeField("null_value");
const referenceField = (name) => makeField("reference_value", name);
const timestampField = (micros) => makeField("timestamp_value", timestampObject(micros));

/** A google.firestore.v1.Value message to the package's field object. */
function fieldFromProto(v) {
  if (v.has_null_value) return NULL;
  if (v.has_boolean_value) return makeField("boolean_value", v.boolean_value);
  if (v.has_integer_value) return makeField("integer_value", Number(v.integer_value));
  if (v.has_double_value) return makeField("double_value", v.double_value);
  if (v.has_timestamp_value) {
    const { seconds, nanos } = v.timestamp_value;
    return makeField("timestamp_value", { seconds: Number(seconds), nanos });
  }
  if (v.has_string_value) return makeField("string_value", v.string_value);
  if (v.has_bytes_value) return makeField("bytes_value", v.bytes_value);
  if (v.has_reference_value) return referenceField(v.reference_value);
  if (v.has_geo_point_value) {
    const { latitude, longitude } = v.geo_point_value;
    return makeField("geo_point_value", { latitude, longitude });
  }
  if (v.has_array_value) return makeField("array_value", v.array_value.values.map(fieldFromProto));
  if (v.has_map_value) return makeField("map_value", fieldsFromProto(v.map_value.fields));
  throw new RpcError(Status.INVALID_ARGUMENT, "a value has no type");
}

const fieldsFromProto = (map) =>
  Object.fromEntries(Array.from(map, ([key, value]) => [key, fieldFromProto(value)]));

const fieldsToObject = (fields) =>
  Object.fromEntries(Object.entries(fields).map(([key, f]) => [key, f.toV1ValueObject()]));

// Real Firestore orders values of different types by type:
// null < boolean < number (integer and double mixed, NaN first) < timestamp < string < bytes
//   < reference < geo point < array < map.
const TYPE_ORDER = {
  null_value: 0,
  boolean_value: 1,
  integer_value: 2,
  double_value: 2,
  timestamp_value: 3,
  string_value: 4,
  bytes_value: 5,
  reference_value: 6,
  geo_point_value: 7,
  array_value: 8,
  map_value: 9,
};

const sameTypeOrder = (a, b) => TYPE_ORDER[a.type] === TYPE_ORDER[b.type];

function compareNumbers(x, y) {
  if (Number.isNaN(x)) return Number.isNaN(y) ? 0 : -1;
  if (Number.isNaN(y)) return 1;
  return x < y ? -1 : x > y ? 1 : 0; // -0 == 0
}

// Strings compare by their UTF-8 bytes, i.e. by code point. JavaScript compares UTF-16 code
// units, which differs only between a surrogate (U+D800-DFFF) and a unit of U+E000-FFFF.
function compareUtf8(a, b) {
  if (a === b) return 0;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x === y) continue;
    if (x >= 0xd800) x = x <= 0xdfff ? x + 0x2000 : x - 0x800;
    if (y >= 0xd800) y = y <= 0xdfff ? y + 0x2000 : y - 0x800;
    return x - y;
  }
  return a.length - b.length;
}

function compareBytes(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

// Document names (and reference values) compare segment by segment, ids by UTF-8 bytes, so
// `c/a/x/y` sorts before `c/a0`.
function compareResourceNames(a, b) {
  if (a === b) return 0;
  const sa = a.split("/");
  const sb = b.split("/");
  const n = Math.min(sa.length, sb.length);
  for (let i = 0; i < n; i++) {
    const c = compareUtf8(sa[i], sb[i]);
    if (c !== 0) return c;
  }
  return sa.length - sb.length;
}

function compareValues(a, b) {
  const byType = TYPE_ORDER[a.type] - TYPE_ORDER[b.type];
  if (byType !== 0) return byType;
  switch (a.type) {
    case "null_value":
      return 0;
    case "boolean_value":
      return Number(a.value) - Number(b.value);
    case "integer_value":
    case "double_value":
      return compareNumbers(a.value, b.value);
    case "timestamp_value":
      return a.value.seconds - b.value.seconds || a.value.nanos - b.value.nanos;
    case "string_value":
      return compareUtf8(a.value, b.value);
    case "bytes_value":
      return compareBytes(a.value, b.value);
    case "reference_value":
      return compareResourceNames(a.value, b.value);
    case "geo_point_value":
      return (
        compareNumbers(a.value.latitude, b.value.latitude) ||
        compareNumbers(a.value.longitude, b.value.longitude)
      );
    case "array_value": {
      const n = Math.min(a.value.length, b.value.length);
      for (let i = 0; i < n; i++) {
        const c = compareValues(a.value[i], b.value[i]);
        if (c !== 0) return c;
      }
      return a.value.length - b.value.length;
    }
    case "map_value": {
      const ka = Object.keys(a.value).sort(compareUtf8);
      const kb = Object.keys(b.value).sort(compareUtf8);
      const n = Math.min(ka.length, kb.length);
      for (let i = 0; i < n; i++) {
        const c = compareUtf8(ka[i], kb[i]) || compareValues(a.value[ka[i]], b.value[kb[i]]);
        if (c !== 0) return c;
      }
      return ka.length - kb.length;
    }
    default:
      throw new Error(`unknown value type ${a.type}`);
  }
}

/** Query equality: 1 == 1.0, as Firestore's indexes see numbers. */
const valueEquals = (a, b) => sameTypeOrder(a, b) && compareValues(a, b) === 0;

/** Stored-data identity (1 and 1.0 differ): decides whether a write changed a document. */
function identical(a, b) {
  if (a.type !== b.type) return false;
  switch (a.type) {
    case "array_value":
      return a.value.length === b.value.length && a.value.every((v, i) => identical(v, b.value[i]));
    case "map_value":
      return fieldsIdentical(a.value, b.value);
    case "double_value":
      return Object.is(a.value, b.value);
    default:
      return compareValues(a, b) === 0;
  }
}

function fieldsIdentical(a, b) {
  const keys = Object.keys(a);
  if (keys.length !== Object.keys(b).length) return false;
  return keys.every((k) => k in b && identical(a[k], b[k]));
}

const isNumber = (f) => f !== undefined && TYPE_ORDER[f.type] === 2;
const isNaNValue = (f) => f?.type === "double_value" && Number.isNaN(f.value);

// Field paths: `a.b` names field b of map a; a segment in backticks may hold dots (`a.b`.c).
const fieldPathCache = new Map();

function parseFieldPath(path) {
  let segments = fieldPathCache.get(path);
  if (segments) return segments;
  segments = [];
  let i = 0;
  while (i < path.length) {
    let segment = "";
    if (path[i] === "`") {
      for (i++; i < path.length && path[i] !== "`"; i++) {
        if (path[i] === "\\") i++;
        segment += path[i];
      }
      i++;
    } else {
      let end = path.indexOf(".", i);
      if (end < 0) end = path.length;
      segment = path.slice(i, end);
      i = end;
    }
    segments.push(segment);
    if (path[i] === ".") i++;
  }
  if (fieldPathCache.size > 10000) fieldPathCache.clear();
  fieldPathCache.set(path, segments);
  return segments;
}

function getPathValue(fields, segments) {
  let value = fields[segments[0]];
  for (let i = 1; i < segments.length; i++) {
    if (value?.type !== "map_value") return undefined;
    value = value.value[segments[i]];
  }
  return value;
}

/** A copy of `fields` with the value at `segments` replaced (or removed when undefined). */
function withPathValue(fields, segments, value) {
  const [head, ...rest] = segments;
  const copy = { ...fields };
  if (rest.length === 0) {
    if (value === undefined) delete copy[head];
    else copy[head] = value;
    return copy;
  }
  const child = fields[head]?.type === "map_value" ? fields[head].value : undefined;
  if (value === undefined && child === undefined) return fields;
  copy[head] = makeField("map_value", withPathValue(child ?? {}, rest, value));
  return copy;
}

function projectFields(fields, paths) {
  let projected = {};
  for (const segments of paths) {
    const value = getPathValue(fields, segments);
    if (value !== undefined) projected = withPathValue(projected, segments, value);
  }
  return projected;
}

/** The paths of a DocumentMask / Projection, or null for "all fields". */
function maskPaths(fieldPaths) {
  return fieldPaths.filter((p) => p !== "__name__").map(parseFieldPath);
}

// ---------------------------------------------------------------------------------------------
// Document store patches
// ---------------------------------------------------------------------------------------------

const emptyMetadata = Object.freeze({ hasExist: false, createdAt: null, updatedAt: null });

// Documents we wrote carry microseconds; others only the package's millisecond Dates.
const createMicrosOf = ({ metadata }) => metadata.createMicros ?? metadata.createdAt * 1000;
const updateMicrosOf = ({ metadata }) => metadata.updateMicros ?? metadata.updatedAt * 1000;

/** The stored version of a document: update_time in microseconds, 0 when it does not exist. */
const versionOf = (doc) => (doc.metadata.hasExist ? updateMicrosOf(doc) : 0);

/** The document as a google.firestore.v1.Document object, optionally projected. */
function documentObject(doc, paths = null) {
  const fields = paths ? projectFields(doc.fields, paths) : doc.fields;
  return {
    name: doc.getPath(),
    fields: fieldsToObject(fields),
    create_time: timestampObject(createMicrosOf(doc)),
    update_time: timestampObject(updateMicrosOf(doc)),
  };
}

/** owner[property][key], created on first use (the record is copied once if frozen). */
function getOrCreate(owner, property, key, create) {
  let children = owner[property];
  if (!Object.hasOwn(children, key)) {
    if (Object.isFrozen(children)) owner[property] = children = { ...children };
    children[key] = create();
  }
  return children[key];
}

// The package copies a whole immutable record (immer) each time it creates a project,
// database, collection or document, which makes inserting n documents cost O(n^2). Real
// Firestore writes in constant time: same lookups here, with one object mutated in place.
function patchFastLookups() {
  FirestoreState.prototype.getProject = function getProject(name) {
    return getOrCreate(this, "projects", name, () =>
      new FirestoreStateProject(this.emitter, name, {}),
    );
  };
  FirestoreStateProject.prototype.getDatabase = function getDatabase(name) {
    return getOrCreate(this, "databases", name, () =>
      new FirestoreStateDatabase(this.emitter, this, name, {}),
    );
  };
  FirestoreStateDatabase.prototype.getCollection = function getCollection(name) {
    return getOrCreate(this, "collections", name, () =>
      new FirestoreStateCollection(this.emitter, this, this, name, {}),
    );
  };
  FirestoreStateDocument.prototype.getCollection = function getCollection(name) {
    return getOrCreate(this, "collections", name, () =>
      new FirestoreStateCollection(this.emitter, this.database, this, name, {}),
    );
  };
  FirestoreStateCollection.prototype.getDocument = function getDocument(id) {
    return getOrCreate(this, "documents", id, () =>
      new FirestoreStateDocument(this.emitter, this.database, this, id, {}, {}),
    );
  };
}

// Dotted field paths (`a.b`, `` `a.b`.c ``) address nested map fields, as in real Firestore
// (the package threw "Not implemented").
function patchFieldPaths() {
  FirestoreStateDocument.prototype.getField = function getField(path) {
    return getPathValue(this.fields, parseFieldPath(path));
  };
}

// Real Firestore's create_time / update_time carry the microseconds of their commit.
function patchDocumentTimestamps() {
  FirestoreStateDocument.prototype.toV1Document = function toV1Document() {
    return proto.BatchGetDocumentsResponse.fromObject({ found: documentObject(this) }).found;
  };
}

// The package's own query path (v1Query) runs the fixed query engine too.
function patchQueryEngine() {
  FirestoreState.prototype.v1Query = function v1Query(parent, query) {
    return runQuery(parent, query).docs;
  };
}

// ---------------------------------------------------------------------------------------------
// Resource names
// ---------------------------------------------------------------------------------------------

const NAME_PATTERN = /^projects\/([^/]+)\/databases\/([^/]+)\/documents(?:\/(.*))?$/;

function parseName(name) {
  const match = NAME_PATTERN.exec(name);
  if (!match) throw new RpcError(Status.INVALID_ARGUMENT, `invalid resource name: ${name}`);
  const [, project, database, path] = match;
  return { project, database, segments: path ? path.split("/") : [] };
}

const projectOf = (name) => NAME_PATTERN.exec(name)?.[1] ?? /^projects\/([^/]+)/.exec(name)?.[1];

function documentAt(name) {
  const { segments } = parseName(name);
  if (segments.length === 0 || segments.length % 2 !== 0 || segments.some((s) => !s)) {
    throw new RpcError(Status.INVALID_ARGUMENT, `not a document name: ${name}`);
  }
  return state.getDocument(name);
}

/** The database (for `.../documents`) or document that a parent name points to. */
function parentNode(parent) {
  const { project, database, segments } = parseName(parent);
  if (segments.length === 0) return state.getProject(project).getDatabase(database);
  if (segments.length % 2 !== 0) {
    throw new RpcError(Status.INVALID_ARGUMENT, `not a document or database name: ${parent}`);
  }
  return state.getDocument(parent);
}

// Children of the package's nodes (TypeScript-private properties, plain at runtime).
const childCollections = (node) => Object.values(node.collections);
const childDocuments = (collection) => Object.values(collection.documents);

// ---------------------------------------------------------------------------------------------
// Queries
// ---------------------------------------------------------------------------------------------

/** The value a query sees at a field path; `__name__` is the document's reference. */
function queryValue(doc, path) {
  return path === "__name__" ? referenceField(doc.getPath()) : doc.getField(path);
}

// Filters, as Firestore evaluates them: a missing field matches nothing (not even != / not-in);
// != and not-in also skip null; range and equality filters only match values of the operand's
// type class (numbers together); filters on __name__ compare reference values.
const FIELD_FILTERS = {
  [FieldOp.EQUAL]: (v, x) => v !== undefined && valueEquals(v, x),
  [FieldOp.NOT_EQUAL]: (v, x) => v !== undefined && v.type !== "null_value" && !valueEquals(v, x),
  [FieldOp.LESS_THAN]: (v, x) => v !== undefined && sameTypeOrder(v, x) && compareValues(v, x) < 0,
  [FieldOp.LESS_THAN_OR_EQUAL]: (v, x) =>
    v !== undefined && sameTypeOrder(v, x) && compareValues(v, x) <= 0,
  [FieldOp.GREATER_THAN]: (v, x) =>
    v !== undefined && sameTypeOrder(v, x) && compareValues(v, x) > 0,
  [FieldOp.GREATER_THAN_OR_EQUAL]: (v, x) =>
    v !== undefined && sameTypeOrder(v, x) && compareValues(v, x) >= 0,
  [FieldOp.ARRAY_CONTAINS]: (v, x) =>
    v?.type === "array_value" && v.value.some((e) => valueEquals(e, x)),
  [FieldOp.ARRAY_CONTAINS_ANY]: (v, x) =>
    v?.type === "array_value" && v.value.some((e) => x.value.some((y) => valueEquals(e, y))),
  [FieldOp.IN]: (v, x) => v !== undefined && x.value.some((y) => valueEquals(v, y)),
  [FieldOp.NOT_IN]: (v, x) =>
    v !== undefined &&
    v.type !== "null_value" &&
    !x.value.some((y) => y.type === "null_value" || valueEquals(v, y)),
};

const UNARY_FILTERS = {
  [UnaryOp.IS_NAN]: (v) => isNaNValue(v),
  [UnaryOp.IS_NULL]: (v) => v?.type === "null_value",
  [UnaryOp.IS_NOT_NAN]: (v) => v !== undefined && v.type !== "null_value" && !isNaNValue(v),
  [UnaryOp.IS_NOT_NULL]: (v) => v !== undefined && v.type !== "null_value",
};

const INEQUALITY_OPS = new Set([
  FieldOp.LESS_THAN,
  FieldOp.LESS_THAN_OR_EQUAL,
  FieldOp.GREATER_THAN,
  FieldOp.GREATER_THAN_OR_EQUAL,
  FieldOp.NOT_EQUAL,
  FieldOp.NOT_IN,
]);
const INEQUALITY_UNARY_OPS = new Set([UnaryOp.IS_NOT_NAN, UnaryOp.IS_NOT_NULL]);

/** A predicate over documents for a StructuredQuery.Filter; composites nest to any depth. */
function compileFilter(filter) {
  if (filter.has_composite_filter) {
    const { op, filters } = filter.composite_filter;
    const parts = filters.map(compileFilter);
    if (op === CompositeOp.AND) return (doc) => parts.every((p) => p(doc));
    if (op === CompositeOp.OR) return (doc) => parts.some((p) => p(doc));
    throw new RpcError(Status.INVALID_ARGUMENT, `unsupported composite filter operator ${op}`);
  }
  if (filter.has_field_filter) {
    const { field, op } = filter.field_filter;
    const test = FIELD_FILTERS[op];
    if (!test) throw new RpcError(Status.INVALID_ARGUMENT, `unsupported filter operator ${op}`);
    const operand = fieldFromProto(filter.field_filter.value);
    const listOp = op === FieldOp.IN || op === FieldOp.NOT_IN || op === FieldOp.ARRAY_CONTAINS_ANY;
    if (listOp && (operand.type !== "array_value" || operand.value.length === 0)) {
      throw new RpcError(
        Status.INVALID_ARGUMENT,
        "in / not-in / array-contains-any filters need a non-empty array",
      );
    }
    const path = field.field_path;
    if (path === "__name__") checkNameOperand(operand, listOp);
    return (doc) => test(queryValue(doc, path), operand);
  }
  if (filter.has_unary_filter) {
    const { field, op } = filter.unary_filter;
    const test = UNARY_FILTERS[op];
    if (!test) throw new RpcError(Status.INVALID_ARGUMENT, `unsupported unary operator ${op}`);
    const path = field.field_path;
    return (doc) => test(queryValue(doc, path));
  }
  return () => true;
}

// Filters on __name__ take document references (real Firestore rejects other values).
function checkNameOperand(operand, listOp) {
  const values = listOp ? operand.value : [operand];
  if (values.some((v) => v.type !== "reference_value")) {
    throw new RpcError(Status.INVALID_ARGUMENT, "__name__ filters need document references");
  }
}

function inequalityFields(filter, out = new Set()) {
  if (filter.has_composite_filter) {
    for (const f of filter.composite_filter.filters) inequalityFields(f, out);
  } else if (filter.has_field_filter && INEQUALITY_OPS.has(filter.field_filter.op)) {
    out.add(filter.field_filter.field.field_path);
  } else if (filter.has_unary_filter && INEQUALITY_UNARY_OPS.has(filter.unary_filter.op)) {
    out.add(filter.unary_filter.field.field_path);
  }
  return out;
}

// Real Firestore's effective ordering: the explicit order_by, then fields with inequality
// filters that are not ordered yet (by field path), then __name__, the implicit ones in the
// direction of the last explicit order (ascending without one).
function normalizedOrders(query) {
  const orders = query.order_by.map((o) => ({
    path: o.field.field_path,
    descending: o.direction === Direction.DESCENDING,
  }));
  const ordered = new Set(orders.map((o) => o.path));
  const descending = orders.length > 0 && orders[orders.length - 1].descending;
  const implicit = query.has_where ? [...inequalityFields(query.where)] : [];
  for (const path of implicit.filter((p) => !ordered.has(p) && p !== "__name__").sort()) {
    orders.push({ path, descending });
  }
  if (!ordered.has("__name__")) orders.push({ path: "__name__", descending });
  return orders;
}

/** The documents of the query's collection (or, for all_descendants, collection group). */
function candidateDocuments(parent, from) {
  if (from.length !== 1) {
    throw new RpcError(Status.INVALID_ARGUMENT, "a query must select exactly one collection");
  }
  const { collection_id: collectionId, all_descendants: allDescendants } = from[0];
  if (!allDescendants) return childDocuments(state.getCollection(`${parent}/${collectionId}`));
  // Collection group: every collection with that id at any depth below the parent.
  const docs = [];
  const visit = (node) => {
    for (const collection of childCollections(node)) {
      const children = childDocuments(collection);
      if (!collectionId || collection.name === collectionId) docs.push(...children);
      for (const child of children) visit(child);
    }
  };
  visit(parentNode(parent));
  return docs;
}

function cursorValues(cursor, orders) {
  if (cursor.values.length > orders.length) {
    throw new RpcError(Status.INVALID_ARGUMENT, "too many cursor values for the query's orders");
  }
  return cursor.values.map(fieldFromProto);
}

/** Compares rows by their order keys (the first n orders), each in its direction. */
function rowComparator(orders) {
  return (a, b, n = orders.length) => {
    for (let i = 0; i < n; i++) {
      const c = compareValues(a.keys[i], b.keys[i]);
      if (c !== 0) return orders[i].descending ? -c : c;
    }
    return 0;
  };
}

// Cursors as real Firestore reads them: values align with the normalized orders (a prefix of
// them; a __name__ value is a document reference). start_at has before=true (inclusive),
// start_after before=false; end_before has before=true (exclusive), end_at before=false.
function applyCursors(rows, query, orders) {
  const compareRows = rowComparator(orders);
  let kept = rows;
  if (query.has_start_at) {
    const cursor = { keys: cursorValues(query.start_at, orders) };
    const { before } = query.start_at;
    kept = kept.filter((row) => {
      const c = compareRows(row, cursor, cursor.keys.length);
      return c > 0 || (c === 0 && before);
    });
  }
  if (query.has_end_at) {
    const cursor = { keys: cursorValues(query.end_at, orders) };
    const { before } = query.end_at;
    kept = kept.filter((row) => {
      const c = compareRows(row, cursor, cursor.keys.length);
      return c < 0 || (c === 0 && !before);
    });
  }
  return kept;
}

/**
 * Runs a StructuredQuery the way Firestore does: filters; the normalized order, which leaves
 * out documents lacking an ordered field; cursors; then offset (after cursors) and limit.
 * Returns the documents, how many the offset skipped, and the select projection: the listed
 * paths (`__name__` alone: no fields), or null for all fields (no or an empty projection).
 */
function runQuery(parent, query) {
  if (query.has_find_nearest) {
    throw new RpcError(Status.UNIMPLEMENTED, "vector search is not supported by this emulator");
  }
  const matches = query.has_where ? compileFilter(query.where) : () => true;
  const orders = normalizedOrders(query);
  const rows = [];
  for (const doc of candidateDocuments(parent, query.from)) {
    if (!doc.metadata.hasExist || !matches(doc)) continue;
    const keys = orders.map((o) => queryValue(doc, o.path));
    if (keys.some((k) => k === undefined)) continue;
    rows.push({ doc, keys });
  }
  rows.sort(rowComparator(orders));
  const positioned = applyCursors(rows, query, orders);
  const skipped = Math.min(query.offset, positioned.length);
  let docs = positioned.slice(skipped).map((row) => row.doc);
  if (query.has_limit) docs = docs.slice(0, Math.max(0, query.limit.value));
  const paths =
    query.has_select && query.select.fields.length > 0
      ? maskPaths(query.select.fields.map((f) => f.field_path))
      : null;
  return { docs, skipped, paths };
}

// ---------------------------------------------------------------------------------------------
// Writes
// ---------------------------------------------------------------------------------------------

const MISSING = Object.freeze({ exists: false, fields: {}, createMicros: 0, updateMicros: 0 });

function storedVersion(doc) {
  if (!doc.metadata.hasExist) return MISSING;
  return {
    exists: true,
    fields: doc.fields,
    createMicros: createMicrosOf(doc),
    updateMicros: updateMicrosOf(doc),
  };
}

// Preconditions: exists=false fails with ALREADY_EXISTS (create()), exists=true with NOT_FOUND
// (update()), and update_time must equal the stored update_time to the nanosecond, else
// FAILED_PRECONDITION (write_option(last_update_time=...)).
function checkPrecondition(write, current, name) {
  if (!write.has_current_document) return;
  const precondition = write.current_document;
  if (precondition.has_exists) {
    if (precondition.exists && !current.exists) {
      throw new RpcError(Status.NOT_FOUND, `No document to update: ${name}`);
    }
    if (!precondition.exists && current.exists) {
      throw new RpcError(Status.ALREADY_EXISTS, `Document already exists: ${name}`);
    }
  }
  if (precondition.has_update_time) {
    const wanted = precondition.update_time;
    const stored = timestampObject(current.updateMicros);
    if (
      !current.exists ||
      Number(wanted.seconds) !== stored.seconds ||
      wanted.nanos !== stored.nanos
    ) {
      throw new RpcError(
        Status.FAILED_PRECONDITION,
        `the stored version of ${name} does not match the required update_time`,
      );
    }
  }
}

function numericSum(current, operand) {
  if (!isNumber(current)) return operand;
  const type =
    current.type === "integer_value" && operand.type === "integer_value"
      ? "integer_value"
      : "double_value";
  return makeField(type, current.value + operand.value);
}

// maximum / minimum: a non-number is replaced by the operand; NaN wins; on a tie the stored
// value stays.
function numericExtreme(current, operand, sign) {
  if (!isNumber(current)) return operand;
  if (isNaNValue(current)) return current;
  if (isNaNValue(operand)) return operand;
  return compareNumbers(operand.value, current.value) * sign > 0 ? operand : current;
}

/**
 * Applies one FieldTransform; returns [fields, transform result]. Real Firestore applies every
 * transform of a write, in order (the package returned after the first array or server-time
 * transform, and failed ArrayUnion on a missing field).
 */
function applyTransform(fields, transform, commitMicros) {
  const segments = parseFieldPath(transform.field_path);
  const current = getPathValue(fields, segments);
  let value;
  let result;
  if (transform.has_set_to_server_value) {
    if (transform.set_to_server_value !== REQUEST_TIME) {
      throw new RpcError(Status.INVALID_ARGUMENT, "unknown server value");
    }
    value = result = timestampField(commitMicros);
  } else if (transform.has_increment) {
    value = result = numericSum(current, fieldFromProto(transform.increment));
  } else if (transform.has_maximum) {
    value = result = numericExtreme(current, fieldFromProto(transform.maximum), 1);
  } else if (transform.has_minimum) {
    value = result = numericExtreme(current, fieldFromProto(transform.minimum), -1);
  } else if (transform.has_append_missing_elements) {
    // ArrayUnion: a non-array becomes an empty array; append each element not yet present.
    const elements = current?.type === "array_value" ? [...current.value] : [];
    for (const e of transform.append_missing_elements.values.map(fieldFromProto)) {
      if (!elements.some((x) => valueEquals(x, e))) elements.push(e);
    }
    value = makeField("array_value", elements);
    result = NULL;
  } else if (transform.has_remove_all_from_array) {
    // ArrayRemove: a non-array becomes an empty array; remove every equal element.
    const removed = transform.remove_all_from_array.values.map(fieldFromProto);
    const elements = current?.type === "array_value" ? current.value : [];
    const kept = elements.filter((x) => !removed.some((r) => valueEquals(x, r)));
    value = makeField("array_value", kept);
    result = NULL;
  } else {
    throw new RpcError(Status.INVALID_ARGUMENT, "a field transform has no operation");
  }
  return [withPathValue(fields, segments, value), result];
}

/** The name of the document a Write changes. */
function writeTarget(write) {
  if (write.has_delete) return write.delete;
  if (write.has_update) return write.update.name;
  if (write.has_transform) return write.transform.document;
  throw new RpcError(Status.INVALID_ARGUMENT, "a write has no operation");
}

/**
 * Computes one Write against the commit's pending versions (several writes of one commit may
 * touch the same document) and returns its WriteResult; nothing is stored yet.
 * - update without a mask replaces the document; with a mask only the listed paths change,
 *   and a listed path absent from the fields is deleted (DELETE_FIELD);
 * - a write that leaves the document identical keeps its update_time (real Firestore:
 *   "If the write did not actually change the document, this will be the previous update_time").
 */
function planWrite(write, commitMicros, pending) {
  const name = writeTarget(write);
  let entry = pending.get(name);
  if (!entry) {
    const doc = documentAt(name);
    const before = storedVersion(doc);
    entry = { doc, before, after: before };
    pending.set(name, entry);
  }
  const current = entry.after;
  checkPrecondition(write, current, name);
  if (write.has_delete) {
    entry.after = MISSING;
    return { transform_results: [] };
  }
  let fields = current.fields;
  if (write.has_update) {
    const incoming = fieldsFromProto(write.update.fields);
    if (write.has_update_mask) {
      for (const path of write.update_mask.field_paths) {
        const segments = parseFieldPath(path);
        fields = withPathValue(fields, segments, getPathValue(incoming, segments));
      }
    } else {
      fields = incoming;
    }
  }
  const transforms = write.has_transform
    ? write.transform.field_transforms
    : write.update_transforms;
  const results = [];
  for (const transform of transforms) {
    let result;
    [fields, result] = applyTransform(fields, transform, commitMicros);
    results.push(result.toV1ValueObject());
  }
  const unchanged = current.exists && fieldsIdentical(current.fields, fields);
  entry.after = {
    exists: true,
    fields,
    createMicros: current.exists ? current.createMicros : commitMicros,
    updateMicros: unchanged ? current.updateMicros : commitMicros,
  };
  return { update_time: timestampObject(entry.after.updateMicros), transform_results: results };
}

/** Stores a planned document version and tells listeners. */
function storeVersion({ doc, before, after }) {
  if (!after.exists) {
    if (!before.exists) return;
    doc.fields = {};
    doc.metadata = emptyMetadata;
    state.emitter.emit("delete-document", { document: doc });
    return;
  }
  if (before.exists && after.updateMicros === before.updateMicros) return;
  doc.fields = after.fields;
  doc.metadata = {
    hasExist: true,
    createdAt: new Date(after.createMicros / 1000),
    updatedAt: new Date(after.updateMicros / 1000),
    createMicros: after.createMicros,
    updateMicros: after.updateMicros,
  };
  state.emitter.emit(before.exists ? "update-document" : "create-document", { document: doc });
}

// Commit is atomic in real Firestore: when one write fails (a precondition), none is applied
// (the package stored the writes before the failing one).
function commitAtomically(writes, commitMicros) {
  const pending = new Map();
  const results = writes.map((write) => planWrite(write, commitMicros, pending));
  for (const entry of pending.values()) storeVersion(entry);
  return results;
}

// ---------------------------------------------------------------------------------------------
// Transactions
// ---------------------------------------------------------------------------------------------

// Real Firestore (server client libraries) serializes transactions with pessimistic locks:
// reads lock documents; a transaction whose commit writes a document read by an older open
// transaction waits for it ("wound-wait": the older one wins), and a transaction whose reads
// changed before it commits fails with ABORTED, which the client retries. A retry keeps the
// age of the first attempt (retry_transaction), so every transaction eventually wins.
// Here: each transaction records the versions it read (documents a query did not return are
// not tracked); non-transactional writes never wait (they make readers abort instead).
const transactions = new Map(); // hex id -> { id, database, readOnly, reads, age, lastUsed }
const agesOfEnded = new Map(); // hex id -> age, for retry_transaction
const waitingCommits = new Set(); // attempt() functions of commits waiting for older ones
let nextAge = 0;
const LOCK_WAIT_MS = 10_000;
const IDLE_TRANSACTION_MS = 60_000;
const MAX_REMEMBERED = 10_000;

const hexOf = (id) => Buffer.from(id).toString("hex");

function remember(map, key, value) {
  if (map.size >= MAX_REMEMBERED) map.delete(map.keys().next().value);
  map.set(key, value);
}

function beginTransaction(database, options = null) {
  const id = randomBytes(16);
  const readOnly = Boolean(options?.has_read_only);
  const retried = options?.has_read_write ? hexOf(options.read_write.retry_transaction) : "";
  const age = agesOfEnded.get(retried) ?? transactions.get(retried)?.age ?? nextAge++;
  remember(transactions, hexOf(id), {
    id: hexOf(id),
    database,
    readOnly,
    reads: new Map(),
    age,
    lastUsed: Date.now(),
  });
  return id;
}

function openTransaction(id) {
  const tx = transactions.get(hexOf(id));
  if (!tx) throw new RpcError(Status.INVALID_ARGUMENT, "transaction is invalid or has expired");
  tx.lastUsed = Date.now();
  return tx;
}

function endTransaction(tx) {
  if (!transactions.delete(tx.id)) return;
  remember(agesOfEnded, tx.id, tx.age);
  setImmediate(retryWaitingCommits);
}

function recordRead(tx, doc) {
  const name = doc.getPath();
  if (!tx.readOnly && !tx.reads.has(name)) tx.reads.set(name, versionOf(doc));
}

function checkReadsUnchanged(tx) {
  for (const [name, version] of tx.reads) {
    if (versionOf(state.getDocument(name)) !== version) {
      throw new RpcError(Status.ABORTED, `transaction aborted: ${name} changed since it was read`);
    }
  }
}

/** An older open transaction that read a document these writes change, if any. */
function olderReader(tx, writes) {
  const names = writes.map(writeTarget);
  const now = Date.now();
  for (const other of transactions.values()) {
    if (other === tx || other.readOnly || other.age >= tx.age) continue;
    if (now - other.lastUsed > IDLE_TRANSACTION_MS) {
      endTransaction(other); // abandoned: its locks expire
      continue;
    }
    if (names.some((name) => other.reads.has(name))) return other;
  }
  return null;
}

/** Commits a transaction, now or once the older transactions it conflicts with are done. */
function commitTransaction(tx, writes, commit, callback) {
  const deadline = Date.now() + LOCK_WAIT_MS;
  const attempt = () => {
    try {
      checkReadsUnchanged(tx);
      if (tx.readOnly && writes.length > 0) {
        throw new RpcError(Status.INVALID_ARGUMENT, "a read-only transaction cannot write");
      }
      if (olderReader(tx, writes)) {
        if (Date.now() < deadline) return false; // wait for the older transaction
        throw new RpcError(Status.ABORTED, "transaction aborted: lock wait timed out");
      }
      const response = commit();
      endTransaction(tx);
      callback(null, response);
    } catch (err) {
      endTransaction(tx);
      callback(toServiceError(err), null);
    }
    return true;
  };
  if (attempt()) return;
  waitingCommits.add(attempt);
  setTimeout(retryWaitingCommits, LOCK_WAIT_MS + 10).unref();
}

function retryWaitingCommits() {
  for (const attempt of [...waitingCommits]) {
    if (attempt()) waitingCommits.delete(attempt);
  }
}

/** The transaction of a read request: [transaction to record reads in, new id to return]. */
function readTransaction(request, database) {
  if (request.has_new_transaction) {
    const id = beginTransaction(database, request.new_transaction);
    return [openTransaction(id), id];
  }
  if (request.has_transaction) return [openTransaction(request.transaction), undefined];
  return [null, undefined];
}

function databaseOf(name) {
  const { project, database } = parseName(name.split("/").slice(0, 5).join("/"));
  return `projects/${project}/databases/${database}`;
}

// ---------------------------------------------------------------------------------------------
// Billing-like statistics
// ---------------------------------------------------------------------------------------------

// Counted the way Firestore bills: documentReads is one per document a query returns (at least
// one per query), per document a BatchGetDocuments or GetDocument asks for (found or missing),
// per document a Listen sends, and one per batch of up to 1000 documents an aggregation counts
// (at least one); queries counts RunQuery, RunAggregationQuery and ListDocuments calls; writes
// counts the documents written or deleted by Commit and by the successful writes of BatchWrite.
const stats = new Map(); // project -> { documentReads, queries, writes }

function bill(project, counts) {
  if (!project) return;
  let s = stats.get(project);
  if (!s) stats.set(project, (s = { documentReads: 0, queries: 0, writes: 0 }));
  for (const [key, n] of Object.entries(counts)) s[key] += n;
}

function statsFor(project) {
  const total = { documentReads: 0, queries: 0, writes: 0 };
  for (const [name, s] of stats) {
    if (project && name !== project) continue;
    for (const key of Object.keys(total)) total[key] += s[key];
  }
  return total;
}

function resetStats(project) {
  if (project) stats.delete(project);
  else stats.clear();
}

// ---------------------------------------------------------------------------------------------
// Service methods
// ---------------------------------------------------------------------------------------------

function unary(callback, handler) {
  let response;
  try {
    response = handler();
  } catch (err) {
    callback(toServiceError(err), null);
    return;
  }
  callback(null, response);
}

function serverStream(call, handler) {
  try {
    handler();
    call.end();
  } catch (err) {
    call.emit("error", toServiceError(err));
  }
}

const serviceOverrides = {
  BeginTransaction(call, callback) {
    unary(callback, () => {
      const { database, options } = call.request;
      const id = beginTransaction(database, call.request.has_options ? options : null);
      return proto.BeginTransactionResponse.fromObject({ transaction: id });
    });
  },

  Rollback(call, callback) {
    unary(callback, () => {
      const tx = transactions.get(hexOf(call.request.transaction));
      if (tx) endTransaction(tx);
      return new Empty();
    });
  },

  Commit(call, callback) {
    const { database, writes, transaction } = call.request;
    const commit = () => {
      const commitMicros = nextCommitMicros();
      const results = commitAtomically(writes, commitMicros);
      bill(projectOf(database), { writes: writes.length });
      return proto.CommitResponse.fromObject({
        commit_time: timestampObject(commitMicros),
        write_results: results,
      });
    };
    if (transaction.length === 0) {
      unary(callback, commit);
      return;
    }
    let tx;
    try {
      tx = openTransaction(transaction);
    } catch (err) {
      callback(toServiceError(err), null);
      return;
    }
    commitTransaction(tx, writes, commit, callback);
  },

  // BatchWrite: every write applied on its own (not atomically), each with its status, which
  // the Python BulkWriter reads to report failures and retry.
  BatchWrite(call, callback) {
    unary(callback, () => {
      const { database, writes } = call.request;
      const writeResults = [];
      const statuses = [];
      for (const write of writes) {
        try {
          const [result] = commitAtomically([write], nextCommitMicros());
          writeResults.push(result);
          statuses.push({ code: Status.OK });
        } catch (err) {
          const error = toServiceError(err);
          writeResults.push({});
          statuses.push({ code: error.code, message: error.details });
        }
      }
      bill(projectOf(database), { writes: statuses.filter((s) => s.code === Status.OK).length });
      return proto.BatchWriteResponse.fromObject({ write_results: writeResults, status: statuses });
    });
  },

  GetDocument(call, callback) {
    unary(callback, () => {
      const { name, mask } = call.request;
      const [tx] = readTransaction(call.request, databaseOf(name));
      const doc = documentAt(name);
      if (tx) recordRead(tx, doc);
      bill(projectOf(name), { documentReads: 1 });
      if (!doc.metadata.hasExist) {
        throw new RpcError(Status.NOT_FOUND, `Document ${name} not found`);
      }
      const paths = call.request.has_mask ? maskPaths(mask.field_paths) : null;
      const response = { found: documentObject(doc, paths) };
      return proto.BatchGetDocumentsResponse.fromObject(response).found;
    });
  },

  BatchGetDocuments(call) {
    serverStream(call, () => {
      const { database, documents, mask } = call.request;
      const [tx, newTransaction] = readTransaction(call.request, database);
      const paths = call.request.has_mask ? maskPaths(mask.field_paths) : null;
      const readTime = timestampObject(readTimeMicros());
      bill(projectOf(database), { documentReads: documents.length });
      documents.forEach((name, i) => {
        const doc = documentAt(name);
        if (tx) recordRead(tx, doc);
        const response = doc.metadata.hasExist
          ? { found: documentObject(doc, paths) }
          : { missing: name };
        response.read_time = readTime;
        response.transaction = i === 0 ? newTransaction : undefined;
        call.write(proto.BatchGetDocumentsResponse.fromObject(response));
      });
    });
  },

  RunQuery(call) {
    serverStream(call, () => {
      const { parent, structured_query: query } = call.request;
      if (call.request.has_explain_options) {
        throw new RpcError(Status.UNIMPLEMENTED, "query explain is not supported by this emulator");
      }
      const [tx, newTransaction] = readTransaction(call.request, databaseOf(parent));
      const { docs, skipped, paths } = runQuery(parent, query);
      if (tx) for (const doc of docs) recordRead(tx, doc);
      // Billing: one read per document returned, at least one per query.
      bill(projectOf(parent), { queries: 1, documentReads: Math.max(1, docs.length) });
      const read_time = timestampObject(readTimeMicros());
      if (docs.length === 0) {
        call.write(
          proto.RunQueryResponse.fromObject({
            read_time,
            skipped_results: skipped,
            transaction: newTransaction,
            done: true,
          }),
        );
      }
      docs.forEach((doc, i) => {
        call.write(
          proto.RunQueryResponse.fromObject({
            document: documentObject(doc, paths),
            read_time,
            skipped_results: i === 0 ? skipped : 0,
            transaction: i === 0 ? newTransaction : undefined,
            done: i === docs.length - 1,
          }),
        );
      });
    });
  },

  RunAggregationQuery(call) {
    serverStream(call, () => {
      const { parent, structured_aggregation_query: aggregation } = call.request;
      if (call.request.has_explain_options) {
        throw new RpcError(Status.UNIMPLEMENTED, "query explain is not supported by this emulator");
      }
      const [tx, newTransaction] = readTransaction(call.request, databaseOf(parent));
      const { docs } = runQuery(parent, aggregation.structured_query);
      if (tx) for (const doc of docs) recordRead(tx, doc);
      const fields = {};
      let counted = docs.length;
      for (const agg of aggregation.aggregations) {
        if (agg.has_count) {
          const upTo = agg.count.has_up_to ? Number(agg.count.up_to.value) : Infinity;
          counted = Math.min(docs.length, upTo);
          fields[agg.alias] = { integer_value: counted };
        } else if (agg.has_sum) {
          fields[agg.alias] = sumOf(docs, agg.sum.field.field_path).toV1ValueObject();
        } else if (agg.has_avg) {
          fields[agg.alias] = averageOf(docs, agg.avg.field.field_path).toV1ValueObject();
        } else {
          throw new RpcError(Status.INVALID_ARGUMENT, "unknown aggregation");
        }
      }
      // Billing: one read per batch of up to 1000 documents counted, at least one.
      const reads = Math.max(1, Math.ceil(counted / 1000));
      bill(projectOf(parent), { queries: 1, documentReads: reads });
      call.write(
        proto.RunAggregationQueryResponse.fromObject({
          result: { aggregate_fields: fields },
          read_time: timestampObject(readTimeMicros()),
          transaction: newTransaction,
        }),
      );
    });
  },

  // ListDocuments (collection.list_documents()): documents in name order, paged; with
  // show_missing also the "missing" documents that only have subcollections (no timestamps).
  ListDocuments(call, callback) {
    unary(callback, () => {
      const { parent, collection_id: collectionId, page_size: pageSize, mask } = call.request;
      const [tx] = readTransaction(call.request, databaseOf(parent));
      const after = call.request.page_token
        ? Buffer.from(call.request.page_token, "base64url").toString()
        : null;
      const paths = call.request.has_mask ? maskPaths(mask.field_paths) : null;
      const collections = collectionId
        ? [state.getCollection(`${parent}/${collectionId}`)]
        : childCollections(parentNode(parent));
      let docs = collections
        .flatMap(childDocuments)
        .filter((d) => d.metadata.hasExist || (call.request.show_missing && d.hasChild()))
        .sort((a, b) => compareResourceNames(a.getPath(), b.getPath()))
        .filter((d) => after === null || compareResourceNames(d.getPath(), after) > 0);
      let nextPageToken = "";
      if (pageSize > 0 && docs.length > pageSize) {
        docs = docs.slice(0, pageSize);
        nextPageToken = Buffer.from(docs[docs.length - 1].getPath()).toString("base64url");
      }
      if (tx) for (const doc of docs) recordRead(tx, doc);
      bill(projectOf(parent), { queries: 1, documentReads: Math.max(1, docs.length) });
      return proto.ListDocumentsResponse.fromObject({
        documents: docs.map((d) =>
          d.metadata.hasExist ? documentObject(d, paths) : { name: d.getPath() },
        ),
        next_page_token: nextPageToken,
      });
    });
  },

  // ListCollectionIds (client.collections(), document.collections()): ids of the collections
  // under a database or document that hold at least one document, sorted, paged.
  ListCollectionIds(call, callback) {
    unary(callback, () => {
      const { parent, page_size: pageSize, page_token: pageToken } = call.request;
      let ids = childCollections(parentNode(parent))
        .filter((c) => c.hasChild())
        .map((c) => c.name)
        .sort(compareUtf8)
        .filter((id) => !pageToken || compareUtf8(id, pageToken) > 0);
      let nextPageToken = "";
      if (pageSize > 0 && ids.length > pageSize) {
        ids = ids.slice(0, pageSize);
        nextPageToken = ids[ids.length - 1];
      }
      bill(projectOf(parent), { documentReads: 1 });
      return proto.ListCollectionIdsResponse.fromObject({
        collection_ids: ids,
        next_page_token: nextPageToken,
      });
    });
  },

  Listen(call) {
    listen(call);
  },
};

function sumOf(docs, path) {
  // sum(): integers stay integers; any double makes a double; non-numbers are ignored.
  let sum = makeField("integer_value", 0);
  for (const doc of docs) {
    const value = doc.getField(path);
    if (isNumber(value)) sum = numericSum(sum, value);
  }
  return sum;
}

function averageOf(docs, path) {
  // avg(): a double over the numeric values; null when there is none.
  let total = 0;
  let count = 0;
  for (const doc of docs) {
    const value = doc.getField(path);
    if (isNumber(value)) {
      total += value.value;
      count += 1;
    }
  }
  return count === 0 ? NULL : makeField("double_value", total / count);
}

// ---------------------------------------------------------------------------------------------
// Listen
// ---------------------------------------------------------------------------------------------

// Real Firestore's Listen protocol: ADD for a new target, its documents, CURRENT, then a global
// NO_CHANGE with a read time (a consistent snapshot). After that only the differences: a
// document_change for each added or modified document, document_delete / document_remove for
// those gone, and again a global NO_CHANGE. (The package re-sent every document on any write,
// billed as reads, and could not remove targets.)
function listen(call) {
  const targets = new Map();
  let database = null;
  let scheduled = false;

  const send = (response) => {
    if (!call.cancelled && call.writable) call.write(proto.ListenResponse.fromObject(response));
  };

  const evaluate = (target) => {
    if (target.has_query) {
      const { parent, structured_query: query } = target.query;
      const { docs, paths } = runQuery(parent, query);
      return { docs: new Map(docs.map((d) => [d.getPath(), d])), paths };
    }
    const docs = new Map();
    for (const name of target.documents.documents) {
      const doc = documentAt(name);
      if (doc.metadata.hasExist) docs.set(name, doc);
    }
    return { docs, paths: null };
  };

  const sendSnapshotMark = () => {
    send({
      target_change: {
        target_change_type: TargetChangeType.NO_CHANGE,
        target_ids: [],
        read_time: timestampObject(readTimeMicros()),
      },
    });
  };

  const addTarget = (target) => {
    const id = target.target_id;
    send({ target_change: { target_change_type: TargetChangeType.ADD, target_ids: [id] } });
    if (target.resume_token.length > 0 || target.has_read_time) {
      // A resumed target: we keep no history, so the client drops what it had and gets all.
      send({ target_change: { target_change_type: TargetChangeType.RESET, target_ids: [id] } });
    }
    const { docs, paths } = evaluate(target);
    for (const doc of docs.values()) {
      send({ document_change: { document: documentObject(doc, paths), target_ids: [id] } });
    }
    bill(projectOf(database), { documentReads: docs.size });
    send({
      target_change: {
        target_change_type: TargetChangeType.CURRENT,
        target_ids: [id],
        read_time: timestampObject(readTimeMicros()),
      },
    });
    sendSnapshotMark();
    const versions = new Map([...docs].map(([name, doc]) => [name, versionOf(doc)]));
    if (target.once) {
      send({ target_change: { target_change_type: TargetChangeType.REMOVE, target_ids: [id] } });
    } else {
      targets.set(id, { target, versions });
    }
  };

  const refresh = () => {
    scheduled = false;
    let changed = false;
    try {
      for (const [id, entry] of targets) {
        const { docs, paths } = evaluate(entry.target);
        let sent = 0;
        let removed = 0;
        for (const [name, doc] of docs) {
          if (entry.versions.get(name) === versionOf(doc)) continue;
          send({ document_change: { document: documentObject(doc, paths), target_ids: [id] } });
          sent += 1;
        }
        for (const name of entry.versions.keys()) {
          if (docs.has(name)) continue;
          const gone = !state.getDocument(name).metadata.hasExist;
          const change = { document: name, removed_target_ids: [id] };
          send(gone ? { document_delete: change } : { document_remove: change });
          removed += 1;
        }
        entry.versions = new Map([...docs].map(([name, doc]) => [name, versionOf(doc)]));
        bill(projectOf(database), { documentReads: sent }); // removals send no document
        changed ||= sent + removed > 0;
      }
      if (changed) sendSnapshotMark();
    } catch (err) {
      call.emit("error", toServiceError(err));
    }
  };

  // Writes of one commit arrive as several events: refresh once, after the commit.
  const scheduleRefresh = () => {
    if (scheduled || targets.size === 0) return;
    scheduled = true;
    setImmediate(refresh);
  };
  const onDocumentEvent = ({ document }) => {
    if (document.getPath().startsWith(`${database}/`)) scheduleRefresh();
  };
  const onCleared = ({ prefix }) => {
    if (database === prefix) scheduleRefresh();
  };
  const events = ["create-document", "update-document", "delete-document"];
  for (const event of events) state.emitter.on(event, onDocumentEvent);
  state.emitter.on("database-cleared", onCleared);
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    for (const event of events) state.emitter.off(event, onDocumentEvent);
    state.emitter.off("database-cleared", onCleared);
    targets.clear();
  };
  call.on("cancelled", close);
  call.on("error", close);
  call.on("close", close);
  call.on("end", () => {
    close();
    call.end();
  });

  call.on("data", (request) => {
    try {
      database ??= request.database;
      if (request.has_add_target) addTarget(request.add_target);
      if (request.has_remove_target) {
        targets.delete(request.remove_target);
        send({
          target_change: {
            target_change_type: TargetChangeType.REMOVE,
            target_ids: [request.remove_target],
          },
        });
      }
    } catch (err) {
      call.emit("error", toServiceError(err));
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Installing the patches and serving
// ---------------------------------------------------------------------------------------------

/** The emulator's state (one server per process); the overrides read and write it. */
let state;

// grpc-js binds the service's methods when the package's FirestoreServer registers them
// (Server.addService); the service class is not exported, so patch its prototype right then.
function patchServiceRegistration() {
  const addService = grpc.Server.prototype.addService;
  grpc.Server.prototype.addService = function patchedAddService(definition, implementation) {
    if (definition.Listen && definition.RunQuery) {
      Object.assign(Object.getPrototypeOf(implementation), serviceOverrides);
    }
    return addService.call(this, definition, implementation);
  };
}

// The package binds 0.0.0.0; bind the host we are given, and report the port (0 = any free).
// Requests may be as large as Firestore accepts (10 MiB; gRPC's default limit is 4 MiB).
function patchServerStart() {
  FirestoreServer.prototype.start = function start(port, host = "127.0.0.1") {
    this.server.options["grpc.max_receive_message_length"] = 16 * 1024 * 1024;
    const address = host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
    return new Promise((resolve, reject) => {
      this.server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err, bound) =>
        err ? reject(err) : resolve(bound),
      );
    });
  };
}

/** DELETE .../documents: drop one database of a project (Google's emulator's reset endpoint). */
function clearDatabase(project, database) {
  const owner = state.projects[project];
  if (owner && Object.hasOwn(owner.databases, database)) {
    const { [database]: _dropped, ...rest } = owner.databases;
    owner.databases = rest;
  }
  const prefix = `projects/${project}/databases/${database}`;
  for (const tx of [...transactions.values()]) if (tx.database === prefix) endTransaction(tx);
  state.emitter.emit("database-cleared", { prefix });
}

function startAdminServer(host, port) {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, "http://admin");
    const reply = (status, body, type = "application/json") => {
      res.writeHead(status, { "Content-Type": type });
      res.end(typeof body === "string" ? body : JSON.stringify(body));
    };
    const project = url.searchParams.get("project") || null;
    const clear = /^\/emulator\/v1\/projects\/([^/]+)\/databases\/([^/]+)\/documents\/?$/.exec(
      url.pathname,
    );
    if (req.method === "GET" && url.pathname === "/health") return reply(200, "ok", "text/plain");
    if (req.method === "GET" && url.pathname === "/stats") return reply(200, statsFor(project));
    if (req.method === "POST" && url.pathname === "/stats/reset") {
      resetStats(project);
      return reply(200, statsFor(project));
    }
    if (req.method === "DELETE" && clear) {
      clearDatabase(decodeURIComponent(clear[1]), decodeURIComponent(clear[2]));
      return reply(200, {});
    }
    return reply(404, { error: `no route for ${req.method} ${url.pathname}` });
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve(server));
  });
}

async function main() {
  const { values: args } = parseArgs({
    options: {
      host: { type: "string", default: "127.0.0.1" },
      port: { type: "string", default: "8080" },
      "admin-port": { type: "string", default: "0" },
      "exit-on-stdin-close": { type: "boolean", default: false },
    },
  });
  patchFastLookups();
  patchFieldPaths();
  patchDocumentTimestamps();
  patchQueryEngine();
  patchServiceRegistration();
  patchServerStart();
  if (args["exit-on-stdin-close"]) {
    process.stdin.on("end", shutdown);
    process.stdin.on("error", shutdown);
    process.stdin.resume();
  }
  const emulator = new FirestoreServer();
  shutdownSteps.push(() => emulator.stop());
  state = emulator.state;
  state.emitter.setMaxListeners(0);

  const port = await emulator.start(Number(args.port), args.host);
  const admin = await startAdminServer(args.host, Number(args["admin-port"]));
  shutdownSteps.push(() => {
    admin.close();
    admin.closeAllConnections();
  });
  const shownHost = args.host.includes(":") ? `[${args.host}]` : args.host;
  process.stdout.write(`READY ${shownHost}:${port} admin ${shownHost}:${admin.address().port}\n`);
  // A bug in one request must not take the emulator down for every other test.
  process.on("uncaughtException", (err) => console.error("uncaught:", err));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
