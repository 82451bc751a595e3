/**
 * Server-side printing: what kube-apiserver answers when a client (kubectl get) asks for
 * `application/json;as=Table;v=v1;g=meta.k8s.io`. Columns of a custom resource come from its CRD's
 * additionalPrinterColumns (apiextensions tableconvertor.go); Events get the built-in printer's
 * columns (pkg/printers/internalversion printers.go printEvent, generated with Wide: true so that
 * kubectl can hide priority-1 columns itself). Rows carry PartialObjectMetadata unless the request
 * says otherwise (handlers/response.go asTable). No I/O.
 */
import { evaluatePath, parseJsonPath, type PathStep, type PrinterColumn } from './schema.js';
import { badRequest, fail, failure } from './status.js';
import { isJsonObject, type JsonObject, type JsonValue } from './json-patch.js';

export interface TableColumnDefinition {
  name: string;
  type: string;
  format: string;
  description: string;
  priority: number;
}

/** Builds one row's cells from an object, at time `now` (ages are relative). */
export interface TablePrinter {
  columns: readonly TableColumnDefinition[];
  cells(object: JsonObject, now: number): unknown[];
}

/** What a request may ask of a Table (metav1.TableOptions). */
export interface TableOptions {
  /** `v1` or `v1beta1`: the group version the client asked the Table in. */
  version: string;
  /** Omit column definitions (every watch event after the first). */
  noHeaders: boolean;
  includeObject: 'None' | 'Metadata' | 'Object';
}

// ---------------------------------------------------------------------------------------------
// Durations (apimachinery pkg/util/duration)

/** ShortHumanDuration: what CRD `date` columns show. */
export function shortHumanDuration(ms: number): string {
  const seconds = Math.trunc(ms / 1000);
  if (seconds < -1) return '<invalid>';
  if (seconds < 0) return '0s';
  if (seconds < 60) return `${seconds}s`;
  const minutes = Math.trunc(seconds / 60);
  if (minutes < 60) return `${minutes}m`;
  const hours = Math.trunc(minutes / 60);
  if (hours < 24) return `${hours}h`;
  if (hours < 24 * 365) return `${Math.trunc(hours / 24)}d`;
  return `${Math.trunc(hours / 24 / 365)}y`;
}

/** HumanDuration: what the built-in printers show (two or three significant figures). */
export function humanDuration(ms: number): string {
  const seconds = Math.trunc(ms / 1000);
  if (seconds < -1) return '<invalid>';
  if (seconds < 0) return '0s';
  if (seconds < 60 * 2) return `${seconds}s`;
  const minutes = Math.trunc(seconds / 60);
  if (minutes < 10) return seconds % 60 === 0 ? `${minutes}m` : `${minutes}m${seconds % 60}s`;
  if (minutes < 60 * 3) return `${minutes}m`;
  const hours = Math.trunc(minutes / 60);
  if (hours < 8) return minutes % 60 === 0 ? `${hours}h` : `${hours}h${minutes % 60}m`;
  if (hours < 48) return `${hours}h`;
  const days = Math.trunc(hours / 24);
  if (hours < 24 * 8) return hours % 24 === 0 ? `${days}d` : `${days}d${hours % 24}h`;
  if (hours < 24 * 365 * 2) return `${days}d`;
  const years = Math.trunc(days / 365);
  if (hours < 24 * 365 * 8) return days % 365 === 0 ? `${years}y` : `${years}y${days % 365}d`;
  return `${years}y`;
}

/** An RFC 3339 timestamp's age, `<unknown>` when missing (translateTimestampSince). */
function ageOf(timestamp: unknown, now: number, format: (ms: number) => string): string {
  const time = typeof timestamp === 'string' ? Date.parse(timestamp) : Number.NaN;
  return Number.isNaN(time) ? '<unknown>' : format(now - time);
}

// ---------------------------------------------------------------------------------------------
// Custom resources

/** metav1.ObjectMeta{}.SwaggerDoc()["name"], first sentence. */
const NAME_DESCRIPTION = 'Name must be unique within a namespace.';

/** jsonpath PrintResults: maps and lists print as JSON, scalars as Go's fmt prints them. */
function printJsonValue(value: JsonValue): string {
  if (Array.isArray(value) || isJsonObject(value)) return JSON.stringify(sortKeys(value));
  return String(value);
}

/** Go's encoding/json writes map keys sorted. */
function sortKeys(value: JsonValue): JsonValue {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (!isJsonObject(value)) return value;
  return Object.fromEntries(Object.keys(value).sort().map((k) => [k, sortKeys(value[k] as JsonValue)]));
}

/** tableconvertor.cellForJSONValue: a value of the wrong JSON type shows as nothing (nil). */
function cellFor(column: PrinterColumn, value: JsonValue | undefined, now: number): unknown {
  if (value === undefined || value === null) return null;
  switch (column.type) {
    case 'string':
      return printJsonValue(value);
    case 'integer':
      return typeof value === 'number' ? Math.trunc(value) : null;
    case 'number':
      return typeof value === 'number' ? value : null;
    case 'boolean':
      return typeof value === 'boolean' ? value : null;
    case 'date':
      return typeof value === 'string' ? (Number.isNaN(Date.parse(value)) ? '<invalid>' : ageOf(value, now, shortHumanDuration)) : null;
    default:
      return null;
  }
}

export function customResourcePrinter(columns: readonly PrinterColumn[]): TablePrinter {
  const paths: PathStep[][] = columns.map((c) => parseJsonPath(c.jsonPath, c.name));
  return {
    columns: [
      { name: 'Name', type: 'string', format: 'name', description: NAME_DESCRIPTION, priority: 0 },
      ...columns.map(({ name, type, format, description, priority }) => ({ name, type, format, description, priority })),
    ],
    cells: (object, now) => [metadataOf(object).name ?? '', ...columns.map((c, i) => cellFor(c, evaluatePath(object, paths[i] ?? []), now))],
  };
}

// ---------------------------------------------------------------------------------------------
// core/v1 Events

const str = (value: unknown) => (typeof value === 'string' ? value : '');

/** formatEventSource: component (or reportingComponent), then host (or reportingInstance) when set. */
function eventSource(event: JsonObject): string {
  const source = isJsonObject(event.source) ? event.source : {};
  const component = str(source.component) || str(event.reportingComponent);
  const instance = str(source.host) || str(event.reportingInstance);
  return instance ? `${component}, ${instance}` : component;
}

export const EVENT_PRINTER: TablePrinter = {
  columns: [
    { name: 'Last Seen', type: 'string', format: '', description: 'The time at which the most recent occurrence of this event was recorded.', priority: 0 },
    { name: 'Type', type: 'string', format: '', description: 'Type of this event (Normal, Warning), new types could be added in the future', priority: 0 },
    { name: 'Reason', type: 'string', format: '', description: "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.", priority: 0 },
    { name: 'Object', type: 'string', format: '', description: 'The object that this event is about.', priority: 0 },
    { name: 'Subobject', type: 'string', format: '', description: 'If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement.', priority: 1 },
    { name: 'Source', type: 'string', format: '', description: 'The component reporting this event. Should be a short machine understandable string.', priority: 1 },
    { name: 'Message', type: 'string', format: '', description: 'A human-readable description of the status of this operation.', priority: 0 },
    { name: 'First Seen', type: 'string', format: '', description: 'The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)', priority: 1 },
    { name: 'Count', type: 'string', format: '', description: 'The number of times this event has occurred.', priority: 1 },
    { name: 'Name', type: 'string', format: 'name', description: NAME_DESCRIPTION, priority: 1 },
  ],
  cells(event, now) {
    const involved = isJsonObject(event.involvedObject) ? event.involvedObject : {};
    const firstSeen = event.firstTimestamp ? ageOf(event.firstTimestamp, now, humanDuration) : ageOf(event.eventTime, now, humanDuration);
    const lastSeen = event.lastTimestamp ? ageOf(event.lastTimestamp, now, humanDuration) : firstSeen;
    const kind = str(involved.kind).toLowerCase();
    const target = str(involved.name) ? `${kind}/${str(involved.name)}` : kind;
    const count = typeof event.count === 'number' && event.count !== 0 ? event.count : 1;
    return [lastSeen, str(event.type), str(event.reason), target, str(involved.fieldPath), eventSource(event), str(event.message).trim(), firstSeen, count, metadataOf(event).name ?? ''];
  },
};

// ---------------------------------------------------------------------------------------------
// The Table

function metadataOf(object: JsonObject): { name?: string; resourceVersion?: string } & JsonObject {
  return isJsonObject(object.metadata) ? object.metadata : {};
}

/** The row's object as handlers/response.go asTable leaves it. */
function rowObject(object: JsonObject, options: TableOptions): JsonObject | undefined {
  switch (options.includeObject) {
    case 'None':
      return undefined;
    case 'Object':
      return object;
    case 'Metadata':
      return { kind: 'PartialObjectMetadata', apiVersion: `meta.k8s.io/${options.version}`, metadata: metadataOf(object) };
  }
}

/**
 * A Table of `objects`. `resourceVersion` is the list's (for one object, its own). Go marshals a
 * nil columnDefinitions as null: with noHeaders it is null, not absent.
 */
export function toTable(printer: TablePrinter, objects: readonly JsonObject[], resourceVersion: string, options: TableOptions, now: number): JsonObject {
  const rows = objects.map((object) => {
    const row: JsonObject = { cells: printer.cells(object, now) as JsonValue[] };
    const included = rowObject(object, options);
    if (included) row.object = included;
    return row;
  });
  return {
    kind: 'Table',
    apiVersion: `meta.k8s.io/${options.version}`,
    metadata: resourceVersion ? { resourceVersion } : {},
    columnDefinitions: options.noHeaders ? null : (printer.columns as unknown as JsonValue[]),
    rows,
  };
}

// ---------------------------------------------------------------------------------------------
// Accept negotiation (handlers/negotiation)

export type Representation = { as: 'object' } | { as: 'Table'; version: string };

const TABLE_VERSIONS = ['v1', 'v1beta1'];

/** Media types a client may ask for; anything else in Accept is skipped. */
const JSON_TYPES = new Set(['application/json', 'application/*', '*/*']);

/**
 * The first entry of an Accept header this server can answer: plain JSON, or a meta.k8s.io Table.
 * No header means JSON. 406 when nothing fits (a client asking only YAML or protobuf, say).
 */
export function negotiate(accept: string | undefined): Representation {
  if (!accept?.trim()) return { as: 'object' };
  for (const entry of accept.split(',')) {
    const [type = '', ...parameters] = entry.split(';').map((part) => part.trim());
    if (!JSON_TYPES.has(type.toLowerCase())) continue;
    const params = new Map(parameters.map((p) => p.split('=', 2).map((s) => s.trim()) as [string, string]));
    const as = params.get('as');
    if (as === undefined) return { as: 'object' };
    const version = params.get('v') ?? '';
    if (as === 'Table' && params.get('g') === 'meta.k8s.io' && TABLE_VERSIONS.includes(version)) return { as: 'Table', version };
  }
  throw fail(failure(406, 'NotAcceptable', 'only the following media types are accepted: application/json'));
}

/** TableOptions from the query (includeObject) for a Table answer. */
export function tableOptions(representation: { version: string }, query: URLSearchParams): TableOptions {
  const includeObject = query.get('includeObject') || 'Metadata';
  if (includeObject !== 'None' && includeObject !== 'Metadata' && includeObject !== 'Object') {
    throw badRequest(`unrecognized includeObject value: ${JSON.stringify(includeObject)}`);
  }
  return { version: representation.version, noHeaders: false, includeObject };
}
