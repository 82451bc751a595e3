/**
 * What kube-apiserver decides for the requests the local API server answers, with no I/O:
 * routing, the generic registry's get/list/watch/create/update/patch semantics over an in-memory
 * store with one global resourceVersion counter, field validation (the loaded CRD's structural
 * schema, core/v1 Event rules, names) and the exact metav1.Status refusals. server.ts puts HTTPS,
 * tokens, faults and streaming in front of it. Sources are named in
 * shared/reference/kubernetes-api.md; where this simplifies, the comment says so.
 */
import { randomBytes, randomUUID } from 'node:crypto';

import type { ObjectMeta } from '../../lib/types.js';
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
import { pruneNulls, pruneObject, schemaErrors, type CustomResourceDefinition } from './schema.js';
import { fieldSelector, labelSelector } from './selectors.js';
import {
  badRequest,
  details,
  fail,
  failure,
  forbiddenField,
  invalid,
  invalidValue,
  quote,
  required,
  StatusError,
  type FieldError,
} from './status.js';
import { customResourcePrinter, EVENT_PRINTER, type TablePrinter } from './table.js';
import { ChangeLog, type Change, type ChangeType } from './watch.js';
import type { DiscoveredResource } from './discovery.js';

// =============================================================================================
// Permissions

export type Verb = 'get' | 'list' | 'watch' | 'create' | 'update' | 'patch';
/** `builds`, `builds/status`, `events`: a resource, or a resource and its subresource. */
export type ResourceName = string;

/** One RBAC-like grant; a request is allowed when any rule of its identity covers it. */
export interface PermissionRule {
  verbs: readonly Verb[] | '*';
  resources: readonly ResourceName[] | '*';
  /** Namespaces the rule covers; omitted means every namespace and the cluster scope (like a ClusterRoleBinding). */
  namespaces?: readonly string[];
}

// =============================================================================================
// Refusals that name a resource

function resourceDetails(resource: ResourceInfo, name?: string) {
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

const unsupportedMediaType = (accepted: readonly string[]) =>
  fail(failure(415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: ${accepted.join(', ')}`));

/** kube-apiserver's --max-request-bytes default: limitedReadBody refuses bodies over 3 MiB. */
export const MAX_BODY_BYTES = 3 * 1024 * 1024;
const entityTooLarge = (what: string) => fail(failure(413, 'RequestEntityTooLarge', `Request entity too large: ${what}`));

export const UNAUTHORIZED = failure(401, 'Unauthorized', 'Unauthorized');
export const ROUTE_NOT_FOUND = failure(404, 'NotFound', 'the server could not find the requested resource');

/** NewGenericServerResponse(422, …) as patch.go uses it for a JSON patch that fails to apply. */
const PATCH_REJECTED = failure(422, 'Invalid', 'the server rejected our request due to an error in our request', {});

/** responsewriters.Forbidden: the authorizer's refusal, naming who asked for what, and where. */
export function forbidden(user: string, route: Route): StatusError {
  const { resource, name, namespace, verb } = route;
  const subject = name ? `${resource.qualifiedResource} "${name}"` : resource.qualifiedResource;
  const scope = namespace === undefined ? 'at the cluster scope' : `in the namespace "${namespace}"`;
  const message = `${subject} is forbidden: User "${user}" cannot ${verb} resource "${resourceName(route)}" in API group "${resource.group}" ${scope}`;
  return fail(failure(403, 'Forbidden', message, resourceDetails(resource, name)));
}

const invalidObject = (resource: ResourceInfo, name: string, errors: readonly FieldError[]) =>
  invalid(resource.qualifiedKind, resource.group, resource.kind, name, errors);

/** store.go: custom resources do not allow unconditional updates. */
const resourceVersionRequired = (resource: ResourceInfo, name: string) =>
  invalid(resource.qualifiedResource, resource.group, resource.plural, name, [
    invalidValue('metadata.resourceVersion', '0x0', 'must be specified for an update'),
  ]);

/** The watch cache's answer to a resourceVersion older than it keeps. */
const expired = (asked: number, oldest: number) => fail(failure(410, 'Expired', `too old resource version: ${asked} (${oldest})`));

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
// Decoding

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

export interface ResourceInfo {
  readonly group: string;
  readonly version: string;
  readonly apiVersion: string;
  readonly kind: string;
  readonly listKind: string;
  readonly plural: string;
  readonly singular: string;
  readonly shortNames: readonly string[];
  readonly categories: readonly string[];
  /** `builds.spot.release.com`, `events`: how NotFound, Conflict and Forbidden name it. */
  readonly qualifiedResource: string;
  /** `Build.spot.release.com`, `Event`: how validation errors name it. */
  readonly qualifiedKind: string;
  /** The verbs discovery lists: the ones this server serves. */
  readonly verbs: readonly Verb[];
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
  /** Columns for `kubectl get`. */
  readonly printer: TablePrinter;
  /** The fields a field selector may name, and their values for one object (ToSelectableFields). */
  readonly selectableFields: ReadonlySet<string>;
  fieldsOf(object: KubeObject): Record<string, string>;
  /** Checks kind/apiVersion and field types the way decoding into the Go type would (400). */
  decode(value: JsonObject, raw: Buffer): KubeObject;
  /** Drops what the server drops from any incoming object before validating it; returns the unknown fields' paths. */
  prune(object: KubeObject): string[];
  /** Name rule for create: DNS subdomain for custom resources, path segment for Events. */
  nameErrors(name: string): string[];
  /** The kind's own validation, run on create and on every update (422). */
  validate(object: KubeObject): FieldError[];
}

const metaFields = (object: KubeObject) => ({ 'metadata.name': object.metadata.name ?? '', 'metadata.namespace': object.metadata.namespace ?? '' });

/** customResourceValidator.ValidateTypeMeta: a patch may have changed kind or apiVersion. */
function typeMetaErrors(resource: ResourceInfo, object: KubeObject): FieldError[] {
  const errors: FieldError[] = [];
  if (object.kind !== resource.kind) errors.push(invalidValue('kind', quote(object.kind), `must be ${resource.kind}`));
  if (object.apiVersion !== resource.apiVersion) errors.push(invalidValue('apiVersion', quote(object.apiVersion), `must be ${resource.apiVersion}`));
  return errors;
}

/** The resource a CRD defines, served as customresource_handler.go serves it. */
export function customResource(crd: CustomResourceDefinition): ResourceInfo {
  const apiVersion = `${crd.group}/${crd.version}`;
  const resource: ResourceInfo = {
    group: crd.group,
    version: crd.version,
    apiVersion,
    kind: crd.kind,
    listKind: crd.listKind,
    plural: crd.plural,
    singular: crd.singular,
    shortNames: crd.shortNames,
    categories: crd.categories,
    qualifiedResource: `${crd.plural}.${crd.group}`,
    qualifiedKind: `${crd.kind}.${crd.group}`,
    verbs: ['create', 'get', 'list', 'patch', 'update', 'watch'],
    bodyTypes: ['application/json', 'application/yaml'],
    // customresource_handler.go: no strategic merge patch for custom resources.
    patchTypes: [JSON_PATCH, MERGE_PATCH, APPLY_PATCH],
    allowUnconditionalUpdate: false,
    statusSubresource: crd.statusSubresource,
    tracksGeneration: true,
    listItemsKeepTypeMeta: true,
    printer: customResourcePrinter(crd.columns),
    // crConverter.ConvertFieldLabel: metadata.name and metadata.namespace (no selectableFields here).
    selectableFields: new Set(['metadata.name', 'metadata.namespace']),
    fieldsOf: metaFields,
    decode(value, raw) {
      // The unstructured decoder needs a kind; the handler then compares the group/version.
      if (typeof value.kind !== 'string' || value.kind === '') {
        throw badRequest(`Object 'Kind' is missing in '${raw.toString('utf8')}'`);
      }
      if (value.apiVersion !== apiVersion) {
        const sent = typeof value.apiVersion === 'string' ? value.apiVersion : '';
        throw badRequest(`the API version in the data (${sent}) does not match the expected API version (${apiVersion})`);
      }
      return decodeMetadata(this, value);
    },
    nameErrors: dns1123SubdomainErrors,
    prune(object) {
      const unknown = pruneObject(asJson(object), crd.schema);
      pruneNulls(object, crd.schema);
      return unknown;
    },
    validate: (object) => [...typeMetaErrors(resource, object), ...schemaErrors(asJson(object), crd.schema, '')],
  };
  return resource;
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
  singular: 'event',
  shortNames: ['ev'],
  categories: [],
  qualifiedResource: 'events',
  qualifiedKind: 'Event',
  verbs: ['create', 'get', 'list', 'patch', 'watch'],
  bodyTypes: ['application/json', 'application/yaml', 'application/vnd.kubernetes.protobuf'],
  patchTypes: [JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, APPLY_PATCH],
  allowUnconditionalUpdate: true,
  statusSubresource: false,
  tracksGeneration: false,
  listItemsKeepTypeMeta: false,
  printer: EVENT_PRINTER,
  selectableFields: new Set([
    'metadata.name', 'metadata.namespace', 'involvedObject.kind', 'involvedObject.namespace', 'involvedObject.name', 'involvedObject.uid',
    'involvedObject.apiVersion', 'involvedObject.resourceVersion', 'involvedObject.fieldPath', 'reason', 'reportingComponent', 'source', 'type',
  ]),
  /** pkg/registry/core/event/strategy.go ToSelectableFields. */
  fieldsOf(event) {
    const involved = isJsonObject(event.involvedObject) ? event.involvedObject : {};
    const source = isJsonObject(event.source) ? event.source : {};
    return {
      ...metaFields(event),
      'involvedObject.kind': str(involved.kind),
      'involvedObject.namespace': str(involved.namespace),
      'involvedObject.name': str(involved.name),
      'involvedObject.uid': str(involved.uid),
      'involvedObject.apiVersion': str(involved.apiVersion),
      'involvedObject.resourceVersion': str(involved.resourceVersion),
      'involvedObject.fieldPath': str(involved.fieldPath),
      reason: str(event.reason),
      reportingComponent: str(event.reportingComponent),
      source: str(source.component) || str(event.reportingComponent),
      type: str(event.type),
    };
  },
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
  // Simplification: a typed decoder would drop unknown Event fields; the runtime sends none.
  prune: () => [],
  nameErrors: pathSegmentErrors,
  validate: eventErrors,
};

// =============================================================================================
// Routing and authorization

export interface Route {
  resource: ResourceInfo;
  /** Absent for a list or watch across all namespaces. */
  namespace?: string;
  /** Absent for collection requests. */
  name?: string;
  subresource?: 'status';
  verb: Verb;
}

function decodeSegments(path: string): string[] | undefined {
  try {
    return path.split('/').slice(1).map(decodeURIComponent);
  } catch {
    return undefined; // malformed %-escape
  }
}

/** `?watch=1` / `?watch=true` turns a collection GET into a watch (ParseBool accepts more; clients send these). */
function isWatch(query: URLSearchParams): boolean {
  const value = query.get('watch');
  return value === '1' || value === 'true' || value === 'True' || value === 't';
}

/** The path prefix of a resource: `/api/v1` for core, `/apis/GROUP/VERSION` for the rest. */
function prefixOf(resource: ResourceInfo): string[] {
  return resource.group ? ['apis', resource.group, resource.version] : ['api', resource.version];
}

/**
 * `<prefix>[/namespaces/<ns>]/<plural>[/<name>[/status]]` → what is asked for, or undefined
 * (a 404 like an unknown route).
 */
function parseRoute(resources: readonly ResourceInfo[], method: string, path: string, query: URLSearchParams): Route | undefined {
  const segments = decodeSegments(path);
  if (!segments) return undefined;
  for (const resource of resources) {
    const prefix = prefixOf(resource);
    if (!prefix.every((p, i) => segments[i] === p)) continue;
    let rest = segments.slice(prefix.length);
    let namespace: string | undefined;
    if (rest[0] === 'namespaces') {
      namespace = rest[1];
      if (!namespace) return undefined;
      rest = rest.slice(2);
    }
    const [plural, name, subresource, ...extra] = rest;
    if (plural !== resource.plural || extra.length > 0) continue;
    if (name === undefined) {
      if (method === 'GET') return { resource, namespace, verb: isWatch(query) ? 'watch' : 'list' };
      return method === 'POST' && namespace !== undefined ? { resource, namespace, verb: 'create' } : undefined;
    }
    if (name === '' || namespace === undefined) return undefined;
    const verbs: Partial<Record<string, Verb>> = { GET: 'get', PUT: 'update', PATCH: 'patch' };
    const verb = verbs[method];
    if (!verb || (resource === EVENTS && verb === 'update')) return undefined;
    if (subresource === undefined) return { resource, namespace, name, verb };
    if (subresource === 'status' && resource.statusSubresource) return { resource, namespace, name, subresource, verb };
    return undefined;
  }
  return undefined;
}

function resourceName(route: Route): ResourceName {
  return route.subresource ? `${route.resource.plural}/${route.subresource}` : route.resource.plural;
}

export function allows(rules: readonly PermissionRule[], route: Route): boolean {
  const resource = resourceName(route);
  return rules.some(
    (rule) =>
      (rule.verbs === '*' || rule.verbs.includes(route.verb)) &&
      (rule.resources === '*' || rule.resources.includes(resource)) &&
      (rule.namespaces === undefined || (route.namespace !== undefined && rule.namespaces.includes(route.namespace))),
  );
}

// =============================================================================================
// Store: one global revision counter, like etcd's

type StoreChange = Change<KubeObject> & { previous?: KubeObject };

class Store {
  private revision = 0;
  private readonly objects = new Map<ResourceInfo, Map<string, KubeObject>>();
  private readonly logs = new Map<ResourceInfo, ChangeLog<KubeObject>>();

  constructor(resources: readonly ResourceInfo[]) {
    for (const resource of resources) {
      this.objects.set(resource, new Map());
      this.logs.set(resource, new ChangeLog());
    }
  }

  get resourceVersion(): string {
    return String(this.revision);
  }

  private table(resource: ResourceInfo): Map<string, KubeObject> {
    const table = this.objects.get(resource);
    if (!table) throw new Error(`no table for ${resource.plural}`);
    return table;
  }

  log(resource: ResourceInfo): ChangeLog<KubeObject> {
    const log = this.logs.get(resource);
    if (!log) throw new Error(`no change log for ${resource.plural}`);
    return log;
  }

  /** The live object: callers copy before changing or handing it out. */
  get(resource: ResourceInfo, namespace: string, name: string): KubeObject | undefined {
    return this.table(resource).get(`${namespace}/${name}`);
  }

  /** Stores the object under a fresh resourceVersion; stored objects are never changed in place. */
  put(resource: ResourceInfo, object: KubeObject): KubeObject {
    this.revision += 1;
    object.metadata.resourceVersion = String(this.revision);
    object.metadata = orderMetadata(object.metadata);
    const key = `${object.metadata.namespace}/${object.metadata.name}`;
    const previous = this.table(resource).get(key);
    this.table(resource).set(key, object);
    this.record(resource, previous ? 'MODIFIED' : 'ADDED', object, previous);
    return object;
  }

  /** Removes the object; watchers see it once more, under the deletion's resourceVersion. */
  delete(resource: ResourceInfo, namespace: string, name: string): KubeObject | undefined {
    const current = this.get(resource, namespace, name);
    if (!current) return undefined;
    this.table(resource).delete(`${namespace}/${name}`);
    this.revision += 1;
    const gone = deepCopy(current);
    gone.metadata.resourceVersion = String(this.revision);
    this.record(resource, 'DELETED', gone);
    return gone;
  }

  private record(resource: ResourceInfo, type: ChangeType, object: KubeObject, previous?: KubeObject): void {
    const change: StoreChange = { type, revision: this.revision, object };
    if (previous) change.previous = previous;
    this.log(resource).record(change);
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
  /** Undefined when the body was over `bodyLimit`. */
  body: Buffer | undefined;
  /** The size limit the body was read under (MAX_BODY_BYTES unless a fault lowered it). */
  bodyLimit: number;
}

function requireBody(request: ApiRequest): Buffer {
  if (!request.body) throw entityTooLarge(`limit is ${request.bodyLimit}`);
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

/**
 * The fieldValidation query parameter (1.27+): unknown fields dropped by pruning are reported as
 * `Warning` headers by default (Warn), refused with a 400 under Strict, silent under Ignore.
 */
function unknownFieldsOutcome(resource: ResourceInfo, query: URLSearchParams, unknown: readonly string[]): string[] {
  if (unknown.length === 0) return [];
  const messages = unknown.map((path) => `unknown field ${quote(path)}`);
  switch (query.get('fieldValidation')) {
    case 'Ignore':
      return [];
    case 'Strict':
      throw badRequest(`${resource.kind} in version "${resource.version}" cannot be handled as a ${resource.kind}: strict decoding error: ${messages.join(', ')}`);
    default:
      return messages;
  }
}

// =============================================================================================
// The registry

/** What a verb answers: the HTTP status, the object, and warnings for `Warning` headers. */
export interface Answer {
  status: number;
  value: unknown;
  warnings: string[];
}

/** One event of a watch stream. */
export interface WatchEvent {
  type: ChangeType | 'BOOKMARK';
  object: KubeObject;
}

/** An open watch: the events to send now, then a subscription to the ones that follow. */
export interface Watch {
  resource: ResourceInfo;
  initial: WatchEvent[];
  subscribe(send: (event: WatchEvent) => void): () => void;
}

/** The annotation that ends the initial events of a `sendInitialEvents=true` watch. */
const INITIAL_EVENTS_END = 'k8s.io/initial-events-end';

/**
 * kube-apiserver's generic registry (store.go, rest/create.go, rest/update.go, handlers/*.go) for
 * a custom resource (from its CRD) and core/v1 Events, over an in-memory store. No I/O: the HTTP
 * server authenticates, routes and authorizes, then hands the request here; every refusal is
 * thrown as a StatusError.
 */
export class Registry {
  /** The custom resource the CRD defines (Builds). */
  readonly custom: ResourceInfo;
  readonly resources: readonly ResourceInfo[];
  private readonly store: Store;

  constructor(crd: CustomResourceDefinition) {
    this.custom = customResource(crd);
    this.resources = [this.custom, EVENTS];
    this.store = new Store(this.resources);
  }

  /** The request's route, or undefined for a path or method nothing here serves. */
  route(method: string, path: string, query: URLSearchParams): Route | undefined {
    return parseRoute(this.resources, method, path, query);
  }

  /** What discovery documents list. */
  discovered(): DiscoveredResource[] {
    return this.resources.map((r): DiscoveredResource => ({
      group: r.group,
      version: r.version,
      plural: r.plural,
      singular: r.singular,
      kind: r.kind,
      verbs: r.verbs,
      shortNames: r.shortNames,
      categories: r.categories,
      subresources: r.statusSubresource ? { status: ['get', 'patch', 'update'] as const } : {},
    }));
  }

  /** Runs one routed, authorized request (not a watch: see openWatch). */
  handle(route: Route, request: ApiRequest): Answer {
    const warnings: string[] = [];
    switch (route.verb) {
      case 'get':
        return { status: 200, value: this.find(route), warnings };
      case 'list':
        return { status: 200, value: this.list(route, request.query), warnings };
      case 'watch':
        throw new Error('a watch is a stream: open it with openWatch');
      case 'create':
        return { status: 201, value: this.create(route, request, warnings), warnings };
      case 'update':
        return { status: 200, value: this.replace(route, request, warnings), warnings };
      case 'patch':
        return { status: 200, value: this.patch(route, request, warnings), warnings };
    }
  }

  /**
   * A watch of a collection (cacher semantics). No resourceVersion or "0": every current object as
   * ADDED, then changes. A resourceVersion: the changes after it, or 410 Expired when they are no
   * longer kept. `sendInitialEvents=true` ends the initial ADDED events with a BOOKMARK.
   */
  openWatch(route: Route, query: URLSearchParams): Watch {
    const { resource } = route;
    const selected = this.selection(route, query);
    const asked = query.get('resourceVersion') ?? '';
    const log = this.store.log(resource);
    let initial: WatchEvent[];
    if (asked === '' || asked === '0' || query.get('sendInitialEvents') === 'true') {
      initial = this.store.list(resource, route.namespace).filter(selected).map((object) => ({ type: 'ADDED' as const, object }));
      if (query.get('sendInitialEvents') === 'true') {
        const metadata = { resourceVersion: this.store.resourceVersion, annotations: { [INITIAL_EVENTS_END]: 'true' } };
        initial.push({ type: 'BOOKMARK', object: { apiVersion: resource.apiVersion, kind: resource.kind, metadata } as unknown as KubeObject });
      }
    } else {
      const revision = Number(asked);
      if (!Number.isSafeInteger(revision) || revision < 0) throw badRequest(`invalid resource version: ${asked}`);
      const changes = log.since(revision);
      if (!changes) throw expired(revision, log.oldest);
      initial = changes.flatMap((change) => visible(change as StoreChange, selected));
    }
    return {
      resource,
      initial,
      subscribe: (send) => log.subscribe((change) => visible(change as StoreChange, selected).forEach(send)),
    };
  }

  // -------------------------------------------------------------------------------------------
  // Direct access, as the operator would write: validated like the API, errors thrown as Error.

  /** The live stored object; callers copy before handing it out. */
  build(namespace: string, name: string): KubeObject | undefined {
    return this.store.get(this.custom, namespace, name);
  }

  /** The live stored Events, sorted by namespace and name. */
  events(namespace?: string): KubeObject[] {
    return this.store.list(EVENTS, namespace);
  }

  deleteBuild(namespace: string, name: string): boolean {
    return this.store.delete(this.custom, namespace, name) !== undefined;
  }

  /** A Build as the operator makes it: created, then its status written (POST alone drops status). */
  seedBuild(object: KubeObject): KubeObject {
    const resource = this.custom;
    const { name, namespace } = object.metadata;
    resource.prune(object);
    const errors = creationErrors(resource, object);
    if (errors.length > 0) throw new Error(invalidObject(resource, name, errors).message);
    if (this.store.get(resource, namespace, name)) throw new Error(alreadyExists(resource, name).message);
    return this.insert(resource, object);
  }

  /**
   * The Build deleted and created again under the same name (a new uid, generation 1), with the
   * same spec and labels and the given status: what an operator or a person re-applying does
   * while a build runs.
   */
  replaceBuild(namespace: string, name: string, status?: unknown): KubeObject {
    const current = this.store.get(this.custom, namespace, name);
    if (!current) throw new Error(notFound(this.custom, name).message);
    const { labels, annotations } = current.metadata;
    const metadata: ObjectMeta = { name, namespace };
    if (labels) metadata.labels = deepCopy(labels);
    if (annotations) metadata.annotations = deepCopy(annotations);
    const next: KubeObject = { apiVersion: current.apiVersion, kind: current.kind, metadata };
    if (current.spec !== undefined) next.spec = deepCopy(current.spec);
    if (status !== undefined) next.status = deepCopy(status);
    this.store.delete(this.custom, namespace, name);
    return this.seedBuild(next);
  }

  /** Replaces (with undefined: removes) a Build's status under a new resourceVersion. */
  writeStatus(namespace: string, name: string, status: unknown): KubeObject {
    const resource = this.custom;
    const current = this.store.get(resource, namespace, name);
    if (!current) throw new Error(notFound(resource, name).message);
    const next = deepCopy(current);
    if (status === undefined) delete next.status;
    else next.status = deepCopy(status);
    resource.prune(next);
    const errors = resource.validate(next);
    if (errors.length > 0) throw new Error(invalidObject(resource, name, errors).message);
    return this.store.put(resource, next);
  }

  // -------------------------------------------------------------------------------------------
  // The verbs

  private find(route: Route): KubeObject {
    const name = route.name ?? '';
    const object = this.store.get(route.resource, route.namespace ?? '', name);
    if (!object) throw notFound(route.resource, name);
    return object;
  }

  /** Namespace, fieldSelector and labelSelector of a list or watch, as one predicate. */
  private selection(route: Route, query: URLSearchParams): (object: KubeObject) => boolean {
    const { resource, namespace } = route;
    const fields = fieldSelector(query.get('fieldSelector') ?? '', resource.selectableFields);
    const labels = labelSelector(query.get('labelSelector') ?? '');
    return (object) =>
      (namespace === undefined || object.metadata.namespace === namespace) && fields(resource.fieldsOf(object)) && labels(object.metadata.labels ?? {});
  }

  /** Simplification: `limit` is not honoured (every list is one page, with no continue token). */
  private list(route: Route, query: URLSearchParams): Record<string, unknown> {
    const { resource } = route;
    const selected = this.selection(route, query);
    const items = this.store
      .list(resource, route.namespace)
      .filter(selected)
      .map((object) => {
        if (resource.listItemsKeepTypeMeta) return object;
        const { apiVersion: _apiVersion, kind: _kind, ...rest } = object;
        return rest;
      });
    return { apiVersion: resource.apiVersion, kind: resource.listKind, metadata: { resourceVersion: this.store.resourceVersion }, items };
  }

  /** 415 for a media type the resource does not take, 413 over the size limit, 400 for bad JSON. */
  private decode(resource: ResourceInfo, request: ApiRequest, warnings: string[]): KubeObject {
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
    return decodeValue(resource, value, raw, request.query, warnings);
  }

  private create(route: Route, request: ApiRequest, warnings: string[]): KubeObject {
    const { resource } = route;
    const namespace = route.namespace ?? '';
    const object = this.decode(resource, request, warnings);
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
  private replace(route: Route, request: ApiRequest, warnings: string[]): KubeObject {
    const candidate = this.decode(route.resource, request, warnings);
    checkName(candidate, route);
    const current = this.find(route);
    const uid = candidate.metadata.uid;
    if (uid && uid !== current.metadata.uid) {
      throw conflict(route.resource, current.metadata.name, `Precondition failed: UID in precondition: ${uid}, UID in object meta: ${current.metadata.uid ?? ''}`);
    }
    return this.update(route, current, candidate);
  }

  private patch(route: Route, request: ApiRequest, warnings: string[]): KubeObject {
    const { resource } = route;
    const patchType = patchMediaType(request.contentType);
    if (!resource.patchTypes.includes(patchType)) throw unsupportedMediaType(resource.patchTypes);
    const patch = requireBody(request);
    validatePatchOptions(request.query, patchType);
    const current = this.find(route);
    const candidate = decodePatched(resource, applyPatch(patchType, current, patch), request.query, warnings);
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

/**
 * What a watcher with this selection sees of a change: an object that starts matching is ADDED,
 * one that stops is DELETED (cacher.go), one that never matched is nothing.
 */
function visible(change: StoreChange, selected: (object: KubeObject) => boolean): WatchEvent[] {
  const now = selected(change.object);
  if (change.type !== 'MODIFIED' || !change.previous) return now ? [{ type: change.type, object: change.object }] : [];
  const before = selected(change.previous);
  if (now) return [{ type: before ? 'MODIFIED' : 'ADDED', object: change.object }];
  return before ? [{ type: 'DELETED', object: change.object }] : [];
}

/** handlers/rest.go checkName: the body must name the URL's object; an empty namespace is fine. */
function checkName(object: KubeObject, route: Route): void {
  const name = object.metadata.name ?? '';
  if (name !== route.name) {
    throw badRequest(`the name of the object (${name}) does not match the name on the URL (${route.name ?? ''})`);
  }
  const namespace = object.metadata.namespace ?? '';
  if (namespace && namespace !== route.namespace) {
    throw badRequest(`the namespace of the object (${namespace}) does not match the namespace on the request (${route.namespace ?? ''})`);
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
      } catch {
        throw badRequest('Invalid JSON Patch'); // evanphx/json-patch ErrBadJSONPatch
      }
      if (!isJsonObject(patch)) throw badRequest('Invalid JSON Patch');
      return applyMergePatch(asJson(current), patch);
    }
    default:
      throw fail(failure(500, 'InternalError', 'Internal error occurred: server-side apply is not implemented by the local API server'));
  }
}

const MAX_JSON_PATCH_OPERATIONS = 10000;

function applyJsonPatchBody(document: JsonObject, text: string): JsonValue {
  let operations: unknown;
  try {
    operations = JSON.parse(text);
  } catch (error) {
    throw badRequest((error as Error).message);
  }
  if (!Array.isArray(operations)) {
    throw badRequest(`json: cannot unmarshal ${goJsonType(operations)} into Go value of type []handlers.jsonPatchOp`);
  }
  const notObject = operations.find((op) => !isJsonObject(op));
  if (notObject !== undefined) {
    throw badRequest(`json: cannot unmarshal ${goJsonType(notObject)} into Go value of type handlers.jsonPatchOp`);
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
function decodePatched(resource: ResourceInfo, patched: JsonValue, query: URLSearchParams, warnings: string[]): KubeObject {
  if (!isJsonObject(patched)) throw fail(PATCH_REJECTED);
  return decodeValue(resource, patched, Buffer.from(JSON.stringify(patched)), query, warnings);
}

/** Decoding, then pruning; the pruned fields become warnings (or a 400 under fieldValidation=Strict). */
function decodeValue(resource: ResourceInfo, value: JsonObject, raw: Buffer, query: URLSearchParams, warnings: string[]): KubeObject {
  const object = resource.decode(value, raw);
  warnings.push(...unknownFieldsOutcome(resource, query, resource.prune(object)));
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
