/**
 * What kube-apiserver decides for the requests spot-runtime makes, with no I/O: the exact
 * metav1.Status bodies, field validation (the Build CRD schema, core/v1 Event rules, names),
 * routing, and the generic registry's create/update/patch semantics over an in-memory store with
 * one global resourceVersion counter. scripts/apiserver/server.ts puts HTTPS, tokens and faults in
 * front of it. Sources are named in /work/shared/reference/kubernetes-api.md; where this
 * simplifies, the comment says so.
 */
import { randomBytes, randomUUID } from 'node:crypto';

import { BUILD_API_VERSION, BUILD_GROUP, BUILD_KIND, BUILD_PLURAL, BUILD_VERSION, type ObjectMeta, type Status, type StatusDetails } from '../../lib/types.js';
import {
  applyJsonPatch,
  applyMergePatch,
  deepCopy,
  deepEqual,
  isJsonObject,
  JsonPatchError,
  type JsonObject,
  type JsonValue,
} from './json-patch.js';

// =============================================================================================
// Permissions

export type Verb = 'get' | 'list' | 'create' | 'update' | 'patch';
export type ResourceName = 'builds' | 'builds/status' | 'events';

/** One RBAC-like grant; a request is allowed when any rule of its identity covers it. */
export interface PermissionRule {
  verbs: readonly Verb[] | '*';
  resources: readonly ResourceName[] | '*';
  /** Namespaces the rule covers; omitted means every namespace (like a ClusterRoleBinding). */
  namespaces?: readonly string[];
}

// =============================================================================================
// metav1.Status bodies (apimachinery pkg/api/errors/errors.go)

/** A refusal on its way to becoming a Status answer. */
export class ApiError extends Error {
  constructor(readonly status: Status) {
    super(status.message);
  }
}

/** Key order as kube-apiserver writes it; `reason` and `details` are omitempty in Go. */
export function failure(code: number, reason: string | undefined, message: string, details?: StatusDetails): Status {
  const status: Status = { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message };
  if (reason) status.reason = reason;
  if (details) status.details = details;
  status.code = code;
  return status;
}

/** StatusDetails with Go's omitempty applied; callers pass fields in Go's order. */
export function details(fields: StatusDetails): StatusDetails {
  const isEmpty = (v: unknown) => v === undefined || v === '' || v === 0 || (Array.isArray(v) && v.length === 0);
  return Object.fromEntries(Object.entries(fields).filter(([, v]) => !isEmpty(v))) as StatusDetails;
}

export const fail = (status: Status) => new ApiError(status);

function resourceDetails(resource: ResourceInfo, name?: string): StatusDetails {
  return details({ name, group: resource.group, kind: resource.plural });
}

const notFound = (resource: ResourceInfo, name: string) =>
  fail(failure(404, 'NotFound', `${resource.qualifiedResource} "${name}" not found`, resourceDetails(resource, name)));

const alreadyExists = (resource: ResourceInfo, name: string) =>
  fail(failure(409, 'AlreadyExists', `${resource.qualifiedResource} "${name}" already exists`, resourceDetails(resource, name)));

/** store.go OptimisticLockErrorMsg. */
const OPTIMISTIC_LOCK_MESSAGE = 'the object has been modified; please apply your changes to the latest version and try again';

const conflict = (resource: ResourceInfo, name: string, why = OPTIMISTIC_LOCK_MESSAGE) =>
  fail(failure(409, 'Conflict', `Operation cannot be fulfilled on ${resource.qualifiedResource} "${name}": ${why}`, resourceDetails(resource, name)));

const badRequest = (message: string) => fail(failure(400, 'BadRequest', message));

const unsupportedMediaType = (accepted: readonly string[]) =>
  fail(failure(415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: ${accepted.join(', ')}`));

/** limitedReadBody in kube-apiserver refuses bodies over 3 MiB. */
export const MAX_BODY_BYTES = 3 * 1024 * 1024;
const entityTooLarge = (what: string) => fail(failure(413, 'RequestEntityTooLarge', `Request entity too large: ${what}`));

export const UNAUTHORIZED = failure(401, 'Unauthorized', 'Unauthorized');
export const ROUTE_NOT_FOUND = failure(404, 'NotFound', 'the server could not find the requested resource');

/** NewGenericServerResponse(422, …) as patch.go uses it for a JSON patch that fails to apply. */
const PATCH_REJECTED = failure(422, 'Invalid', 'the server rejected our request due to an error in our request', {});

/** responsewriters.Forbidden: the authorizer's refusal, naming who asked for what, and where. */
export function forbidden(user: string, request: RequestAttributes): ApiError {
  const { group, resource, subresource, name, namespace, verb } = request;
  const qualified = group ? `${resource}.${group}` : resource;
  const subject = name ? `${qualified} "${name}"` : qualified;
  const message =
    `${subject} is forbidden: User "${user}" cannot ${verb} resource "${subresource ? `${resource}/${subresource}` : resource}" ` +
    `in API group "${group}" in the namespace "${namespace}"`;
  return fail(failure(403, 'Forbidden', message, details({ name, group, kind: resource })));
}

// ---------------------------------------------------------------------------------------------
// Field errors (apimachinery pkg/util/validation/field) and NewInvalid

type CauseType =
  | 'FieldValueRequired'
  | 'FieldValueInvalid'
  | 'FieldValueNotSupported'
  | 'FieldValueTypeInvalid'
  | 'FieldValueForbidden'
  | 'FieldValueDuplicate';

interface FieldError {
  type: CauseType;
  field: string;
  /** field.Error.ErrorBody(): the message without the field path. */
  body: string;
}

/** strconv.Quote for the ASCII values these messages show. */
const quote = (value: unknown) => JSON.stringify(value);

const required = (field: string, detail = ''): FieldError => ({
  type: 'FieldValueRequired',
  field,
  body: detail ? `Required value: ${detail}` : 'Required value',
});

/** `shown` is the bad value as Go prints it: quoted for strings, `0` for a zero resourceVersion. */
const invalidValue = (field: string, shown: string, detail: string): FieldError => ({
  type: 'FieldValueInvalid',
  field,
  body: `Invalid value: ${shown}: ${detail}`,
});

const forbiddenField = (field: string, detail: string): FieldError => ({
  type: 'FieldValueForbidden',
  field,
  body: `Forbidden: ${detail}`,
});

const notSupported = (field: string, value: unknown, supported: readonly string[]): FieldError => ({
  type: 'FieldValueNotSupported',
  field,
  body: `Unsupported value: ${quote(value)}: supported values: ${supported.map(quote).join(', ')}`,
});

/** JSON Schema type names, as the OpenAPI validator reports them. */
function jsonType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  if (typeof value === 'number') return Number.isInteger(value) ? 'integer' : 'number';
  return typeof value;
}

/**
 * The name kube-openapi's validator gives a field in "... in body ...": status writes validate the
 * status object on its own (ValidateStatusUpdate), so there the path starts below `status`.
 */
const inBody = (field: string) => field.replace(/^status\./, '');

/** How apiextensions reports an OpenAPI type mismatch (InvalidTypeCode → field.TypeInvalid). */
const typeInvalid = (field: string, value: unknown, expected: string): FieldError => ({
  type: 'FieldValueTypeInvalid',
  field,
  body: `Invalid value: "${jsonType(value)}": ${inBody(field)} in body must be of type ${expected}: "${jsonType(value)}"`,
});

/** utilerrors aggregate: one message as is, several deduplicated inside brackets. */
function aggregate(errors: readonly FieldError[]): string {
  const messages = [...new Set(errors.map((e) => `${e.field}: ${e.body}`))];
  return messages.length === 1 ? (messages[0] ?? '') : `[${messages.join(', ')}]`;
}

/**
 * NewInvalid. `qualified` is Kind.group for validation errors (details.kind = the Kind) and
 * resource.group for the store's resourceVersion check (details.kind = the plural).
 */
function invalid(qualified: string, group: string, kind: string, name: string, errors: readonly FieldError[]): ApiError {
  const causes = errors.map((e) => ({ reason: e.type, message: e.body, field: e.field }));
  const message = `${qualified} ${quote(name)} is invalid: ${aggregate(errors)}`;
  return fail(failure(422, 'Invalid', message, details({ name, group, kind, causes })));
}

const invalidObject = (resource: ResourceInfo, name: string, errors: readonly FieldError[]) =>
  invalid(resource.qualifiedKind, resource.group, resource.kind, name, errors);

/** store.go: custom resources do not allow unconditional updates. */
const resourceVersionRequired = (resource: ResourceInfo, name: string) =>
  invalid(resource.qualifiedResource, resource.group, resource.plural, name, [
    invalidValue('metadata.resourceVersion', '0', 'must be specified for an update'),
  ]);

// ---------------------------------------------------------------------------------------------
// Name validation (apimachinery pkg/util/validation)

const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS1123_SUBDOMAIN_ERROR =
  "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end " +
  "with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

function dns1123SubdomainErrors(value: string): string[] {
  const errors: string[] = [];
  if (value.length > 253) errors.push('must be no more than 253 characters');
  if (!DNS1123_SUBDOMAIN.test(value)) errors.push(DNS1123_SUBDOMAIN_ERROR);
  return errors;
}

/** ValidatePathSegmentName: the rule for names that only have to fit in a URL. */
function pathSegmentErrors(value: string): string[] {
  if (value === '.' || value === '..') return [`may not be '${value}'`];
  return ['/', '%'].filter((c) => value.includes(c)).map((c) => `may not contain '${c}'`);
}

const QUALIFIED_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
// The double spaces are Kubernetes' own (RegexError joins examples with "', " + " or ").
const QUALIFIED_NAME_ERROR =
  "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character " +
  "(e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

/** IsQualifiedName: `[prefix/]name`, e.g. `spot.release.com/runtime`. */
function qualifiedNameErrors(value: string): string[] {
  const parts = value.split('/');
  if (parts.length > 2) {
    return [`a qualified name ${QUALIFIED_NAME_ERROR} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')`];
  }
  const errors: string[] = [];
  const [prefix, name] = parts.length === 2 ? parts : [undefined, parts[0] ?? ''];
  if (prefix === '') errors.push('prefix part must be non-empty');
  else if (prefix !== undefined) errors.push(...dns1123SubdomainErrors(prefix).map((m) => `prefix part ${m}`));
  if (!name) errors.push('name part must be non-empty');
  else if (name.length > 63) errors.push('name part must be no more than 63 characters');
  if (!QUALIFIED_NAME.test(name ?? '')) errors.push(`name part ${QUALIFIED_NAME_ERROR}`);
  return errors;
}

// =============================================================================================
// Resources

/** A stored or incoming object. Everything here came from JSON.parse or was built as JSON. */
export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  [key: string]: unknown;
}

const asJson = (object: KubeObject) => object as unknown as JsonObject;

interface ResourceInfo {
  readonly group: string;
  readonly version: string;
  readonly apiVersion: string;
  readonly kind: string;
  readonly listKind: string;
  readonly plural: string;
  /** `builds.spot.release.com`, `events`: how NotFound, Conflict and Forbidden name it. */
  readonly qualifiedResource: string;
  /** `Build.spot.release.com`, `Event`: how validation errors name it. */
  readonly qualifiedKind: string;
  /** Media types a PUT or POST body may have. */
  readonly bodyTypes: readonly string[];
  /** Media types a PATCH may have, in the order the 415 message lists them. */
  readonly patchTypes: readonly string[];
  /** Events may be updated without resourceVersion; custom resources may not (customresource strategy.go). */
  readonly allowUnconditionalUpdate: boolean;
  readonly statusSubresource: boolean;
  /** Whether metadata.generation is kept (1 on create, +1 on spec changes). Events have none. */
  readonly tracksGeneration: boolean;
  /** Built-in lists leave kind/apiVersion off their items; custom resource lists keep them. */
  readonly listItemsKeepTypeMeta: boolean;
  /** Checks kind/apiVersion and field types the way decoding into the Go type would (400). */
  decode(value: JsonObject, raw: Buffer): KubeObject;
  /** Drops what the server drops from any incoming object before validating it. */
  prune(object: KubeObject): void;
  /** Name rule for create: DNS subdomain for custom resources, path segment for Events. */
  nameErrors(name: string): string[];
  /** The kind's own validation, run on create and on every update (422). */
  validate(object: KubeObject): FieldError[];
  /** The object as the server writes it out: key order, and fields Go never omits. */
  present(object: KubeObject): KubeObject;
}

const JSON_PATCH = 'application/json-patch+json';
const MERGE_PATCH = 'application/merge-patch+json';
const STRATEGIC_MERGE_PATCH = 'application/strategic-merge-patch+json';
const APPLY_PATCH = 'application/apply-patch+yaml';

/** The message summarizeData (handlers/rest.go) appends to an undecodable body. */
function summarize(raw: Buffer): string {
  if (raw.length === 0) return '<empty>';
  const head = raw.subarray(0, 30);
  const shown = raw[0] === 0x7b ? head.toString('utf8') : head.toString('hex');
  return raw.length > 30 ? `${shown} ...` : shown;
}

/** Go's name for a JSON value's type in "cannot unmarshal X into …". */
function goJsonType(value: unknown): string {
  if (typeof value === 'boolean') return 'bool';
  if (Array.isArray(value)) return 'array';
  return value === null ? 'null' : typeof value;
}

const META_STRING_FIELDS = ['name', 'generateName', 'namespace', 'uid', 'resourceVersion', 'creationTimestamp'] as const;

/** Metadata must be an object whose identifying fields are strings, or decoding fails. */
function decodeMetadata(resource: ResourceInfo, value: JsonObject): KubeObject {
  const metadata = value.metadata ?? {};
  const cannotHandle = (detail: string) =>
    badRequest(`${resource.kind} in version "${resource.version}" cannot be handled as a ${resource.kind}: ${detail}`);
  if (!isJsonObject(metadata)) throw cannotHandle(`json: cannot unmarshal ${goJsonType(metadata)} into Go struct field ${resource.kind}.metadata of type v1.ObjectMeta`);
  for (const field of META_STRING_FIELDS) {
    const v = metadata[field];
    if (v !== undefined && typeof v !== 'string') {
      throw cannotHandle(`json: cannot unmarshal ${goJsonType(v)} into Go struct field ObjectMeta.metadata.${field} of type string`);
    }
  }
  value.metadata = metadata;
  return value as unknown as KubeObject;
}

// ---------------------------------------------------------------------------------------------
// builds.spot.release.com

/** The subset of OpenAPI v3 that deploy/crd.yaml uses. */
interface Schema {
  type: 'object' | 'array' | 'string';
  properties?: Readonly<Record<string, Schema>>;
  additionalProperties?: Schema;
  required?: readonly string[];
  items?: Schema;
  /** x-kubernetes-list-type: map with these x-kubernetes-list-map-keys. */
  listMapKeys?: readonly string[];
  enum?: readonly string[];
  minLength?: number;
  format?: 'date-time';
}

const STRING: Schema = { type: 'string' };

/** deploy/crd.yaml's openAPIV3Schema for spec and status, transcribed: keep the two in step. */
const BUILD_SCHEMA: Schema = {
  type: 'object',
  properties: {
    spec: {
      type: 'object',
      properties: {
        image: {
          type: 'object',
          properties: { name: STRING, tag: STRING, registry: { type: 'object', properties: { url: STRING } } },
        },
      },
    },
    status: {
      type: 'object',
      properties: {
        phase: { type: 'string', enum: ['', 'Running', 'Done', 'Errored'] },
        conditions: {
          type: 'array',
          listMapKeys: ['type'],
          items: {
            type: 'object',
            required: ['type', 'status'],
            properties: {
              type: { type: 'string', minLength: 1 },
              status: { type: 'string', enum: ['', 'In Progress', 'Success', 'Error'] },
              lastTransitionTime: { type: 'string', format: 'date-time' },
              reason: STRING,
              message: STRING,
            },
          },
        },
        pod: { type: 'object', properties: { namespace: STRING, name: STRING } },
        image: { type: 'object', properties: { url: STRING, metadata: { type: 'object', additionalProperties: STRING } } },
      },
    },
  },
};

/** strfmt's date-time, close enough: RFC 3339 with optional fraction. */
const DATE_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/i;

function matchesType(value: unknown, type: Schema['type']): boolean {
  if (type === 'array') return Array.isArray(value);
  if (type === 'object') return isJsonObject(value);
  return typeof value === 'string';
}

/** The list-map key a duplicate entry repeats, as field.Duplicate prints it (as JSON since 1.3x). */
function mapKeyLiteral(entry: JsonObject, keys: readonly string[]): string {
  return `{${keys.map((k) => `${quote(k)}:${quote(entry[k])}`).join(',')}}`;
}

/** kube-openapi's validator, as apiextensions turns its findings into field errors. */
function schemaErrors(value: unknown, schema: Schema, path: string): FieldError[] {
  if (!matchesType(value, schema.type)) {
    // The validator goes on to the enum with the mistyped value (5 is not "Running" either).
    const enumError = schema.enum && !schema.enum.includes(value as string) ? [notSupported(path, value, schema.enum)] : [];
    return [typeInvalid(path, value, schema.type), ...enumError];
  }
  if (typeof value === 'string') return stringErrors(value, schema, path);
  if (Array.isArray(value)) return arrayErrors(value, schema, path);
  return objectErrors(value as JsonObject, schema, path);
}

function stringErrors(value: string, schema: Schema, path: string): FieldError[] {
  if (schema.enum && !schema.enum.includes(value)) return [notSupported(path, value, schema.enum)];
  if (schema.minLength !== undefined && value.length < schema.minLength) {
    return [invalidValue(path, quote(value), `${inBody(path)} in body should be at least ${schema.minLength} chars long`)];
  }
  if (schema.format === 'date-time' && !DATE_TIME.test(value)) {
    // A format failure is reported as a type error (InvalidTypeCode), like a wrong JSON type.
    return [{ ...invalidValue(path, quote(value), `${inBody(path)} in body must be of type date-time: ${quote(value)}`), type: 'FieldValueTypeInvalid' }];
  }
  return [];
}

function arrayErrors(items: readonly JsonValue[], schema: Schema, path: string): FieldError[] {
  const errors = schema.items ? items.flatMap((item, i) => schemaErrors(item, schema.items as Schema, `${path}[${i}]`)) : [];
  const keys = schema.listMapKeys;
  if (keys) {
    const seen = new Set<string>();
    items.forEach((item, i) => {
      if (!isJsonObject(item)) return;
      const key = JSON.stringify(keys.map((k) => item[k]));
      if (seen.has(key)) errors.push({ type: 'FieldValueDuplicate', field: `${path}[${i}]`, body: `Duplicate value: ${mapKeyLiteral(item, keys)}` });
      seen.add(key);
    });
  }
  return errors;
}

function objectErrors(object: JsonObject, schema: Schema, path: string): FieldError[] {
  const child = (key: string) => (path ? `${path}.${key}` : key);
  const errors = (schema.required ?? []).filter((key) => !Object.hasOwn(object, key)).map((key) => required(child(key)));
  for (const [key, value] of Object.entries(object)) {
    const property = schema.properties?.[key] ?? schema.additionalProperties;
    if (property) errors.push(...schemaErrors(value, property, child(key)));
  }
  return errors;
}

/**
 * v1 CRDs drop null values of declared, non-nullable fields before validating
 * (PruneNonNullableNullsWithoutDefaults), so `"phase": null` removes phase instead of failing.
 */
function pruneNulls(value: unknown, schema: Schema): void {
  if (Array.isArray(value) && schema.items) {
    for (const item of value) pruneNulls(item, schema.items);
    return;
  }
  if (!isJsonObject(value)) return;
  for (const [key, property] of Object.entries(schema.properties ?? {})) {
    if (value[key] === null) delete value[key];
    else pruneNulls(value[key], property);
  }
}

/** customResourceValidator.ValidateTypeMeta: a patch may have changed kind or apiVersion. */
function buildTypeMetaErrors(object: KubeObject): FieldError[] {
  const errors: FieldError[] = [];
  if (object.kind !== BUILD_KIND) errors.push(invalidValue('kind', quote(object.kind), `must be ${BUILD_KIND}`));
  if (object.apiVersion !== BUILD_API_VERSION) {
    errors.push(invalidValue('apiVersion', quote(object.apiVersion), `must be ${BUILD_API_VERSION}`));
  }
  return errors;
}

const BUILDS: ResourceInfo = {
  group: BUILD_GROUP,
  version: BUILD_VERSION,
  apiVersion: BUILD_API_VERSION,
  kind: BUILD_KIND,
  listKind: `${BUILD_KIND}List`,
  plural: BUILD_PLURAL,
  qualifiedResource: `${BUILD_PLURAL}.${BUILD_GROUP}`,
  qualifiedKind: `${BUILD_KIND}.${BUILD_GROUP}`,
  bodyTypes: ['application/json', 'application/yaml'],
  // customresource_handler.go: no strategic merge patch for custom resources.
  patchTypes: [JSON_PATCH, MERGE_PATCH, APPLY_PATCH],
  allowUnconditionalUpdate: false,
  statusSubresource: true,
  tracksGeneration: true,
  listItemsKeepTypeMeta: true,
  decode(value, raw) {
    // The unstructured decoder needs a kind; the handler then compares the group/version.
    if (typeof value.kind !== 'string' || value.kind === '') {
      throw badRequest(`Object 'Kind' is missing in '${raw.toString('utf8')}'`);
    }
    if (value.apiVersion !== BUILD_API_VERSION) {
      const sent = typeof value.apiVersion === 'string' ? value.apiVersion : '';
      throw badRequest(`the API version in the data (${sent}) does not match the expected API version (${BUILD_API_VERSION})`);
    }
    return decodeMetadata(this, value);
  },
  nameErrors: dns1123SubdomainErrors,
  prune: (object) => pruneNulls(object, BUILD_SCHEMA),
  validate: (object) => [...buildTypeMetaErrors(object), ...schemaErrors(object, BUILD_SCHEMA, '')],
  // A custom resource is unstructured JSON (map[string]interface{}): encoding/json sorts every map's keys.
  present: (object) => sortKeys(object) as KubeObject,
};

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (!isJsonObject(value)) return value;
  return Object.fromEntries(Object.keys(value).sort().map((key) => [key, sortKeys(value[key])]));
}

// ---------------------------------------------------------------------------------------------
// core/v1 events

const EVENT_STRING_FIELDS = ['reason', 'message', 'type', 'action', 'reportingComponent', 'reportingInstance', 'eventTime', 'firstTimestamp', 'lastTimestamp'] as const;
const OBJECT_REFERENCE_STRING_FIELDS = ['apiVersion', 'kind', 'name', 'namespace', 'uid', 'resourceVersion', 'fieldPath'] as const;

/** metav1.MicroTime's layout needs exactly six fractional digits. */
const MICRO_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(Z|[+-]\d\d:\d\d)$/;
const RFC3339 = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/;

/** The decoding failures of a typed core/v1 Event, as the message a client would see. */
function eventDecodeError(value: JsonObject): string | undefined {
  for (const field of EVENT_STRING_FIELDS) {
    const v = value[field];
    if (v !== undefined && v !== null && typeof v !== 'string') {
      return `json: cannot unmarshal ${goJsonType(v)} into Go struct field Event.${field} of type string`;
    }
  }
  if (value.count !== undefined && !Number.isInteger(value.count)) {
    return `json: cannot unmarshal ${goJsonType(value.count)} into Go struct field Event.count of type int32`;
  }
  const involved = value.involvedObject;
  if (involved !== undefined && !isJsonObject(involved)) {
    return `json: cannot unmarshal ${goJsonType(involved)} into Go struct field Event.involvedObject of type v1.ObjectReference`;
  }
  for (const field of OBJECT_REFERENCE_STRING_FIELDS) {
    const v = involved?.[field];
    if (v !== undefined && typeof v !== 'string') {
      return `json: cannot unmarshal ${goJsonType(v)} into Go struct field ObjectReference.involvedObject.${field} of type string`;
    }
  }
  const { eventTime, firstTimestamp, lastTimestamp } = value;
  if (typeof eventTime === 'string' && !MICRO_TIME.test(eventTime)) {
    return `parsing time ${quote(eventTime)} as "2006-01-02T15:04:05.000000Z07:00": cannot parse ${quote(eventTime.slice(19))} as ".000000"`;
  }
  for (const time of [firstTimestamp, lastTimestamp]) {
    if (typeof time === 'string' && !RFC3339.test(time)) return `parsing time ${quote(time)} as "2006-01-02T15:04:05Z07:00": cannot parse`;
  }
  return undefined;
}

const str = (value: unknown) => (typeof value === 'string' ? value : '');

/** Length limits of pkg/apis/core/validation/events.go. */
function tooLong(field: string, value: string, limit: number): FieldError[] {
  return value.length > limit ? [invalidValue(field, '""', `can have at most ${limit} characters`)] : [];
}

/** The checks of an Event that carries eventTime (the "new" kind, even on core/v1). */
function reportingErrors(event: KubeObject): FieldError[] {
  const component = str(event.reportingComponent);
  const errors: FieldError[] = [];
  // core/v1 names the field reportingComponent (the Go field is ReportingController).
  if (!component) errors.push(required('reportingComponent'));
  errors.push(...qualifiedNameErrors(component).map((m) => invalidValue('reportingComponent', quote(component), m)));
  for (const field of ['reportingInstance', 'action', 'reason'] as const) {
    const value = str(event[field]);
    if (!value) errors.push(required(field));
    errors.push(...tooLong(field, value, 128));
  }
  errors.push(...tooLong('message', str(event.message), 1024));
  return errors;
}

/** legacyValidateEvent: the only Event validation core/v1 requests get. */
function eventErrors(event: KubeObject): FieldError[] {
  const namespace = event.metadata.namespace;
  const involved = isJsonObject(event.involvedObject) ? event.involvedObject : {};
  const involvedNamespace = str(involved.namespace);
  const mismatch = invalidValue('involvedObject.namespace', quote(involvedNamespace), 'does not match event.namespace');
  const errors: FieldError[] = [];
  if (!event.eventTime) {
    // An empty involved namespace is accepted only for events in "" or "default" (old clients).
    const matches = involvedNamespace ? namespace === involvedNamespace : namespace === '' || namespace === 'default';
    if (!matches) errors.push(mismatch);
  } else {
    if (!involvedNamespace && namespace !== 'default' && namespace !== 'kube-system') errors.push(mismatch);
    errors.push(...reportingErrors(event));
  }
  errors.push(...dns1123SubdomainErrors(namespace).map((m) => invalidValue('namespace', quote(namespace), m)));
  return errors;
}

const EVENTS: ResourceInfo = {
  group: '',
  version: 'v1',
  apiVersion: 'v1',
  kind: 'Event',
  listKind: 'EventList',
  plural: 'events',
  qualifiedResource: 'events',
  qualifiedKind: 'Event',
  bodyTypes: ['application/json', 'application/yaml', 'application/vnd.kubernetes.protobuf'],
  patchTypes: [JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, APPLY_PATCH],
  allowUnconditionalUpdate: true,
  statusSubresource: false,
  tracksGeneration: false,
  listItemsKeepTypeMeta: false,
  decode(value) {
    // A typed decoder defaults a missing apiVersion/kind from the URL but refuses another one.
    if ((value.apiVersion ?? 'v1') !== 'v1') {
      throw badRequest(`the API version in the data (${str(value.apiVersion)}) does not match the expected API version (v1)`);
    }
    if ((value.kind ?? 'Event') !== 'Event') throw badRequest(`no kind ${quote(value.kind)} is registered for version "v1" in scheme`);
    const problem = eventDecodeError(value);
    if (problem) throw badRequest(`Event in version "v1" cannot be handled as a Event: ${problem}`);
    return decodeMetadata(this, { apiVersion: 'v1', kind: 'Event', ...value });
  },
  prune: () => undefined,
  nameErrors: pathSegmentErrors,
  validate: eventErrors,
  present: presentEvent,
};

/** core/v1 Event's fields in Go's order; eventTime (metav1.MicroTime, not omitempty) is written as null when unset. */
const EVENT_FIELD_ORDER = [
  'kind', 'apiVersion', 'metadata', 'involvedObject', 'reason', 'message', 'source', 'firstTimestamp', 'lastTimestamp',
  'count', 'type', 'eventTime', 'series', 'action', 'related', 'reportingComponent', 'reportingInstance',
];

const OBJECT_REFERENCE_ORDER = ['kind', 'namespace', 'name', 'uid', 'apiVersion', 'resourceVersion', 'fieldPath'];

function inOrder(fields: Record<string, unknown>, order: readonly string[]): Record<string, unknown> {
  const ordered: Record<string, unknown> = {};
  for (const key of order) if (Object.hasOwn(fields, key)) ordered[key] = fields[key];
  for (const [key, value] of Object.entries(fields)) if (!Object.hasOwn(ordered, key)) ordered[key] = value;
  return ordered;
}

function presentEvent(event: KubeObject): KubeObject {
  const fields: Record<string, unknown> = { ...event, eventTime: event.eventTime ?? null };
  if (isJsonObject(fields.involvedObject)) fields.involvedObject = inOrder(fields.involvedObject, OBJECT_REFERENCE_ORDER);
  return inOrder(fields, EVENT_FIELD_ORDER) as KubeObject;
}

// =============================================================================================
// Routing and authorization

export interface Route {
  resource: ResourceInfo;
  namespace: string;
  /** Absent for collection requests. */
  name?: string;
  subresource?: 'status';
  verb: Verb;
}

type VerbsByMethod = Partial<Record<string, Verb>>;

interface RouteTable {
  prefix: readonly string[];
  resource: ResourceInfo;
  collection: VerbsByMethod;
  item: VerbsByMethod;
  status?: VerbsByMethod;
}

/** Everything this server answers; any other method or path is a 404 like an unknown route. */
const ROUTES: readonly RouteTable[] = [
  {
    prefix: ['apis', BUILD_GROUP, BUILD_VERSION, 'namespaces'],
    resource: BUILDS,
    collection: { GET: 'list', POST: 'create' },
    item: { GET: 'get', PUT: 'update', PATCH: 'patch' },
    status: { GET: 'get', PUT: 'update', PATCH: 'patch' },
  },
  {
    prefix: ['api', 'v1', 'namespaces'],
    resource: EVENTS,
    collection: { GET: 'list', POST: 'create' },
    item: { GET: 'get', PATCH: 'patch' },
  },
];

function decodeSegments(path: string): string[] | undefined {
  try {
    return path.split('/').slice(1).map(decodeURIComponent);
  } catch {
    return undefined; // malformed %-escape
  }
}

/** `/<prefix>/<ns>/<plural>[/<name>[/status]]` → what is asked for, or undefined. */
export function parseRoute(method: string, path: string): Route | undefined {
  const segments = decodeSegments(path);
  if (!segments) return undefined;
  for (const table of ROUTES) {
    const { prefix, resource } = table;
    if (!prefix.every((p, i) => segments[i] === p)) continue;
    const [namespace, plural, name, subresource, ...extra] = segments.slice(prefix.length);
    if (!namespace || plural !== resource.plural || extra.length > 0) return undefined;
    if (name === undefined) return withVerb(table.collection[method], { resource, namespace });
    if (name === '') return undefined;
    if (subresource === undefined) return withVerb(table.item[method], { resource, namespace, name });
    if (subresource === 'status') return withVerb(table.status?.[method], { resource, namespace, name, subresource });
    return undefined;
  }
  return undefined;
}

function withVerb(verb: Verb | undefined, target: Omit<Route, 'verb'>): Route | undefined {
  return verb ? { ...target, verb } : undefined;
}

/**
 * What the authorizer sees of a request (RequestInfoFactory): parsed from any /api or /apis path,
 * whether or not this server serves it, because kube-apiserver authorizes before it routes.
 */
export interface RequestAttributes {
  verb: string;
  group: string;
  version: string;
  resource: string;
  subresource?: string;
  name?: string;
  namespace: string;
}

/** Namespaced resource requests only; anything else (discovery, cluster-scoped) is undefined. */
export function requestAttributes(method: string, path: string): RequestAttributes | undefined {
  const segments = decodeSegments(path);
  if (!segments) return undefined;
  const [root, ...rest] = segments;
  const groupVersion = root === 'api' ? ['', ...rest.slice(0, 1)] : root === 'apis' ? rest.slice(0, 2) : undefined;
  if (!groupVersion || groupVersion.length < 2) return undefined;
  const [, namespaces, namespace, resource, name, subresource, ...extra] = root === 'api' ? ['', ...rest] : rest.slice(1);
  if (namespaces !== 'namespaces' || !namespace || !resource || extra.length > 0) return undefined;
  const verbs: Record<string, string> = { GET: name ? 'get' : 'list', POST: 'create', PUT: 'update', PATCH: 'patch', DELETE: name ? 'delete' : 'deletecollection' };
  const verb = verbs[method];
  if (!verb) return undefined;
  return { verb, group: groupVersion[0]!, version: groupVersion[1]!, resource, namespace, ...(name ? { name } : {}), ...(subresource ? { subresource } : {}) };
}

/** The group each resource a rule can name lives in (rules here name resources, not groups). */
const RULE_GROUPS: Readonly<Record<string, string>> = { builds: BUILD_GROUP, events: '' };

export function allows(rules: readonly PermissionRule[], request: RequestAttributes): boolean {
  const resource = request.subresource ? `${request.resource}/${request.subresource}` : request.resource;
  return rules.some(
    (rule) =>
      (rule.verbs === '*' || (rule.verbs as readonly string[]).includes(request.verb)) &&
      (rule.resources === '*' || (RULE_GROUPS[request.resource] === request.group && (rule.resources as readonly string[]).includes(resource))) &&
      (rule.namespaces === undefined || rule.namespaces.includes(request.namespace)),
  );
}

/** The attributes of a routed request. */
export function routeAttributes(route: Route): RequestAttributes {
  const { resource, namespace, name, subresource, verb } = route;
  return { verb, group: resource.group, version: resource.version, resource: resource.plural, namespace, ...(name ? { name } : {}), ...(subresource ? { subresource } : {}) };
}

/** Groups with an API installed here: a route missing inside one is a Status 404, elsewhere Go's plain "404 page not found". */
export function servesGroup(group: string): boolean {
  return group === '' || group === BUILD_GROUP;
}

// =============================================================================================
// Store: one global revision counter, like etcd's

class Store {
  private revision = 0;
  private readonly objects = new Map<ResourceInfo, Map<string, KubeObject>>([
    [BUILDS, new Map()],
    [EVENTS, new Map()],
  ]);

  get resourceVersion(): string {
    return String(this.revision);
  }

  private table(resource: ResourceInfo): Map<string, KubeObject> {
    const table = this.objects.get(resource);
    if (!table) throw new Error(`no table for ${resource.plural}`);
    return table;
  }

  /** The live object: callers copy before changing or handing it out. */
  get(resource: ResourceInfo, namespace: string, name: string): KubeObject | undefined {
    return this.table(resource).get(`${namespace}/${name}`);
  }

  /** Stores the object under a fresh resourceVersion. */
  put(resource: ResourceInfo, object: KubeObject): KubeObject {
    this.revision += 1;
    object.metadata.resourceVersion = String(this.revision);
    object.metadata = orderMetadata(object.metadata);
    const stored = resource.present(object);
    this.table(resource).set(`${stored.metadata.namespace}/${stored.metadata.name}`, stored);
    return stored;
  }

  delete(resource: ResourceInfo, namespace: string, name: string): boolean {
    return this.table(resource).delete(`${namespace}/${name}`);
  }

  /** Sorted by namespace then name, as etcd returns keys. */
  list(resource: ResourceInfo, namespace?: string): KubeObject[] {
    return [...this.table(resource).entries()]
      .filter(([, o]) => namespace === undefined || o.metadata.namespace === namespace)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([, o]) => o);
  }
}

const METADATA_ORDER = ['name', 'generateName', 'namespace', 'uid', 'resourceVersion', 'generation', 'creationTimestamp'];

/** ObjectMeta's field order in kube-apiserver's JSON, so stored objects read naturally. */
function orderMetadata(metadata: ObjectMeta): ObjectMeta {
  const ordered: Record<string, unknown> = {};
  for (const key of METADATA_ORDER) if (Object.hasOwn(metadata, key)) ordered[key] = metadata[key];
  for (const [key, value] of Object.entries(metadata)) if (!Object.hasOwn(ordered, key)) ordered[key] = value;
  return ordered as ObjectMeta;
}

/** metav1.Time: RFC 3339 with second precision. */
const now = () => new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');

/** names.SimpleNameGenerator: five characters from an alphabet without vowels or look-alikes. */
function generatedSuffix(): string {
  const alphabet = 'bcdfghjklmnpqrstvwxz2456789';
  return [...randomBytes(5)].map((b) => alphabet[b % alphabet.length]).join('');
}

// ---------------------------------------------------------------------------------------------
// Media types and bodies

/** What a verb needs from the HTTP request. */
export interface ApiRequest {
  query: URLSearchParams;
  contentType: string | undefined;
  /** Undefined when the body was over MAX_BODY_BYTES. */
  body: Buffer | undefined;
}

function requireBody(request: ApiRequest): Buffer {
  if (!request.body) throw entityTooLarge(`limit is ${MAX_BODY_BYTES}`);
  return request.body;
}

/** A PUT/POST media type: parameters dropped, case folded; none means JSON (NegotiateInputSerializer). */
function bodyMediaType(contentType: string | undefined): string {
  return (contentType ?? '').split(';')[0]?.trim().toLowerCase() || 'application/json';
}

/** patch.go: only the part before the first ';' counts, compared exactly. */
function patchMediaType(contentType: string | undefined): string {
  const value = contentType ?? '';
  const semicolon = value.indexOf(';');
  return semicolon > 0 ? value.slice(0, semicolon) : value;
}

// =============================================================================================
// The registry

/**
 * kube-apiserver's generic registry (store.go, rest/create.go, rest/update.go, handlers/*.go) for
 * the two resources, over an in-memory store. No I/O: the HTTP server authenticates, routes and
 * authorizes, then hands the request here; every refusal is thrown as an ApiError.
 */
export class Registry {
  private readonly store = new Store();

  /** Runs one routed, authorized request: the HTTP status and the object to answer with. */
  handle(route: Route, request: ApiRequest): { status: number; value: unknown } {
    switch (route.verb) {
      case 'get':
        return { status: 200, value: this.find(route) };
      case 'list':
        return { status: 200, value: this.list(route) };
      case 'create':
        return { status: 201, value: this.create(route, request) };
      case 'update':
        return { status: 200, value: this.replace(route, request) };
      case 'patch':
        return { status: 200, value: this.patch(route, request) };
    }
  }

  // -------------------------------------------------------------------------------------------
  // Direct access, as the operator would write: validated like the API, errors thrown as Error.

  /** The live stored object; callers copy before handing it out. */
  build(namespace: string, name: string): KubeObject | undefined {
    return this.store.get(BUILDS, namespace, name);
  }

  /** The live stored Events, sorted by namespace and name. */
  events(namespace?: string): KubeObject[] {
    return this.store.list(EVENTS, namespace);
  }

  deleteBuild(namespace: string, name: string): boolean {
    return this.store.delete(BUILDS, namespace, name);
  }

  /** A Build as the operator makes it: created, then its status written (POST alone drops status). */
  seedBuild(object: KubeObject): KubeObject {
    const { name, namespace } = object.metadata;
    BUILDS.prune(object);
    const errors = creationErrors(BUILDS, object);
    if (errors.length > 0) throw new Error(invalidObject(BUILDS, name, errors).message);
    if (this.store.get(BUILDS, namespace, name)) throw new Error(alreadyExists(BUILDS, name).message);
    return this.insert(BUILDS, object);
  }

  /** Replaces (with undefined: removes) a Build's status under a new resourceVersion. */
  writeStatus(namespace: string, name: string, status: unknown): KubeObject {
    const current = this.store.get(BUILDS, namespace, name);
    if (!current) throw new Error(notFound(BUILDS, name).message);
    const next = deepCopy(current);
    if (status === undefined) delete next.status;
    else next.status = deepCopy(status);
    BUILDS.prune(next);
    const errors = BUILDS.validate(next);
    if (errors.length > 0) throw new Error(invalidObject(BUILDS, name, errors).message);
    return this.store.put(BUILDS, next);
  }

  // -------------------------------------------------------------------------------------------
  // The verbs

  private find(route: Route): KubeObject {
    const name = route.name ?? '';
    const object = this.store.get(route.resource, route.namespace, name);
    if (!object) throw notFound(route.resource, name);
    return object;
  }

  private list(route: Route): Record<string, unknown> {
    const { resource } = route;
    const items = this.store.list(resource, route.namespace).map((object) => {
      if (resource.listItemsKeepTypeMeta) return object;
      const { apiVersion: _apiVersion, kind: _kind, ...rest } = object;
      return rest;
    });
    return { apiVersion: resource.apiVersion, kind: resource.listKind, metadata: { resourceVersion: this.store.resourceVersion }, items };
  }

  /** 415 for a media type the resource does not take, 413 over the size limit, 400 for bad JSON. */
  private decode(resource: ResourceInfo, request: ApiRequest): KubeObject {
    if (!resource.bodyTypes.includes(bodyMediaType(request.contentType))) throw unsupportedMediaType(resource.bodyTypes);
    const raw = requireBody(request);
    const unrecognized = (why: string) =>
      badRequest(`the object provided is unrecognized (must be of type ${resource.kind}): couldn't get version/kind; json parse error: ${why} (${summarize(raw)})`);
    let value: unknown;
    try {
      value = JSON.parse(raw.toString('utf8'));
    } catch (error) {
      throw unrecognized((error as Error).message);
    }
    // Only JSON is decoded: a YAML or protobuf body that is not also JSON ends here.
    if (!isJsonObject(value)) throw unrecognized(`json: cannot unmarshal ${goJsonType(value)} into Go value of type struct`);
    return decodeValue(resource, value, raw);
  }

  private create(route: Route, request: ApiRequest): KubeObject {
    const { resource, namespace } = route;
    const object = this.decode(resource, request);
    const { metadata } = object;
    if (metadata.namespace && metadata.namespace !== namespace) {
      throw badRequest('the namespace of the provided object does not match the namespace sent on the request');
    }
    metadata.namespace = namespace;
    if (!metadata.name && typeof metadata.generateName === 'string' && metadata.generateName) {
      metadata.name = `${metadata.generateName}${generatedSuffix()}`;
    }
    // customresource strategy.go PrepareForCreate: "create cannot set status".
    if (resource.statusSubresource) delete object.status;
    const name = metadata.name ?? '';
    const errors = creationErrors(resource, object);
    if (errors.length > 0) throw invalidObject(resource, name, errors);
    // etcd3 store.Create returns a plain error, which the handler turns into a reason-less 500.
    if (metadata.resourceVersion) throw fail(failure(500, undefined, 'resourceVersion should not be set on objects to be created'));
    if (this.store.get(resource, namespace, name)) throw alreadyExists(resource, name);
    return this.insert(resource, object);
  }

  /** PUT: decode, check the name, then the store's preconditions (uid, resourceVersion). */
  private replace(route: Route, request: ApiRequest): KubeObject {
    const candidate = this.decode(route.resource, request);
    checkName(candidate, route);
    const current = this.find(route);
    const uid = candidate.metadata.uid;
    if (uid && uid !== current.metadata.uid) {
      throw conflict(route.resource, current.metadata.name, `Precondition failed: UID in precondition: ${uid}, UID in object meta: ${current.metadata.uid ?? ''}`);
    }
    return this.update(route, current, candidate);
  }

  private patch(route: Route, request: ApiRequest): KubeObject {
    const { resource } = route;
    const patchType = patchMediaType(request.contentType);
    if (!resource.patchTypes.includes(patchType)) throw unsupportedMediaType(resource.patchTypes);
    const patch = requireBody(request);
    validatePatchOptions(request.query, patchType);
    const current = this.find(route);
    const candidate = decodePatched(resource, applyPatch(patchType, current, patch));
    checkName(candidate, route);
    // A patch carries no uid precondition; changing uid is an immutable-field error instead.
    if (!route.subresource && candidate.metadata.uid !== current.metadata.uid) {
      throw invalidObject(resource, current.metadata.name, [invalidValue('metadata.uid', quote(candidate.metadata.uid ?? ''), 'field is immutable')]);
    }
    return this.update(route, current, candidate);
  }

  /** store.go Update: resourceVersion precondition, the strategy's PrepareForUpdate, validation, write. */
  private update(route: Route, current: KubeObject, candidate: KubeObject): KubeObject {
    const { resource } = route;
    const name = current.metadata.name;
    const resourceVersion = candidate.metadata.resourceVersion;
    if (!resourceVersion) {
      if (!resource.allowUnconditionalUpdate) throw resourceVersionRequired(resource, name);
    } else if (resourceVersion !== current.metadata.resourceVersion) {
      throw conflict(resource, name);
    }
    const next = route.subresource === 'status' ? withStatusFrom(current, candidate) : prepareMainUpdate(resource, current, candidate);
    const errors = resource.validate(next);
    if (errors.length > 0) throw invalidObject(resource, name, errors);
    // GuaranteedUpdate writes nothing when the object did not change: no new resourceVersion.
    if (deepEqual({ ...next, metadata: { ...next.metadata, resourceVersion: undefined } }, { ...current, metadata: { ...current.metadata, resourceVersion: undefined } })) return current;
    return this.store.put(resource, next);
  }

  /** Fills what the server sets on create (rest.FillObjectMetaSystemFields, strategy) and stores. */
  private insert(resource: ResourceInfo, object: KubeObject): KubeObject {
    object.metadata.uid = randomUUID();
    object.metadata.creationTimestamp = now();
    if (resource.tracksGeneration) object.metadata.generation = 1;
    return this.store.put(resource, object);
  }
}

/** handlers/rest.go checkName: the body must name the URL's object; an empty namespace is fine. */
function checkName(object: KubeObject, route: Route): void {
  const name = object.metadata.name ?? '';
  if (name !== route.name) {
    throw badRequest(`the name of the object (${name}) does not match the name on the URL (${route.name ?? ''})`);
  }
  const namespace = object.metadata.namespace ?? '';
  if (namespace && namespace !== route.namespace) {
    throw badRequest(`the namespace of the object (${namespace}) does not match the namespace on the request (${route.namespace})`);
  }
}

/** ValidatePatchOptions: apply needs a fieldManager; force is only for apply. */
function validatePatchOptions(query: URLSearchParams, patchType: string): void {
  const patchOptionsInvalid = (error: FieldError) => invalid('PatchOptions.meta.k8s.io', 'meta.k8s.io', 'PatchOptions', '', [error]);
  if (patchType === APPLY_PATCH && !query.get('fieldManager')) {
    throw patchOptionsInvalid(required('fieldManager', 'is required for apply patch'));
  }
  if (patchType !== APPLY_PATCH && query.has('force')) {
    throw patchOptionsInvalid(forbiddenField('force', 'may not be specified for non-apply patch'));
  }
}

/** The patch applied to the current object's JSON (with its resourceVersion), as patch.go does. */
function applyPatch(patchType: string, current: KubeObject, raw: Buffer): JsonValue {
  const text = raw.toString('utf8');
  switch (patchType) {
    case JSON_PATCH:
      return applyJsonPatchBody(asJson(current), text);
    case MERGE_PATCH:
    // Events have no list fields with a patch strategy, so a strategic merge patch of an Event
    // merges like RFC 7386 (the `$patch` directives are not implemented).
    case STRATEGIC_MERGE_PATCH: {
      let patch: unknown;
      try {
        patch = JSON.parse(text);
      } catch (error) {
        throw patchDecodeError(goJsonError(error, text));
      }
      if (!isJsonObject(patch)) throw patchDecodeError(`json: cannot unmarshal ${goJsonType(patch)} into Go value of type map[string]interface {}`);
      return applyMergePatch(asJson(current), patch);
    }
    default:
      throw fail(failure(500, 'InternalError', 'Internal error occurred: server-side apply is not implemented by the local API server'));
  }
}

const MAX_JSON_PATCH_OPERATIONS = 10000;

/** patch.go decodes every patch body with encoding/json first and says so. */
const patchDecodeError = (why: string) => badRequest(`error decoding patch: ${why}`);

/** encoding/json's wording for the syntax errors JSON.parse reports (the common ones exactly). */
function goJsonError(error: unknown, text: string): string {
  const message = (error as Error).message;
  if (/Unexpected end of JSON input/i.test(message)) return 'unexpected end of JSON input';
  const at = /at position (\d+)/.exec(message);
  const char = at ? text.charAt(Number(at[1])) : '';
  if (char && /Expected property name/.test(message)) return `invalid character '${char}' looking for beginning of object key string`;
  if (char) return `invalid character '${char}' looking for beginning of value`;
  return message.charAt(0).toLowerCase() + message.slice(1);
}

function applyJsonPatchBody(document: JsonObject, text: string): JsonValue {
  let operations: unknown;
  try {
    operations = JSON.parse(text);
  } catch (error) {
    throw patchDecodeError(goJsonError(error, text));
  }
  if (!Array.isArray(operations)) {
    throw patchDecodeError(`json: cannot unmarshal ${goJsonType(operations)} into Go value of type []handlers.jsonPatchOp`);
  }
  const notObject = operations.find((op) => !isJsonObject(op));
  if (notObject !== undefined) {
    throw patchDecodeError(`json: cannot unmarshal ${goJsonType(notObject)} into Go value of type handlers.jsonPatchOp`);
  }
  if (operations.length > MAX_JSON_PATCH_OPERATIONS) {
    throw entityTooLarge(`The allowed maximum operations in a JSON patch is ${MAX_JSON_PATCH_OPERATIONS}, got ${operations.length}`);
  }
  try {
    return applyJsonPatch(document, operations);
  } catch (error) {
    if (error instanceof JsonPatchError) throw fail(PATCH_REJECTED);
    throw error;
  }
}

/** The patched JSON goes through the same decoding as a request body: a patch can break it too. */
function decodePatched(resource: ResourceInfo, patched: JsonValue): KubeObject {
  if (!isJsonObject(patched)) throw fail(PATCH_REJECTED);
  return decodeValue(resource, patched, Buffer.from(JSON.stringify(patched)));
}

function decodeValue(resource: ResourceInfo, value: JsonObject, raw: Buffer): KubeObject {
  const object = resource.decode(value, raw);
  resource.prune(object);
  return object;
}

/** ValidateObjectMeta's name rule on create, then the kind's own validation. */
function creationErrors(resource: ResourceInfo, object: KubeObject): FieldError[] {
  const name = object.metadata.name ?? '';
  const nameErrors = name
    ? resource.nameErrors(name).map((m) => invalidValue('metadata.name', quote(name), m))
    : [required('metadata.name', 'name or generateName is required')];
  return [...nameErrors, ...resource.validate(object)];
}

/** status_strategy.go PrepareForUpdate: the old object wholesale, with only `status` from the request. */
function withStatusFrom(current: KubeObject, candidate: KubeObject): KubeObject {
  const next = deepCopy(current);
  // A missing status key deletes status (a null one was pruned to missing already).
  if (candidate.status === undefined) delete next.status;
  else next.status = deepCopy(candidate.status);
  return next;
}

/**
 * rest.BeforeUpdate + strategy PrepareForUpdate for the main resource: system fields come from the
 * old object, `status` is kept as it was, and generation moves only when something outside
 * metadata and status changed.
 */
function prepareMainUpdate(resource: ResourceInfo, current: KubeObject, candidate: KubeObject): KubeObject {
  const next = deepCopy(candidate);
  const { uid, creationTimestamp, generation } = current.metadata;
  next.metadata = { ...next.metadata, namespace: current.metadata.namespace, uid, creationTimestamp };
  if (generation !== undefined) next.metadata.generation = generation;
  if (resource.statusSubresource) {
    if (Object.hasOwn(current, 'status')) next.status = deepCopy(current.status);
    else delete next.status;
  }
  if (generation !== undefined && !deepEqual(withoutMetadataAndStatus(next), withoutMetadataAndStatus(current))) {
    next.metadata.generation = generation + 1;
  }
  return next;
}

function withoutMetadataAndStatus(object: KubeObject): Record<string, unknown> {
  const { metadata: _metadata, status: _status, ...rest } = object;
  return rest;
}
